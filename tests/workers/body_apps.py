"""Apps whose response bodies are not bytes, served in real worker processes by
tests/test_response_bodies.py (`python -m cocaine_http tests.workers.body_apps:wsgi_app` or
`:asgi_app`). The path names the body:

| path | body |
|---|---|
| `/quick` | `b"ok"` |
| `/str` | `"text"` (a str) |
| `/int` | `5` |
| `/strided` | `memoryview(b"x" * 10000)[::2]` (5000 items, not one run of bytes) |
| `/array` | `array("I", [1, 2])` (8 bytes, 2 items) |
| `/array-view` | a memoryview of that array |
"""

from __future__ import annotations

from array import array
from typing import Any

BODIES: dict[str, Any] = {
    "/quick": b"ok",
    "/str": "text",
    "/int": 5,
    "/strided": memoryview(b"x" * 10000)[::2],
    "/array": array("I", [1, 2]),
    "/array-view": memoryview(array("I", [1, 2])),
}


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[Any]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [BODIES[environ["PATH_INFO"]]]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.body", "body": BODIES[scope["path"]]})
