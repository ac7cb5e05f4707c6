"""The checks of fuzz/fuzz_native.py, apart from its fuzzing engine: what an input means, what
must hold for it, the seeds, and the replay of inputs against the library's own builds (which
tests/test_fuzz_native_seeds.py runs in the suite).

An input's first byte, modulo 3, says what the rest is:

- 0: a request frame's bytes as they would arrive (any byte sequence at all);
- 1: a request frame's fields separated by NUL bytes (method, uri, version, then header names
  and values, and a body last when the count is odd), packed here as a front would pack them,
  so that mutations which change a field's length still make a well-formed frame;
- 2: a response to frame: a flags byte (bit 0 ends the response, bit 1 picks v0.12, the rest
  shifts the session id right), eight bytes of session id, then NUL-separated chunks, each a
  byte whose low three bits pick its kind (1 bytearray, 2 memoryview, 3 a slice of one, 4
  buffers split on 0x01 sent as one chunk, 6 a strided view, 7 a bytes subclass, else bytes)
  and whose high five bits its repeat count less one, then its payload.

A request frame goes to the C parser (csrc/request.c), which must give exactly the Request
`parse_reference` gives, or decline; it must never accept what the reference refuses. A frame
the reference accepts then goes on to the two copies that read a parsed request: the WSGI
environ (csrc/environ.c, against `EnvironBuilder._build`) and the default access-log line
(csrc/accessline.c, against `record_line`). A response goes to the C framing (csrc/framing.c),
which must give `frame_response`'s result (equal headers, the very payload objects) or decline,
and never frame what the reference refuses.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import io
import os
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from cocaine_http.errors import BadRequestError
from cocaine_http.http import accesslog as formats
from cocaine_http.http import environ as environ_module
from cocaine_http.http.accesslog import RecordPrefix, record_line
from cocaine_http.http.environ import EnvironBuilder
from cocaine_http.http.request import HttpConfig, Request, parse_reference
from cocaine_http.protocol.dialect import V0_11, V0_12, raw_header

#: Where the sanitizer builds are (made by `make fuzz`).
NATIVE = Path(os.environ.get("FUZZ_NATIVE", "build/fuzz/native"))

#: The configurations a frame is parsed under (picked by the frame's length): the default, no
#: proxy headers with a root path, and tight limits.
CONFIGS = [
    HttpConfig(),
    HttpConfig(proxy_headers=False, root_path="/api"),
    HttpConfig(max_body_size=16, max_header_size=64, max_headers=3),
]
BUILDERS = [EnvironBuilder("", errors=io.StringIO(), app="app"),
            EnvironBuilder("/api", errors=io.StringIO(), app="app")]
PREFIX = RecordPrefix(4242, "INFO", "cocaine_http.access")
NOW = 1_764_576_000.25
#: The caches the environ copy shares with the builder, emptied when they grow past this.
CACHE_BOUND = 4096


def load(name: str, directory: Path | None) -> Any:
    """The extension module `name`: its build in `directory` (the file named by the last
    dotted part), or with None the library's own build."""
    if directory is None:
        return importlib.import_module(name)
    path = directory / (name.rsplit(".", 1)[1] + importlib.machinery.EXTENSION_SUFFIXES[0])
    if not path.exists():
        raise SystemExit(f"{path} is missing (`make fuzz` builds the sanitizer ones)")
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def fields(request: Request) -> list[Any]:
    """The request's slots with their types, header pairs included (b"x" == memoryview(b"x"),
    but they are not the same field)."""
    values = [getattr(request, name) for name in Request.__slots__]
    out: list[Any] = [(type(value), value) for value in values]
    out.append([(type(pair), [type(part) for part in pair]) for pair in request.headers])
    return out


def comparable(environ: dict[str, Any]) -> list[tuple[str, Any]]:
    """The environ's items in order, wsgi.input replaced by what it reads."""
    out = dict(environ)
    stream = out.pop("wsgi.input")
    out["wsgi.input"] = (type(stream).__name__, stream.read())
    return list(out.items())


class Disagreement(AssertionError):
    """A compiled copy gave another result than its Python rule."""


