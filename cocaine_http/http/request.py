# Strategy: the request frame `[method, uri, version, [[name, value], ...], body]`
# (docs/protocol.md §6.1) becomes a `Request` in one pass over the headers.
#
# - The frame is unpacked with `use_list=False`, so each header pair is a hashable tuple and
#   validation is one dict lookup per pair (validate.py). Everything the scope and environ need
#   (Host, Content-Type, proxy headers) is picked up in the same loop; nothing scans twice.
# - The common frame is parsed by csrc/request.c (`_crequest.parse`) in one pass over its bytes,
#   without building the msgpack tree; it returns exactly what this module would, or declines
#   (None) and this module runs as if it did not exist. This module stays the reference and the
#   one statement of every rule (tests/test_http_crequest.py checks the agreement).
# - Frames above LARGE_FRAME bytes are not unpacked whole: msgpack would copy the body. Only
#   the head is unpacked, and the body becomes a memoryview into the frame (zero copies).
# - The body is the whole request body (the proxy buffered it), so a Content-Length that does
#   not match it is a malformed request (400), unless Transfer-Encoding says the proxy
#   de-chunked it.
# - Deliberate differences from h11 (also listed in docs/http-core.md and the oracle test):
#   a missing Host on HTTP/1.1 is tolerated (the proxy owns the client connection), an empty
#   uri is valid, versions other than 1.0/1.1 get 505, and `Expect: 100-continue` is ignored
#   (the body is already here, so no 100 is ever sent).
# - The tornado proxy of v0.11 sends every request cookie twice: in the Cookie header and, ahead
#   of the real headers, as one `name: value` header per cookie. Those copies are dropped before
#   anything else looks at the headers (`cookie_copies`), so a cookie named `host` or
#   `x-forwarded-for` never becomes that header. The rule applies only to frames with that
#   proxy's version spelling ("HTTP/1.1"; the native proxy, the v0.12 proxies and the dev front
#   send "1.1"), and drops only the leading run of headers that each equal one cookie of the
#   Cookie header as tornado parses it (its parse_cookie: split on `;`, first `=`, strip,
#   unquote). The first header that is not such a copy ends the run; Cookie itself never
#   belongs to it.
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import msgpack

from cocaine_http.codec import native
from cocaine_http.errors import BadRequestError
from cocaine_http.http import validate as _v

#: Why a WebSocket handshake gets 400: the app would see a plain GET and answer it wrongly.
WEBSOCKET_REFUSED = ("WebSocket upgrade refused: a Cocaine session carries one request and "
                     "its response, not a WebSocket")

#: Frames larger than this are split without copying the body.
LARGE_FRAME = 65536


@dataclass(frozen=True)
class HttpConfig:
    """Per-worker HTTP settings, under the names of the worker's `Config` fields (the adapters
    build it from a Config in one place, `adapters.asgi.http_config`).

    Attributes:
        max_body_size: larger bodies get 413.
        max_header_size: names plus values of all headers; more gets 431.
        max_headers: more header fields get 431.
        root_path: the mount point of the app (ASGI root_path, WSGI SCRIPT_NAME).
        proxy_headers: trust X-Forwarded-Proto / X-Forwarded-For / X-Real-IP.
        body_chunk_size: size of the `http.request` messages a large body is split into.
    """

    max_body_size: int = 64 * 1024 * 1024
    max_header_size: int = 65536
    max_headers: int = 100
    root_path: str = ""
    proxy_headers: bool = True
    body_chunk_size: int = 65536


DEFAULT_CONFIG = HttpConfig()


class Request:
    """A validated HTTP request (see the fields in cocaine_http.http's docstring).

    The C fast path builds it as `Request()` would and fills the slots directly, so it has no
    `__init__` and its fields are exactly these slots.
    """

    __slots__ = (
        "method",
        "http_version",
        "target",
        "raw_path",
        "query_string",
        "path",
        "headers",
        "body",
        "content_type",
        "scheme",
        "client",
        "server",
    )

    method: str
    http_version: str
    target: bytes
    raw_path: bytes
    query_string: bytes
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes | memoryview
    content_type: bytes | None
    scheme: str
    client: tuple[str, int] | None
    server: tuple[str, int] | None

    @property
    def content_length(self) -> int:
        return len(self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.http_version}>"


