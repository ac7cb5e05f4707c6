"""Apps that the adapter tests serve from real worker processes (`tests.workers.adapter_apps:NAME`).

Environment knobs (read at import, in the worker process):
    ACCESS_LOG_FILE: attach a FileHandler with its own format to `cocaine_http.access`.
    ACCESS_LOG_FLUSH: the access log's flush interval in seconds (a long one leaves only the
        flush at exit to write the lines).
    HANG_FILE: a file the hung apps append a line to when a request starts hanging.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from cocaine_http.adapters import accesslog

if os.environ.get("ACCESS_LOG_FILE"):
    _handler = logging.FileHandler(os.environ["ACCESS_LOG_FILE"])
    _handler.setFormatter(logging.Formatter("custom %(levelname)s %(name)s %(message)s"))
    logging.getLogger("cocaine_http.access").addHandler(_handler)
if os.environ.get("ACCESS_LOG_FLUSH"):
    accesslog.FLUSH_INTERVAL = float(os.environ["ACCESS_LOG_FLUSH"])

_forever = threading.Event()


async def hello_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def hello_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def _hung(environ: dict[str, Any]) -> None:
    path = os.environ.get("HANG_FILE")
    if path:
        with open(path, "a") as f:
            f.write(environ["PATH_INFO"] + "\n")


def hang_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """`/hang` blocks its thread forever (a hung database call), `/slow?S` for S seconds,
    `/thread` leaves a non-daemon thread behind that never ends; anything else answers."""
    if environ["PATH_INFO"].startswith("/hang"):
        _hung(environ)
        _forever.wait()
    if environ["PATH_INFO"].startswith("/thread"):  # a non-daemon thread that never ends
        threading.Thread(target=_forever.wait, name="app-thread", daemon=False).start()
        _hung(environ)
    if environ["PATH_INFO"].startswith("/slow"):
        _hung(environ)
        time.sleep(float(environ.get("QUERY_STRING") or "2"))
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