def frame_of(data: bytes) -> bytes:
    """The request frame a request input spells (kind 0 or 1, see the module docstring)."""
    if not data or data[0] % 3 == 0:
        return data[1:]
    fields = data[1:].split(b"\x00")
    head = fields[:3] + [b"GET", b"/", b"1.1"][len(fields):]  # the fields it lacks: defaults
    rest = fields[3:]
    body = rest.pop() if len(rest) % 2 else b""
    headers = [[rest[i], rest[i + 1]] for i in range(0, len(rest), 2)]
    return msgpack.packb([*head, headers, body], use_bin_type=False)  # type: ignore[no-any-return]


def spelled(method: bytes, uri: bytes, version: bytes, headers: list[tuple[bytes, bytes]],
            body: bytes = b"") -> bytes:
    """The field-wise input (kind 1) for a frame."""
    parts = [method, uri, version, *(part for pair in headers for part in pair)]
    return b"\x01" + b"\x00".join(parts + ([body] if body else []))


def _chunk(kind: int, payload: bytes) -> Any:
    """A response chunk of the kind a chunk byte's low three bits pick."""
    if kind == 1:
        return bytearray(payload)
    if kind == 2:
        return memoryview(payload)
    if kind == 3:
        return memoryview(b"<" + payload + b">")[1:-1]
    if kind == 4:
        return payload.split(b"\x01")
    if kind == 6:  # not contiguous: C declines it
        return memoryview(payload)[::2]
    if kind == 7:  # a subclass: C declines it
        return _Bytes(payload)
    return payload


class _Bytes(bytes):
    """A bytes subclass (its len() could be anything, so the C framing leaves it alone)."""


def response_of(data: bytes) -> tuple[int, int, list[Any], bool]:
    """(dialect bit, session id, chunks, end) of a response input (kind 2)."""
    body = data[1:]
    flags = body[0] if body else 0
    session = int.from_bytes(body[1:9], "big") >> (flags >> 2)
    chunks = []
    for piece in body[9:].split(b"\x00") if len(body) > 9 else []:
        pick = piece[0] if piece else 0
        chunks.append(_chunk(pick & 7, piece[1:] * (1 + (pick >> 3))))
    return (flags >> 1) & 1, session, chunks, bool(flags & 1)


def response_input(v12: bool, session: int, chunks: list[tuple[int, bytes]], end: bool) -> bytes:
    """The response input (kind 2) for chunks given as (chunk byte, payload); a chunk byte is
    never 0, the separator (5 is plain bytes)."""
    flags = int(end) | int(v12) << 1
    pieces = [bytes([pick]) + payload for pick, payload in chunks]
    return b"\x02" + bytes([flags]) + session.to_bytes(8, "big") + b"\x00".join(pieces)


class Built(NamedTuple):
    """The compiled modules under test (sanitizer builds, or the library's own)."""

    crequest: Any
    cenviron: Any
    caccess: Any
    #: the C framing of each dialect (by the dialect bit), its fallback marking a decline
    framers: tuple[Any, Any]


DECLINED = object()


def check(data: bytes, built: Built) -> str:
    """Check one input; what happened to it: a request frame "refused" (by both), "declined"
    (C left it to the reference) or "parsed" (C gave the reference's Request); a response
    "framed" (C gave the reference's framing) or "framing declined"."""
    if data and data[0] % 3 == 2:
        return check_response(data, built.framers)
    frame = frame_of(data)
    config = CONFIGS[len(frame) % len(CONFIGS)]
    try:
        want: Request | None = parse_reference(frame, config)
    except BadRequestError:
        want = None
    got = built.crequest.parse(Request, frame, config)
    if want is None:
        if got is not None:
            raise Disagreement(f"C accepted a frame the reference refuses: {frame!r}")
        return "refused"
    if got is not None and fields(got) != fields(want):
        raise Disagreement(f"C parsed {frame!r} otherwise: {fields(got)} != {fields(want)}")
    check_environ(want, built.cenviron)
    check_line(want, len(frame), built.caccess)
    return "declined" if got is None else "parsed"


