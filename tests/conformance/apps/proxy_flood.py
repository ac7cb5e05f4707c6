# Strategy: a bare ASGI app for the proxy's conformance tests: where it runs (the runtime's
# spool directory tells two runtimes apart), a body of any size streamed in chunks (memory
# tests), a slow answer (requests in flight when a runtime goes away), any status, and an
# echo of the request headers the app received (forwarded headers).
"""An ASGI app for tests/conformance/test_proxy*.py."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs


async def _answer(send: Any, status: int, payload: bytes,
                  kind: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", b"%d" % len(payload))]})
    await send({"type": "http.response.body", "body": payload})


def _where() -> bytes:
    return json.dumps({"cwd": os.getcwd(), "pid": os.getpid()}).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
    while (await receive()).get("more_body"):
        pass
    if path == "/where":
        await _answer(send, 200, _where())
    elif path == "/slow":
        await asyncio.sleep(float(query.get("s", "3")))
        await _answer(send, 200, _where())
    elif path == "/flood":
        size, chunk = int(query.get("size", "1048576")), int(query.get("chunk", "65536"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        piece = b"x" * chunk
        while size > 0:
            part = piece if size >= chunk else piece[:size]
            size -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path.startswith("/status/"):
        await _answer(send, int(path.rsplit("/", 1)[1]), b"status\n", b"text/plain")
    elif path == "/echo":
        seen = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        await _answer(send, 200, json.dumps({"headers": seen, "client": scope.get("client"),
                                             "scheme": scope.get("scheme")}).encode())
    else:
        await _answer(send, 404, b"no such route\n", b"text/plain")