def parse_request(frame: bytes | memoryview, config: HttpConfig = DEFAULT_CONFIG) -> Request:
    """Decode and validate one request frame.

    Raises:
        BadRequestError: with the status to answer (400, 413, 431, 501, 505).
    """
    if _cparse is not None:  # the common frame in C (csrc/request.c); None: it declined
        fast = _cparse(Request, frame, config)
        if fast is not None:
            return fast
    return parse_reference(frame, config)


def parse_reference(frame: bytes | memoryview, config: HttpConfig = DEFAULT_CONFIG) -> Request:
    """`parse_request` in Python only: the statement of its rules, which the C fast path must
    reproduce exactly (or decline)."""
    try:  # one frame, not two: this runs once per request (try costs nothing until it raises)
        if len(frame) <= LARGE_FRAME and type(frame) is bytes:
            try:  # the common case of _unpack, inlined
                parts = _unpackb(frame, raw=True, use_list=False)
            except Exception:
                parts = None
            if type(parts) is tuple and len(parts) == 5:
                method, uri, version, headers, body = parts
            else:
                method, uri, version, headers, body = _unpack(frame, config)
        else:
            method, uri, version, headers, body = _unpack(frame, config)
        req = Request()
        req.http_version = _VERSIONS_GET(version) or _v.version(version)
        if version[:5] == b"HTTP/" and type(headers) is tuple:
            headers = headers[cookie_copies(headers):]
        if type(body) is not bytes and type(body) is not memoryview:
            raise BadRequestError(400, "request body is not a byte string")
        if len(body) > config.max_body_size:
            raise BadRequestError(413, f"body of {len(body)} bytes is over {config.max_body_size}")
        req.body = body
        # h11's order (so that a request with several faults gets h11's status): headers, Host,
        # method, target; the body against Content-Length last.
        declared = _read_headers(req, headers, config)
        req.method = _methods_get(method) or _v.method(method)
        req.target = uri
        req.raw_path, req.query_string, req.path = _targets_get(uri) or _split_target(uri)
        if declared is not None and declared != len(body):
            raise BadRequestError(
                400, f"Content-Length {declared} does not match the {len(body)}-byte body"
            )
        return req
    except TypeError as exc:  # an unhashable (map) value where a string belongs
        raise BadRequestError(400, f"malformed request frame: {exc}") from exc


_native = native("cocaine_http.http._crequest")
#: The fast path: parse(Request, frame, config) -> the Request, or None when it declines.
_cparse: Callable[[type[Request], object, HttpConfig], Request | None] | None = (
    None if _native is None else _native.parse
)
_unpackb = msgpack.unpackb
_methods_get = _v.methods_cache().get
_VERSIONS_GET = _v.VERSIONS.get
_targets: dict[object, tuple[bytes, bytes, str]] = {}
_targets_get = _targets.get


def _unpack(frame: bytes | memoryview, config: HttpConfig) -> tuple[object, ...]:
    try:
        if len(frame) > LARGE_FRAME:
            parts = _unpack_large(frame, config)
        else:
            parts = msgpack.unpackb(frame, raw=True, use_list=False)
    except BadRequestError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise BadRequestError(400, f"malformed request frame: {exc}") from exc
    if type(parts) is not tuple or len(parts) != 5:
        if type(parts) is tuple and len(parts) > 5:
            return parts[:5]  # fields a newer proxy may add are ignored
        raise BadRequestError(400, "request frame is not [method, uri, version, headers, body]")
    return parts


_BODY_HEADERS = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}


def _unpack_whole(frame: bytes | memoryview) -> tuple[object, ...]:
    return msgpack.unpackb(frame, raw=True, use_list=False)  # type: ignore[no-any-return]


