"""An ASGI app for the proxy tests (`tests.workers.proxy_apps:app`).

| path | behaviour |
|---|---|
| `/status/<n>` | answers status n, body `status n` |
| `/pid` | the worker's process id |
| `/headers` | the request headers as JSON pairs, and the client address the worker saw |
| `/slow?s=X` | waits X seconds, then `slept` |
| `/stream?mib=N` | streams N MiB in 1 MiB chunks |
| `/hang` | never answers |
| anything else | `hello` |
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs

MIB = 1024 * 1024


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    status, body = 200, b"hello"
    if path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
        body = b"status %d" % status
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/headers":
        pairs = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        body = json.dumps({"headers": pairs, "client": scope.get("client")}).encode()
    elif path == "/slow":
        await asyncio.sleep(float(query.get("s", "1")))
        body = b"slept"
    elif path == "/hang":
        await asyncio.Event().wait()
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * MIB
        for _ in range(int(query["mib"])):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
