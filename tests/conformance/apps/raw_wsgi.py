# Strategy: a bare PEP 3333 app for what the framework examples do not exercise: an app that
# raises before start_response and one that raises after its first body item, the legacy
# write() callable, a generator body, and framing and hop-by-hop headers set by the app.
"""A raw WSGI app for the conformance suite."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Callable[[bytes], None]]


def _pieces(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield b"item %d\n" % i


def _then_raise() -> Iterator[bytes]:
    yield b"first item\n"
    raise RuntimeError("failed after the head")


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    text = [("Content-Type", "text/plain")]
    if path == "/raise":
        raise RuntimeError("failed before start_response")
    if path == "/raise-after":
        start_response("200 OK", text)
        return _then_raise()
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"written, ")
        return [b"then returned\n"]
    if path == "/generator":
        start_response("200 OK", text)
        return _pieces(int(environ.get("QUERY_STRING", "n=5").partition("=")[2] or 5))
    if path == "/framing":
        body = b"framed by the app\n"
        start_response("200 OK", [*text, ("Content-Length", str(len(body))),
                                  ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
                                  ("X-Kept", "yes")])
        return [body]
    if path == "/empty":
        start_response("200 OK", [("Content-Length", "0")])
        return []
    start_response("404 Not Found", text)
    return [b"no such route\n"]