def _unpack_large(frame: bytes | memoryview, config: HttpConfig) -> tuple[object, ...]:
    """Unpack the head fields only; the body becomes a view of the frame's tail."""
    view = memoryview(frame)
    limit = config.max_header_size * 2 + 65536  # msgpack overhead, uri and method included
    unpacker = msgpack.Unpacker(raw=True, use_list=False, max_buffer_size=limit)
    fed = min(4096, len(view))
    unpacker.feed(view[:fed])
    while True:
        try:
            if unpacker.read_array_header() != 5:
                return _unpack_whole(frame)
            head = tuple(unpacker.unpack() for _ in range(4))
            break
        except msgpack.OutOfData:
            if fed >= limit or fed >= len(view):
                return _unpack_whole(frame)
            unpacker = msgpack.Unpacker(raw=True, use_list=False, max_buffer_size=limit)
            fed = min(fed * 4, limit, len(view))
            unpacker.feed(view[:fed])
    pos = unpacker.tell()
    tag = view[pos]
    if 0xA0 <= tag <= 0xBF:
        start, size = pos + 1, tag & 0x1F
    elif tag in _BODY_HEADERS:
        width = _BODY_HEADERS[tag]
        start = pos + 1 + width
        size = int.from_bytes(view[pos + 1 : start], "big")
    else:
        raise BadRequestError(400, "request body is not a byte string")
    if start + size != len(view):
        raise BadRequestError(400, "malformed request frame: body length does not match")
    return (*head, view[start:])


def cookie_copies(headers: tuple[object, ...]) -> int:
    """How many leading headers are the tornado proxy's copies of the request's cookies.

    Each copy is `(name, value)` of one cookie of the Cookie header(s), as tornado's
    parse_cookie reads them; the count stops at the first header that is not one (or repeats a
    cookie already matched), so real headers are never taken for copies.
    """
    cookies: dict[bytes, bytes] = {}
    for pair in headers:
        if (type(pair) is tuple and len(pair) == 2 and type(pair[0]) is bytes
                and type(pair[1]) is bytes and pair[0].lower() == b"cookie"):
            for chunk in pair[1].split(b";"):
                key, sep, value = chunk.partition(b"=")
                if not sep:
                    key, value = b"", chunk
                key, value = key.strip(), value.strip()
                if key or value:
                    cookies[key] = _unquote_cookie(value)
    if not cookies:
        return 0
    count = 0
    for pair in headers:
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not bytes:
            break
        name, value = pair
        if name.lower() == b"cookie" or cookies.get(name) != value:
            break
        del cookies[name]
        count += 1
    return count


_COOKIE_ESCAPE = re.compile(rb"\\(?:([0-7]{3})|(.))", re.S)


def _unquote_cookie(value: bytes) -> bytes:
    """Python's cookie unquoting (what tornado applies): a quoted value loses its quotes and
    its backslash escapes (octal `\\ooo` or one escaped octet)."""
    if len(value) < 2 or value[:1] != b'"' or value[-1:] != b'"':
        return value
    return _COOKIE_ESCAPE.sub(
        lambda m: bytes((int(m.group(1), 8),)) if m.group(1) else m.group(2), value[1:-1]
    )


def _split_target(uri: object) -> tuple[bytes, bytes, str]:
    """Validate the target; (raw_path, query_string, path), remembered for short targets."""
    if type(uri) is not bytes or not _v.is_target(uri):
        raise BadRequestError(400, f"illegal request target {uri!r}")
    target = uri
    if uri[:1] != b"/":  # absolute-form (RFC 7230 §5.3.2): drop scheme and authority
        scheme_end = uri.find(b"://")
        if 0 < scheme_end < 16:
            rest = scheme_end + 3
            cuts = [i for i in (uri.find(b"/", rest), uri.find(b"?", rest)) if i >= 0]
            uri = uri[min(cuts) :] if cuts else b""
    raw_path, _, query = uri.partition(b"?")
    if not raw_path:
        raw_path = b"/"
    text = raw_path.decode("ascii")
    hit = (raw_path, query, unquote(text) if "%" in text else text)
    if len(target) <= 256:
        if len(_targets) >= 1024:
            _targets.clear()
        _targets[target] = hit
    return hit