def check_response(data: bytes, framers: tuple[Any, Any]) -> str:
    v12, session, chunks, end = response_of(data)
    got = framers[v12](session, chunks, end)
    if got is DECLINED:
        return "framing declined"
    try:
        want = (V0_12 if v12 else V0_11).frame_response(session, chunks, end)
    except Exception as exc:
        raise Disagreement(f"C framed what the reference refuses ({exc!r}): {data!r}") from exc
    if type(got) is not type(want):
        raise Disagreement(f"C framed {data!r} as {type(got).__name__}, not {type(want).__name__}")
    if isinstance(want, bytes):
        same = got == want
    else:
        same = len(got) == len(want) and all(
            ours is theirs or (type(ours) is bytes and type(theirs) is bytes and ours == theirs)
            for ours, theirs in zip(got, want))
    if not same:
        raise Disagreement(f"C framed {data!r} otherwise: {got!r} != {want!r}")
    return "framed"


def check_environ(request: Request, cenviron: Any) -> None:
    if len(environ_module._keys) > CACHE_BOUND or len(environ_module._servers) > CACHE_BOUND:
        environ_module._keys.clear()
        environ_module._servers.clear()
    for builder in BUILDERS:
        want = comparable(builder._build(request, 7))
        got = cenviron.environ(builder.template, request, 7, builder.root,
                               environ_module._servers, environ_module._keys)
        if got is not None and comparable(got) != want:
            raise Disagreement(f"C environ differs: {comparable(got)} != {want}")


def check_line(request: Request, n: int, caccess: Any) -> None:
    status, size, duration = 100 + n % 500, n * 37, (n % 2000) / 1000
    want = record_line(PREFIX, request, status, size, NOW, duration)
    got = caccess.line(request, status, size, NOW, duration, formats._last_second,
                       PREFIX.second, PREFIX.tail)
    if got is not None and got != want:
        raise Disagreement(f"C access line differs: {got!r} != {want!r}")


