"""Small ASGI apps that tests run in real worker processes (`tests.workers.http_apps:NAME`)."""

from __future__ import annotations

import asyncio
from typing import Any


async def idle_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/quick` answers at once; any other path sends its head and then waits for disconnect,
    keeping the session open (an idle long-poll)."""
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/quick":
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})
