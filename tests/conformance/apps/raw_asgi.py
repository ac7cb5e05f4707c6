# Strategy: a bare ASGI 3 app with one route per behaviour the conformance suite compares across
# fronts: an echo of what the app received (method, path, query, every header in order, body
# size and digest), any status, streamed bodies, large bodies, framing and hop-by-hop headers
# set by the app, cookies, a redirect, and failures before and after the response head.
"""A raw ASGI app for the conformance suite (no framework between the app and the worker)."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]


async def _body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
    body = await _body(receive)
    text = [(b"content-type", b"text/plain")]
    if path == "/echo":
        seen = {
            "method": scope["method"], "path": path, "query": scope["query_string"].decode(),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
        }
        payload = json.dumps(seen).encode()
        await _send(send, 200, payload, [(b"content-type", b"application/json"),
                                         (b"content-length", b"%d" % len(payload))])
    elif path.startswith("/status/"):
        await _send(send, int(path.rsplit("/", 1)[1]), b"status\n", text)
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": text})
        for i in range(int(query.get("n", "5"))):
            await send({"type": "http.response.body", "body": b"piece %d\n" % i,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":
        size = int(query.get("size", "1048576"))
        await _send(send, 200, b"y" * size, [(b"content-length", b"%d" % size)])
    elif path == "/hop":
        await _send(send, 200, b"hop\n", [
            (b"content-type", b"text/plain"), (b"content-length", b"4"),
            (b"connection", b"close"), (b"keep-alive", b"timeout=5"),
            (b"transfer-encoding", b"identity"), (b"upgrade", b"h2c"),
            (b"proxy-authenticate", b"Basic"), (b"trailer", b"x-sum"), (b"x-kept", b"yes"),
        ])
    elif path == "/cookies":
        await _send(send, 200, b"cookies\n", [*text, (b"set-cookie", b"a=1; Path=/"),
                                                (b"set-cookie", b"b=2; HttpOnly")])
    elif path == "/redirect":
        await _send(send, 302, b"", [(b"location", b"/echo")])
    elif path == "/fail-before":
        raise RuntimeError("failed before the head")
    elif path == "/fail-after":
        await send({"type": "http.response.start", "status": 200, "headers": text})
        await send({"type": "http.response.body", "body": b"partial\n", "more_body": True})
        raise RuntimeError("failed after the head")
    else:
        await _send(send, 404, b"no such route\n", text)