def seeds() -> list[bytes]:
    """Inputs of every kind: request frames of every front (the native and dev fronts' "1.1",
    tornado's "HTTP/1.1" with its cookie copies) with proxy headers, bodies, a bad
    Content-Length and odd shapes, both as bytes and field by field; and responses of both
    dialects around the raw header widths, the join bound and the session id widths."""

    def frame(method: Any = b"GET", uri: Any = b"/", version: Any = b"1.1",
              headers: Any = ((b"Host", b"example.com"),), body: Any = b"") -> bytes:
        return msgpack.packb([method, uri, version, [list(p) for p in headers], body],
                             use_bin_type=False)

    browser = [(b"Host", b"h:8080"), (b"User-Agent", b"curl/8"), (b"Accept", b"*/*"),
               (b"Referer", b"http://r/"), (b"X-Forwarded-For", b"10.0.0.1, 10.0.0.2"),
               (b"X-Forwarded-Proto", b"https"), (b"X-Real-IP", b"10.0.0.9")]
    raw = [
        frame(),
        frame(headers=browser),
        frame(b"POST", b"/a/b?x=1&y=%20", headers=[(b"Host", b"h"), (b"Content-Length", b"5"),
                                                   (b"Content-Type", b"text/plain")],
              body=b"hello"),
        frame(b"HEAD", b"/caf%C3%A9?q", b"1.0", headers=[]),
        frame(version=b"HTTP/1.1", headers=[(b"a", b"1"), (b"Cookie", b"a=1; b=2"),
                                            (b"Host", b"h")]),
        frame(b"PUT", b"http://h/x", headers=[(b"Host", b"h"), (b"Transfer-Encoding",
                                                                 b"chunked")], body=b"xyz"),
        frame(headers=[(b"Host", b"h"), (b"Content-Length", b"9")], body=b"short"),
        frame(b"GET", b"*", b"2.0", headers=[(b"Upgrade", b"websocket")]),
        frame(headers=[(b"Host", b"[::1]:99"), (b"X-Forwarded-Host", b"o")] * 3),
        frame("GET", "/", "1.1", [("Host", "h")], b""),
        frame(body=b"x" * 70000),
    ]
    host = (b"Host", b"h")
    fieldwise = [spelled(b"GET", b"/", b"1.1", browser)] + [
        spelled(method, uri, version, headers, body)
        for method, uri, version, headers, body in [
            (b"POST", b"/p?q=%41", b"1.1", [host, (b"Content-Length", b"3")], b"abc"),
            (b"POST", b"/", b"1.1", [host, (b"Content-Length", b"3"),
                                     (b"Content-Length", b"3")], b"abc"),
            (b"GET", b"/", b"HTTP/1.1", [(b"a", b"1"), (b"Cookie", b"a=1"), host], b""),
            (b"GET", b"/", b"HTTP/1.0", [(b"Cookie", b"x=\"q\"; y"), (b"x", b"q")], b""),
            (b"OPTIONS", b"*", b"1.1", [host], b""),
            (b"GET", b"http://h:81/a?b", b"1.1", [(b"Host", b"h:81")], b""),
            (b"GET", b"?only", b"1.0", [], b""),
            (b"GET", b"/%e9%zz/%2F", b"1.1", [(b"Host", b"[::1]:8080")], b""),
            (b"GET", b"/", b"1.1", [host, (b"X-Forwarded-Proto", b"http, wss"),
                                    (b"X-Forwarded-For", b"1.2.3.4"),
                                    (b"X-Real-IP", b"5.6.7.8")], b""),
            (b"GET", b"/", b"1.1", [host, (b"X-Forwarded-Proto", b"ws")], b""),
            (b"GET", b"/", b"1.1", [(b"Host", b"h:99999"), (b"Expect", b"100-continue")], b""),
            (b"GET", b"/", b"1.1", [host, (b"Connection", b"Upgrade"),
                                    (b"Upgrade", b"websocket")], b""),
            (b"PATCH", b"/", b"1.1", [host, (b"Transfer-Encoding", b"chunked"),
                                      (b"Content-Type", b"application/json")], b"{}"),
            (b"GET", b"/", b"1.1", [host, (b"Referer", b""), (b"User-Agent", b"\xff\xfe")],
             b""),
            (b"get", b"/ x", b"1.1", [(b"Bad Name", b"v"), (b"X", b"a\r\nb")], b""),
        ]
    ]
    head = b"\x93\xcc\xc8\x91\x92\xacContent-Type\xaatext/plain"
    responses = [
        response_input(v12, session, chunks, end)
        for v12 in (False, True)
        for session, chunks, end in [
            (1, [(5, head), (4, raw_header(5) + b"\x01hello")], True),
            (300, [(5, head), (2, b"x" * 31)], False),
            (70000, [(1, b"y" * 32), (3, b"z" * 255), (4, b"a\x01b\x01")], True),
            (2**32, [(5, b"q" * 250)] * 3 + [(8 * 15 + 5, b"w" * 256)], True),
            (2**64 - 1, [], True),
            (0, [(8 * 31 + 2, b"m" * 140)], False),
            (9, [(5, head), (6, b"abcdef")], True),
            (10, [(7, b"sub")], False),
        ]
    ]
    return [b"\x00" + data for data in raw] + fieldwise + responses


def modules(directory: Path | None = NATIVE) -> Built:
    """The compiled modules built into `directory` (None: the library's own builds)."""
    crequest, cenviron, caccess, cframing = (
        load(name, directory) for name in ("cocaine_http.http._crequest",
                                           "cocaine_http.http._cenviron",
                                           "cocaine_http.http._caccess",
                                           "cocaine_http.protocol._cframing"))
    if not caccess.bind(Request):
        raise SystemExit("the access-line module does not know Request's slots")
    return built_from(crequest, cenviron, caccess, cframing)


def built_from(crequest: Any, cenviron: Any, caccess: Any, cframing: Any) -> Built:
    def declined(*args: Any) -> object:
        return DECLINED

    framers = (cframing.Framer(cframing.V11, declined), cframing.Framer(cframing.V12, declined))
    return Built(crequest, cenviron, caccess, framers)


def replay(inputs: list[bytes], built: Built | None = None) -> dict[str, int]:
    """Every input through check(), with `built` (by default the library's own builds of the
    modules, no sanitizers): how many had each outcome. A disagreement raises."""
    if built is None:
        built = modules(None)
    outcomes: dict[str, int] = {}
    for data in inputs:
        outcome = check(data, built)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
