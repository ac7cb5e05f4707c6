"""An ASGI app for the dev front's bounds tests (`tests.workers.bounds_apps:app`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

MIB = 1024 * 1024


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/stream?mib=N` streams N MiB in 1 MiB chunks; any other path answers the size of the
    request body it read."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/stream":
        chunk = b"x" * MIB
        for _ in range(int(parse_qs(scope["query_string"].decode())["mib"][0])):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.body", "body": str(size).encode()})
