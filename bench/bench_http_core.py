"""Per-request cost of the sans-IO HTTP core, compared with h11.

Strategy: time each step on pre-built inputs with timeit (best of several repeats, so a noisy
neighbour inflates nothing), on two requests: `hello` (one Host header, the benchmark's
request) and `browser` (7 headers a browser sends). h11 is measured doing the same validation
(`h11.Request(...)`) and a full server cycle (parse the bytes, send a response).
"""

from __future__ import annotations

import io
import timeit
from collections.abc import Callable

import h11
import msgpack

from cocaine_http.http import (
    Response,
    asgi_scope,
    parse_request,
    request_messages,
    wsgi_environ,
)

BROWSER = [
    (b"Host", b"example.com:8080"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (b"Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"Accept-Language", b"en-US,en;q=0.5"),
    (b"Accept-Encoding", b"gzip, deflate, br"),
    (b"Connection", b"keep-alive"),
    (b"Cookie", b"session=0123456789abcdef; theme=dark"),
]
HELLO = [(b"Host", b"127.0.0.1:8080")]


def _frame(headers: list[tuple[bytes, bytes]], body: bytes = b"", method: bytes = b"GET") -> bytes:
    return msgpack.packb(
        [method, b"/hello?x=1", b"1.1", [list(h) for h in headers], body], use_bin_type=False
    )


def _us(fn: Callable[[], object], number: int = 20000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def _h11_cycle(raw: bytes) -> Callable[[], object]:
    def cycle() -> None:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(raw)
        conn.next_event()
        conn.next_event()
        conn.send(h11.Response(status_code=200, headers=[(b"content-type", b"text/plain")]))
        conn.send(h11.Data(data=b"Hello, world"))
        conn.send(h11.EndOfMessage())

    return cycle


def _hello_response() -> None:
    resp = Response()
    resp.start(200, [(b"content-type", b"text/plain")])
    resp.body(b"Hello, world", more=False)


def _rows() -> list[tuple[str, float, float]]:
    rows = []
    errors = io.StringIO()
    for label, headers in (("hello", HELLO), ("browser", BROWSER)):
        frame = _frame(headers)
        req = parse_request(frame)
        raw = b"GET /hello?x=1 HTTP/1.1\r\n" + b"".join(
            n + b": " + v + b"\r\n" for n, v in headers
        ) + b"\r\n"

        def asgi_all(frame: bytes = frame) -> None:
            r = parse_request(frame)
            asgi_scope(r)
            next(request_messages(r))
            _hello_response()

        def wsgi_all(frame: bytes = frame) -> None:
            r = parse_request(frame)
            wsgi_environ(r, errors=errors)
            _hello_response()

        h11_req = _us(lambda: h11.Request(method=b"GET", target=b"/hello?x=1", headers=headers))
        rows += [
            (f"{label}: parse + validate frame", _us(lambda: parse_request(frame)), h11_req),
            (f"{label}: ASGI scope + http.request", _us(lambda: (asgi_scope(req),
                                                               next(request_messages(req)))), 0.0),
            (f"{label}: WSGI environ", _us(lambda: wsgi_environ(req, errors=errors)), 0.0),
            (f"{label}: ASGI total (parse, scope, response)", _us(asgi_all),
             _us(_h11_cycle(raw), 5000)),
            (f"{label}: WSGI total (parse, environ, response)", _us(wsgi_all), 0.0),
        ]
    rows.append(("hello world response (start + body + end)", _us(_hello_response), 0.0))
    big = _frame(HELLO + [(b"Content-Length", b"1048576")], b"x" * 1048576, b"POST")
    rows.append(("1 MiB POST: parse (body not copied)", _us(lambda: parse_request(big), 2000),
                 0.0))
    return rows


def main() -> None:
    print(f"{'what':<50} {'µs/req':>8} {'h11 µs':>8}")
    for what, ours, theirs in _rows():
        h11_column = f"{theirs:8.2f}" if theirs else ""
        print(f"{what:<50} {ours:8.2f} {h11_column:>8}")
    print("h11 column: h11.Request(...) for parse rows, a full h11 server cycle for total rows")


if __name__ == "__main__":
    main()
