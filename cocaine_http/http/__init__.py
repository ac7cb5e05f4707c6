"""Sans-IO HTTP core: request frame -> validated `Request` -> ASGI scope / WSGI environ, and the
app's response -> Cocaine chunk payloads. No sockets, threads, loops or clocks in here.

API (everything below is importable from `cocaine_http.http`):

Configuration
    `HttpConfig(max_body_size=64 MiB, max_header_size=65536, max_headers=100,
    root_path="", proxy_headers=True, body_chunk_size=65536)` -- frozen dataclass; one per
    worker. `DEFAULT_CONFIG` is `HttpConfig()`. `proxy_headers=True` trusts X-Forwarded-Proto,
    X-Forwarded-For and X-Real-IP from the proxy (under Cocaine the only peer is the runtime's
    HTTP proxy, as a 127.0.0.1 peer is trusted by uvicorn's default).

Request
    `parse_request(frame: bytes, config: HttpConfig = DEFAULT_CONFIG) -> Request`
        `frame` is the single request chunk payload, msgpack
        `[method, uri, version, [[name, value], ...], body]` (docs/protocol.md §6.1). Validated
        with h11's rules. Raises `cocaine_http.errors.BadRequestError(status, reason)`: 400
        malformed frame / method / target / header / Content-Length (including one that does not
        match the body), 413 body over `max_body_size`, 431 headers over `max_header_size` or
        `max_headers`, 501 a Transfer-Encoding other than one `chunked`, 505 a version
        other than 1.0/1.1. Accepted where h11 would refuse: no Host on 1.1, an empty uri.
    `Request` (slotted, read-only by convention) fields:
        method: str ("GET"); http_version: str ("1.0" | "1.1", from either spelling);
        target: bytes (the uri as sent); raw_path: bytes (b"/" when the uri has no path, i.e.
        "" or "?q"); query_string: bytes (no "?"); path: str (percent-decoded, UTF-8 with
        replacement); headers: list[tuple[bytes, bytes]] (lower-case names, order and
        duplicates kept); body: bytes | memoryview (a memoryview into the frame for large
        frames -- never copied); content_length: int (len(body)); content_type: bytes | None;
        scheme: "http" | "https"; client: tuple[str, int] | None; server: tuple[str, int] | None
        (from Host; port 80/443 by scheme when absent).

ASGI
    `asgi_scope(request, config=DEFAULT_CONFIG, state=None, spec_version="2.3") -> dict`
        The ASGI 3.0 HTTP scope (fresh dict; `state` shallow-copied when given). Pass
        spec_version "2.4" only if your `send` raises OSError once the session is gone.
    `request_messages(request, chunk_size=None) -> Iterator[dict]`
        The `http.request` messages: one when the body fits in `chunk_size` (default
        config.body_chunk_size), else slices with `more_body=True` then a last one with
        `more_body=False`. Bodies are `bytes` (slices of a large body are copied one at a time,
        lazily, as the app asks for them).

WSGI
    `wsgi_environ(request, config=DEFAULT_CONFIG, *, errors, session=None, app=None,
    file_wrapper=FileWrapper) -> dict`
        PEP 3333 environ. `errors` is the text stream for wsgi.errors; `session` and `app`
        become `cocaine.session` / `cocaine.app`.
    `FileWrapper(filelike, blksize=8192)` -- iterable over a file's blocks; `close()` closes it.
    `BodyReader` -- the wsgi.input file-like (read/readline/readlines/iteration) for large
        bodies held as memoryviews; small bodies use io.BytesIO.

Response
    `Payload = bytes | list[bytes | memoryview]` -- one Cocaine chunk; a list is written back to
    back as one chunk without joining (Session.write accepts both).
    `Response(method="GET", raw_body=False)`; raw_body=True for the v0.12 dialect (body chunks
    are the bytes as they are; v0.11 packs each as a msgpack raw string: [raw_header, data]).
        `.start(status: int, headers: Iterable[tuple[bytes|str, bytes|str]], replace=False)
            -> None` validates (status 100..999, token names, no CR/LF/NUL in values,
            Content-Length digits) and holds the head. `replace=True` replaces a held head
            (WSGI exc_info); after the head was sent it raises.
        `.body(data, more=True) -> list[Payload]` the held head (on the first non-empty data,
            or at the end) and the body chunk; empty data yields no body chunk; HEAD, 1xx, 204
            and 304 drop the body. Too many bytes for a declared Content-Length raises
            LocalProtocolError before anything of that call is returned.
        `.flush() -> list[Payload]` the held head now (ASGI: an empty body with more_body).
        `.end() -> list[Payload]` same as body(b"", more=False); too few bytes for a declared
            Content-Length raises LocalProtocolError.
        `.fail() -> list[Payload]` after an app error: a complete 500 response if the head has
            not been sent, else [] and the adapter must fail the session with a Cocaine error.
        attributes: status (int | None), head_sent (bool), done (bool), bytes_sent (body
            bytes), state (ResponseState).
    `error_response(status, message="", raw_body=False) -> list[Payload]` -- a complete plain
        text response (head + body chunk), e.g. for a BadRequestError:
        `error_response(exc.status, exc.reason)`.

Access log
    `access_log_line(request, status, size, *, started, duration, fmt=ACCESS_LOG_FORMAT)`
        gunicorn-style atoms: %(h)s %(l)s %(u)s %(t)s %(r)s %(m)s %(U)s %(q)s %(H)s %(s)s
        %(b)s %(B)s %(f)s %(a)s %(T)s %(M)s %(D)s %(L)s. `started` is the wall-clock epoch
        of the request, `duration` in seconds; request may be None (bad frame).
    `default_line(request, status, size, started, duration)` the same for the default format,
        as one f-string; `format_atoms(fmt, ...)` any other format.
    `RecordPrefix(pid, level, name)(now)` the start of a stderr log record in the worker's
        format ("2026-12-01 07:52:11,123 4242 INFO cocaine_http.access: ").
"""

from __future__ import annotations

from cocaine_http.errors import BadRequestError
from cocaine_http.http.accesslog import ACCESS_LOG_FORMAT, access_log_line
from cocaine_http.http.scope import asgi_scope, request_messages
from cocaine_http.http.request import DEFAULT_CONFIG, HttpConfig, Request, parse_request
from cocaine_http.http.response import Payload, Response, ResponseState, error_response
from cocaine_http.http.environ import BodyReader, FileWrapper, wsgi_environ

__all__ = [
    "ACCESS_LOG_FORMAT",
    "BadRequestError",
    "BodyReader",
    "DEFAULT_CONFIG",
    "FileWrapper",
    "HttpConfig",
    "Payload",
    "Request",
    "Response",
    "ResponseState",
    "access_log_line",
    "asgi_scope",
    "error_response",
    "parse_request",
    "request_messages",
    "wsgi_environ",
]
