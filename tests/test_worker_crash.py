"""A spawned worker fed well-framed bad messages by its engine never dies of a signal, and
does on the C decoder what it does on the pure-Python reference decoder.

These messages once killed a worker on the C decoder with SIGSEGV: the channel kept the error
(`last_error`), whose traceback kept the dispatching frame and its records iterator, which had
an export of a memoryview over the decoder's records array; CPython before 3.12.7 lets the
garbage collector clear such a memoryview and then crashes freeing it (docs/codec.md, "Records
lifetime"). Only a real process shows it: it takes the worker's own garbage collections.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.plugins.worker import ROOT, WAIT, Engine, worker_argv

BAD = [
    pytest.param(msgpack.packb([3, 7, []]), 0, id="invoke-without-event"),
    pytest.param(msgpack.packb([2, 0, []]), 0, id="terminate-without-arguments"),
    pytest.param(msgpack.packb([2, 0, [b"x"]]), 0, id="terminate-short"),
    pytest.param(msgpack.packb([5, 7, []]), 0, id="error-without-arguments"),
    pytest.param(msgpack.packb([4, 7, []]), 0, id="chunk-without-payload"),
    pytest.param(msgpack.packb([3, 7, []]), 3, id="invoke-without-event-after-three-sessions"),
    pytest.param(msgpack.packb([3, 7, []]) + b"\xc1", 1, id="bad-invoke-then-broken-stream"),
]

DECODERS = {
    "c": {"COCAINE_HTTP_REQUIRE_C": "1"},
    "python": {"COCAINE_HTTP_PUREPYTHON": "1"},
}


async def run_worker(
    path: str, decoder: str, message: bytes, sessions: int
) -> tuple[Any, ...]:
    """Serve `sessions` pings, send `message` (wire bytes), then one more ping. Returns what
    became of the worker: ("served", body) if it answered that ping, or ("exited",
    returncode); then its exit code and its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    env.update(DECODERS[decoder], PYTHONUNBUFFERED="1")
    engine = await Engine(path).start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples/echo_worker.py"), *worker_argv(path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await engine.connected()
        for i in range(sessions):
            reply = await engine.reply(engine.invoke("ping", b"warm %d" % i))
            assert reply.chunks == [b"warm %d" % i]
        assert engine.channel is not None
        engine.channel.send(7, message)
        ping = engine.invoke("ping", b"after")
        exited = asyncio.ensure_future(proc.wait())
        answered = asyncio.ensure_future(engine.reply(ping))
        await asyncio.wait({exited, answered}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        if answered.done() and not answered.exception():
            outcome: tuple[Any, ...] = ("served", answered.result().body)
            engine.terminate()
        else:
            answered.cancel()
            outcome = ("exited", await asyncio.wait_for(exited, WAIT))
        returncode = await asyncio.wait_for(exited, WAIT)
        assert proc.stdout is not None
        output = await proc.stdout.read()
        return outcome, returncode, output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await engine.close()


@pytest.mark.parametrize(("message", "sessions"), BAD)
async def test_bad_message_never_kills_the_worker_by_a_signal(
    tmp_path: Path, message: bytes, sessions: int
) -> None:
    """Each message, on each decoder: the worker exits with a code (never a signal) or goes
    on serving, the C decoder's worker exactly as the reference's, and no buffer error is
    reported by the garbage collector."""
    c = await run_worker(str(tmp_path / "c.sock"), "c", message, sessions)
    python = await run_worker(str(tmp_path / "py.sock"), "python", message, sessions)

    for outcome, returncode, output in (c, python):
        assert returncode >= 0, output.decode(errors="replace")
        assert b"Exception ignored" not in output, output.decode(errors="replace")
    assert b"codec c," in c[2] and b"codec python," in python[2]
    assert c[0] == python[0]


#: Well-framed messages whose session is unusable: (wire bytes, the id, what the log names).
UNUSABLE_SESSIONS = [
    (msgpack.packb([4, "abc", [b"x"]]), 4, "got string b'abc'"),
    (msgpack.packb([3, -5, [b"ping"]]), 3, "got integer -5"),
]


@pytest.mark.parametrize("decoder", sorted(DECODERS))
async def test_unusable_sessions_are_logged_and_the_others_complete(
    tmp_path: Path, decoder: str
) -> None:
    """With three sessions in flight, the engine sends a message with a string session id
    and one with a negative one: the worker logs each (its id, what was wrong) and drops it,
    the sessions in flight complete, a new one is served, and the worker exits normally when
    told to."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    env.update(DECODERS[decoder], PYTHONUNBUFFERED="1")
    path = str(tmp_path / "engine.sock")
    engine = await Engine(path).start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples/echo_worker.py"), *worker_argv(path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await asyncio.wait_for(engine.connected(), WAIT)
        assert engine.channel is not None
        flight = [engine.invoke("ping", b"first %d" % i, choke=False) for i in range(3)]
        await asyncio.wait_for(_echoed(engine, flight), WAIT)
        for data, _, _ in UNUSABLE_SESSIONS:
            engine.channel.send(0, data)
        for sid in flight:
            engine.send_chunk(sid, b"second")
            engine.send_choke(sid)
        replies = [await asyncio.wait_for(engine.reply(sid), WAIT) for sid in flight]
        after = await asyncio.wait_for(engine.reply(engine.invoke("upper", b"after")), WAIT)
        engine.terminate("slave is idle")
        code = await asyncio.wait_for(proc.wait(), WAIT)
        assert proc.stdout is not None
        output = (await proc.stdout.read()).decode(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await engine.close()

    assert [(r.chunks, r.error) for r in replies] == [
        ([b"first %d" % i, b"second"], None) for i in range(3)
    ]
    assert after.chunks == [b"AFTER"] and after.error is None
    for _, mid, named in UNUSABLE_SESSIONS:
        line = f"dropped message {mid} from "
        assert any(line in x and x.endswith(named) for x in output.splitlines()), output
    assert f"codec {decoder}," in output and code == 0, output


async def _echoed(engine: Engine, sessions: list[int]) -> None:
    """Until each session has its first chunk back."""
    while any(not engine.replies[sid].chunks for sid in sessions):
        await asyncio.sleep(0.01)
