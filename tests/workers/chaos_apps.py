"""Apps that misbehave on request, served in real worker processes by the chaos suite
(`python -m cocaine_http tests.workers.chaos_apps:flask_app` or `:asgi_app`).

Both apps answer the same paths:

| path | behaviour |
|---|---|
| `/quick` | 200 `ok` |
| `/echo` | 200, the request body |
| `/pid` | 200, the worker's process id |
| `/sleep?s=X` | waits X seconds, then 200 `slept` and the request body |
| `/hang` | never answers (WSGI: a thread sleeps; ASGI: a task awaits forever) |

The WSGI app prints `started <path>` when /sleep or /hang begins, so a test can tell a request
that ran from one that waited in the pool's queue.
| `/stream` | sends its head and a first body chunk, then never goes on |
| `/raise` | raises before answering |
| `/exit` | the process ends at once, `os._exit(3)` |
| `/block` | (ASGI) blocks the event loop for an hour |
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, request

HOUR = 3600.0

flask_app = Flask(__name__)


@flask_app.route("/quick")
def quick() -> str:
    return "ok"


@flask_app.route("/echo", methods=["POST"])
def echo() -> bytes:
    return request.get_data()


@flask_app.route("/pid")
def pid() -> str:
    return str(os.getpid())


@flask_app.route("/sleep", methods=["GET", "POST"])
def sleep() -> bytes:
    print("started /sleep", flush=True)
    time.sleep(float(request.args.get("s", "1")))
    return b"slept" + request.get_data()


@flask_app.route("/hang")
def hang() -> str:
    print("started /hang", flush=True)
    time.sleep(HOUR)
    return "never"


@flask_app.route("/stream")
def stream() -> Response:
    def body() -> Iterator[bytes]:
        yield b"first\n"
        time.sleep(HOUR)
        yield b"never\n"

    return Response(body(), mimetype="text/plain")


@flask_app.route("/raise")
def fail() -> str:
    raise RuntimeError("the app failed on purpose")


@flask_app.route("/exit")
def leave() -> str:
    os._exit(3)


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same paths as `flask_app`, as a bare ASGI app."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/raise":
        raise RuntimeError("the app failed on purpose")
    if path == "/exit":
        os._exit(3)
    if path == "/hang":
        await asyncio.Event().wait()
    if path == "/block":
        time.sleep(HOUR)
    if path == "/sleep":
        await asyncio.sleep(float(scope["query_string"].decode().partition("=")[2] or "1"))
    answers = {"/quick": b"ok", "/echo": body, "/pid": str(os.getpid()).encode(),
               "/sleep": b"slept" + body, "/stream": b"first\n"}
    if path not in answers:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    if path == "/stream":
        await send({"type": "http.response.body", "body": answers[path], "more_body": True})
        await asyncio.Event().wait()
    await send({"type": "http.response.body", "body": answers[path]})