def _read_headers(req: Request, raw_headers: object, config: HttpConfig) -> int | None:
    """Fill req.headers and what is derived from them; return the Content-Length to check
    against the body (None when absent or when Transfer-Encoding overrides it)."""
    if type(raw_headers) is not tuple:
        raise BadRequestError(400, "request headers are not a list of pairs")
    if len(raw_headers) > config.max_headers:
        raise BadRequestError(431, f"{len(raw_headers)} header fields is too many")
    cache_get = _pairs_get
    headers: list[tuple[bytes, bytes]] = []
    append = headers.append
    special = []
    host = None
    size = 0
    for pair in raw_headers:
        lpair, kind, n = cache_get(pair) or _v.header(pair)
        append(lpair)
        size += n
        if kind:
            if kind == 1 and host is None:  # validate.HOST, the one nearly every request has
                host = lpair[1]
            else:
                special.append((kind, lpair[1]))
                if kind <= _v.TRANSFER_ENCODING:
                    _v.framing(special)  # checked in order, as h11 does
    if size > config.max_header_size:
        limit = config.max_header_size
        raise BadRequestError(431, f"{size} bytes of header fields is over {limit}")
    req.headers = headers
    req.content_type = None
    req.scheme = "http"
    req.client = None
    declared = _apply_special(req, special, config) if special else None
    req.server = None if host is None else (
        _hosts_get((host, req.scheme)) or parse_host(host, req.scheme)
    )
    return declared


_pairs_get = _v.pairs_cache().get


def _apply_special(
    req: Request, special: list[tuple[int, bytes]], config: HttpConfig
) -> int | None:
    proxy: list[tuple[int, bytes]] = []
    for kind, value in special:
        if kind == _v.HOST:
            raise BadRequestError(400, "found multiple Host headers")
        if kind == _v.CONTENT_TYPE:
            if req.content_type is None:
                req.content_type = value
        elif kind == _v.UPGRADE:
            if b"websocket" in value.lower():
                raise BadRequestError(400, WEBSOCKET_REFUSED)
        elif kind > _v.CONTENT_TYPE and config.proxy_headers:
            proxy.append((kind, value))
    if proxy:
        _apply_proxy(req, proxy)
    return _v.framing(special)


def _apply_proxy(req: Request, proxy: list[tuple[int, bytes]]) -> None:
    """Scheme from the last X-Forwarded-Proto; client from X-Real-IP, else from the last
    X-Forwarded-For entry (the one the trusted proxy itself appended)."""
    forwarded = real_ip = None
    for kind, value in proxy:
        if kind == _v.X_FORWARDED_PROTO:
            proto = value.split(b",")[-1].strip().lower()
            req.scheme = "https" if proto in (b"https", b"wss") else "http"
        elif kind == _v.X_REAL_IP:
            real_ip = value.strip()
        else:
            forwarded = value.split(b",")[-1].strip()
    client = real_ip or forwarded
    if client:
        req.client = (client.decode("latin-1"), 0)


_hosts: dict[tuple[bytes, str], tuple[str, int]] = {}
_hosts_get = _hosts.get


def parse_host(host: bytes, scheme: str) -> tuple[str, int]:
    """(name, port) from a Host value: `name`, `name:port`, `[v6]`, `[v6]:port`. A port is
    decimal digits (isdecimal: the latin-1 superscripts are digits to isdigit, not to int)."""
    key = (host, scheme)
    hit = _hosts.get(key)
    if hit is not None:
        return hit
    default = 443 if scheme == "https" else 80
    text = host.decode("latin-1")
    name, port = text, default
    if text.startswith("["):
        end = text.find("]")
        if end > 0:
            name, rest = text[1:end], text[end + 1 :]
            if rest.startswith(":") and rest[1:].isdecimal():
                port = int(rest[1:])
    else:
        head, sep, tail = text.rpartition(":")
        if sep and tail.isdecimal() and ":" not in head:
            name, port = head, int(tail)
    if len(_hosts) >= 256:
        _hosts.clear()
    hit = _hosts[key] = (name, port)
    return hit
