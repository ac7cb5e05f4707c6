"""A session that goes away under a running app, on real worker processes under the dev runtime
(both dialects): an ASGI app waiting in receive() gets http.disconnect and its send() raises
OSError; a WSGI app's iterable stops being iterated and is closed. And the v0.12 runtime's own
word for a client that left before closing its request ([5, 2] "End of file") fails the
session before the app is ever called."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from cocaine_http.dev.profile import Profile
from cocaine_http.protocol.dialect import pack
from tests.plugins.devruntime import REPO_ROOT, wait_for

ENVELOPE = pack(["GET", "/", "1.1", [], b""])

APPS = '''
import asyncio, os, time
MARKS = os.environ["MARKS"]

def mark(text):
    with open(MARKS, "a") as f:
        f.write(text + "\\n")

async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    mark("called")
    await receive()  # the request's body
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    message = await receive()  # nothing more comes until the session goes away
    mark(message["type"])
    try:
        await send({"type": "http.response.body", "body": b"late"})
    except OSError as exc:
        mark("send raised " + type(exc).__name__)

class Rows:
    def __init__(self):
        self.sent = 0
    def __iter__(self):
        for i in range(50):
            self.sent += 1
            mark("row %d" % i)
            yield b"row\\n"
            time.sleep(0.1)
    def close(self):
        mark("closed after %d" % self.sent)

def wsgi(environ, start_response):
    mark("called")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Rows()
'''


class Sink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.errors: list[tuple[int, str]] = []

    def on_chunk(self, data: bytes) -> None:
        self.chunks.append(data)

    def on_error(self, code: int, message: str, category: int | None = None) -> None:
        self.errors.append((code, message))

    def on_choke(self) -> None:
        pass


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    (tmp_path / "disc_apps.py").write_text(APPS)
    return tmp_path / "marks"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def start(dev_runtime_factory, tmp_path: Path, marks: Path, target: str, protocol: int,
                *options: str):
    env = {"PYTHONPATH": f"{tmp_path}:{REPO_ROOT}", "MARKS": str(marks)}
    command = [sys.executable, "-m", "cocaine_http", target, *options]
    return await dev_runtime_factory(command, app="disc", protocol=protocol, workers=1,
                                     profile=Profile(environment=env), workdir=str(tmp_path))


@pytest.mark.parametrize("protocol", [0, 1], ids=["v0.11", "v0.12"])
async def test_asgi_app_in_receive_gets_http_disconnect(dev_runtime_factory, tmp_path, marks,
                                                        protocol):
    """The worker's --timeout fails the session while the app waits in receive(): receive()
    returns http.disconnect (the app is not cancelled) and its next send() raises OSError."""
    runtime = await start(dev_runtime_factory, tmp_path, marks, "disc_apps:asgi", protocol,
                          "--timeout", "1")
    assert runtime.engine is not None
    runtime.engine.enqueue("http", ENVELOPE, Sink())

    await wait_for(lambda: any(line.startswith("send raised") for line in lines(marks)))
    assert lines(marks) == ["called", "http.disconnect", "send raised SessionGoneError"]


@pytest.mark.parametrize("protocol", [0, 1], ids=["v0.11", "v0.12"])
async def test_wsgi_iterable_is_closed_when_the_session_fails(dev_runtime_factory, tmp_path,
                                                               marks, protocol):
    """The session fails while a WSGI app streams: its iterable is no longer iterated and
    its close() is called (fewer rows than it would have made)."""
    runtime = await start(dev_runtime_factory, tmp_path, marks, "disc_apps:wsgi", protocol,
                          "--timeout", "1")
    assert runtime.engine is not None
    runtime.engine.enqueue("http", ENVELOPE, Sink())

    closed = await wait_for(lambda: [x for x in lines(marks) if x.startswith("closed")])
    sent = int(closed[0].split()[-1])
    assert 0 < sent < 50
    assert len([x for x in lines(marks) if x.startswith("row")]) == sent


async def test_client_leaving_before_close_never_calls_the_app(dev_runtime_factory, tmp_path,
                                                               marks):
    """v0.12: a client that leaves the app service before closing its request: the worker
    gets [5, 2] "End of file" on the session (what cocaine-runtime v0.12 sends), fails it,
    and the app, which runs only once the request is complete, is never called."""
    runtime = await start(dev_runtime_factory, tmp_path, marks, "disc_apps:asgi", 1)
    port = runtime.services.endpoints["disc"][1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(pack([1, 0, ["http"]]) + pack([1, 0, [ENVELOPE]]))
    await writer.drain()
    writer.close()

    slave = next(iter(runtime.engine.pool.values()))
    await wait_for(lambda: any("End of file" in line for line in slave.output))
    await asyncio.sleep(0.2)
    assert lines(marks) == []
