"""No fault wedges a WSGI worker (real worker processes, bounded waits, no timing asserts):
a pool exhausted by timed-out requests makes the worker give up and exit, engine loss ends the
process whatever its threads do, and queued requests are dropped instead of run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cocaine_http.aio.worker import EXIT_CONNECTION_LOST, EXIT_DISOWNED, EXIT_GAVE_UP
from tests.plugins.apps import frame
from tests.plugins.worker import Engine, worker_argv

APP = "tests.workers.adapter_apps:hang_wsgi"
BOUND = 30.0  # generous: the machine is shared; nothing here asserts on time


async def wait_lines(path: Path, count: int) -> list[str]:
    """The lines of `path` once it has at least `count` (the hung requests have started)."""
    for _ in range(int(BOUND / 0.05)):
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} has {lines} after {BOUND} s")


async def test_pool_exhausted_by_timed_out_requests_gives_up_and_exits(
    engine: Engine, http_worker: Any, tmp_path: Path
) -> None:
    """With --timeout and more hung requests than threads, every session fails (the one still
    queued too, without reaching the app), and the worker exits (EXIT_GAVE_UP) instead of
    heartbeating on with no thread to serve."""
    hangs = tmp_path / "hangs"
    proc = await http_worker(engine.path, APP, "--threads", "2", "--timeout", "1",
                             "--no-access-log", env={"HANG_FILE": str(hangs)})
    await engine.connected()
    sids = [engine.invoke("http", frame(uri=f"/hang/{n}")) for n in range(3)]

    code = await asyncio.wait_for(proc.wait(), BOUND)
    stderr = (await proc.stderr.read()).decode()
    replies = [engine.replies[sid] for sid in sids]

    assert code == EXIT_GAVE_UP, stderr[-3000:]
    assert "all 2 WSGI threads are stuck" in stderr
    assert all(reply.error is not None for reply in replies), [r.error for r in replies]
    assert all("timed out" in reply.error[1] for reply in replies if reply.error)
    assert len(hangs.read_text().splitlines()) == 2  # the third never reached the app


async def test_engine_loss_ends_the_process_while_a_thread_hangs(
    engine: Engine, http_worker: Any, tmp_path: Path
) -> None:
    """A handler that never returns does not keep the worker alive after its engine is gone."""
    hangs = tmp_path / "hangs"
    proc = await http_worker(engine.path, APP, "--threads", "2", "--no-access-log",
                             env={"HANG_FILE": str(hangs)})
    await engine.connected()
    engine.invoke("http", frame(uri="/hang/0"))
    await wait_lines(hangs, 1)

    await engine.close()
    code = await asyncio.wait_for(proc.wait(), BOUND)

    assert code == EXIT_CONNECTION_LOST


async def test_queued_requests_are_dropped_when_the_engine_goes(
    engine: Engine, http_worker: Any, tmp_path: Path
) -> None:
    """With the only thread busy and requests queued behind it, closing the engine socket
    drops the queued ones: their app call never starts."""
    started = tmp_path / "started"
    proc = await http_worker(engine.path, APP, "--threads", "1", "--no-access-log",
                             env={"HANG_FILE": str(started)})
    await engine.connected()
    engine.invoke("http", frame(uri="/slow/first", headers=[("Host", "x")]))
    await wait_lines(started, 1)
    for n in range(20):
        engine.invoke("http", frame(uri=f"/slow/queued{n}"))
    await asyncio.sleep(0.2)  # the invokes reach the worker and queue behind the busy thread

    await engine.close()
    code = await asyncio.wait_for(proc.wait(), BOUND)

    assert code == EXIT_CONNECTION_LOST
    assert started.read_text().splitlines() == ["/slow/first"]


async def test_a_thread_the_app_left_behind_does_not_keep_the_process_alive(
    engine: Engine, http_worker: Any, tmp_path: Path
) -> None:
    """A non-daemon thread that never ends would keep the interpreter from exiting: the
    process ends anyway, one termination grace after the worker stopped."""
    started = tmp_path / "started"
    proc = await http_worker(engine.path, APP, "--no-access-log",
                             env={"HANG_FILE": str(started)})
    await engine.connected()
    reply = await engine.reply(engine.invoke("http", frame(uri="/thread")))
    assert reply.error is None

    await engine.close()
    code = await asyncio.wait_for(proc.wait(), BOUND)
    stderr = (await proc.stderr.read()).decode()

    assert code == EXIT_CONNECTION_LOST
    assert "threads still running" in stderr


async def test_disowned_worker_exits_within_its_grace_while_a_thread_hangs(
    engine: Engine, spawn_worker: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Heartbeats stop being echoed: the worker is disowned and the process ends, though a
    request's thread never returns (1 s disown timeout, 1 s grace)."""
    hangs = tmp_path / "hangs"
    monkeypatch.setenv("HANG_FILE", str(hangs))
    proc = await spawn_worker("tests/workers/disown_wsgi.py", worker_argv(engine.path))
    await engine.connected()
    engine.invoke("http", frame(uri="/hang/0"))
    await wait_lines(hangs, 1)

    engine.echo = False
    code = await asyncio.wait_for(proc.wait(), BOUND)
    output = (await proc.stdout.read()).decode()

    assert code == EXIT_DISOWNED, output[-3000:]
    assert "disowned" in output and "threads still running" in output

