"""Our worker's life under the real v0.12 runtime: heartbeats (and no idle terminate: node::v2
has no idle timer), terminate from pause_app, the runtime's stop (SIGTERM)."""

from __future__ import annotations

import asyncio
import time

import msgpack

from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.services import Client

from .conftest import OUR_SLAVE, Runtime12

TARGET = "examples.flask_app.app:app"


async def get(client: Client, app: str, uri: str = "/") -> int:
    svc = await client.service(app)
    chunks = await svc.enqueue("http", pack(["GET", uri, "1.1", [], b""]))
    return int(msgpack.unpackb(chunks[0], raw=False)[0])


async def test_heartbeats_keep_the_worker_alive(runtime12, client12):
    """heartbeat-timeout 7 s: the same worker still answers after 12 s of silence, and the
    runtime never timed it out (our worker heartbeats every 5 s and the runtime echoes).
    idle-timeout 1 s changes nothing: node::v2 reads it but has no idle timer."""
    app_dir = runtime12.slave_script("beat12", OUR_SLAVE.format(target=TARGET))
    await runtime12.deploy(client12, "beat12", app_dir,
                           {"heartbeat-timeout": 7, "idle-timeout": 1})
    assert await get(client12, "beat12") == 200

    await asyncio.sleep(12)

    assert await get(client12, "beat12") == 200
    assert not list((runtime12.root / "exits").iterdir())  # the first worker never exited
    log = runtime12.log()
    assert "heartbeat timer has called its completion handler: timeout" not in log
    assert "sending terminate message" not in log


async def test_pause_app_terminate_is_answered(runtime12, client12):
    """node.pause_app: the runtime sends terminate (code 11, "overseer is shutting down"), our
    worker answers it and the runtime processes the answer (then SIGKILLs the process within
    milliseconds, so the exit status is never seen). The runtime sometimes loses its own
    terminate (it removes the app's handshake endpoint first and the frame never leaves: no
    "after send", then "unable to terminate slave: timeout"); another app is then
    deployed and paused, up to eight times (three were seen to fail together)."""
    node = await client12.service("node")
    asked = "engine asks to terminate (11): overseer is shutting down"
    for attempt in range(8):
        name = f"pause12-{attempt}"  # a fresh app each time: nothing cached from the last
        app_dir = runtime12.slave_script(name, OUR_SLAVE.format(target=TARGET))
        await runtime12.deploy(client12, name, app_dir)
        assert await get(client12, name) == 200
        before = runtime12.log().count(asked)
        await node.pause_app(name)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and runtime12.log().count(asked) == before:
            await asyncio.sleep(0.05)
        if runtime12.log().count(asked) > before:
            break
    else:
        raise AssertionError(f"no terminate reached the worker:\n{runtime12.log()[-3000:]}")

    log = await runtime12.wait_log("processing terminate message: overseer is shutting down")
    assert "slave has committed suicide" in log


async def test_runtime_stop_ends_the_worker_cleanly(tmp_path):
    """SIGTERM to the v0.12 runtime: it either sends terminate (when the node service stops
    before the sockets close) or just closes the worker's socket, and SIGKILLs the process
    within milliseconds (the legacy_process terminator). Ours exits 0 both ways when it gets
    the chance (tests/test_worker_engine_stop.py checks the close on every run) and never
    reports a failure. Now and then the runtime kills the worker and exits before either of
    them logs anything: then the stop is tried again on a fresh runtime, up to four times."""
    seen = []
    for attempt in range(4):
        runtime = Runtime12(tmp_path / f"run{attempt}")
        runtime.start()
        try:
            async with Client(runtime.locator, protocol=V0_12, timeout=15.0) as client:
                app_dir = runtime.slave_script("stop12", OUR_SLAVE.format(target=TARGET))
                await runtime.deploy(client, "stop12", app_dir)
                assert await get(client, "stop12") == 200
        finally:
            runtime.stop()

        log = runtime.log()
        assert set(p.read_text() for p in (runtime.root / "exits").iterdir()) <= {"0"}
        assert "engine connection" not in log  # the error line of a lost connection
        seen = [line for line in ("terminated: overseer is shutting down",
                                  "engine closed the connection: the runtime is stopping",
                                  "child has been killed: 9") if line in log]
        if seen:
            break
    assert seen, "no stop was logged by the runtime or the worker in four runtime stops"


MARKING_APP = '''
import os
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    open(os.environ["MARKS"], "a").write("called\\n")
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''


async def test_client_leaving_before_close_fails_the_session_only(runtime12, client12):
    """A client of the app service that writes the envelope and leaves without closing its
    upstream: the runtime fails the session toward the worker with [5, 2] "End of file"
    (asio misc eof); our worker fails that session and never calls the app, which runs only
    on a complete request. The same client closing first gets its answer."""
    import socket as socketlib

    marks = runtime12.root / "marks"
    app_dir = runtime12.slave_script("leave12", OUR_SLAVE.format(target="marking_app:app"))
    (app_dir / "marking_app.py").write_text(MARKING_APP)
    await runtime12.deploy(client12, "leave12", app_dir, env={"MARKS": str(marks)})
    assert await get(client12, "leave12") == 200  # a complete request is served
    marks.unlink()

    resolved = await client12.resolve("leave12")
    with socketlib.create_connection(resolved.endpoint) as sock:
        sock.sendall(pack([1, 0, ["http"]]) + pack([1, 0, [pack(["GET", "/", "1.1", [], b""])]]))
        await asyncio.sleep(0.5)
    await runtime12.wait_log("failed: [2] End of file")  # our worker's line

    await asyncio.sleep(0.5)
    assert not marks.exists()
