"""Shared pytest fixtures: chaos (real HTTP workers under faults, seen from the engine side).

Fixtures:
    chaos_worker: `await chaos_worker(engine, target, *options, env=None)` starts
        `python -m cocaine_http <target> <options>` against an in-test engine (tests.plugins.worker
        `Engine`), in its own process group, its output collected as it comes (`proc.output`,
        a list of lines) so a chatty worker never blocks on a full pipe. Every process it started
        is SIGKILLed, with its group, at teardown.
    counting_engine: a started `CountingEngine` (an `Engine` that counts every reply message per
        session, so a duplicate or an orphan is seen), once per dialect (v0.11, v0.12).

Helpers (import from tests.plugins.chaos): `http_invoke(engine, method, path, body=b"",
choke=True)` opens an HTTP session; `response(reply)` and `decode(chunks)` give (status, body)
of an HTTP reply; `protocol_options(engine)` are the worker options that select the engine's
dialect; `gone(pid)` says whether a process no longer exists (exited and reaped); `FLASK`
and `ASGI` are the targets of tests/workers/chaos_apps.py.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from cocaine_http.aio.channel import Channel
from cocaine_http.protocol.dialect import V0_11, V0_12, Dialect
from tests.plugins.apps import frame
from tests.plugins.worker import Engine, Reply, worker_argv

ROOT = Path(__file__).resolve().parents[2]
FLASK = "tests.workers.chaos_apps:flask_app"
ASGI = "tests.workers.chaos_apps:asgi_app"


class WorkerProcess:
    """A spawned HTTP worker and the lines it has printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.output: list[str] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.output.append(line.decode("utf-8", "replace").rstrip("\n"))

    async def wait(self, timeout: float) -> int:
        """The exit code, once the process has exited and its output is read."""
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(self._reader, timeout)
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.output)

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class CountingEngine(Engine):
    """An Engine that counts each reply message per session: a session answered twice, or a
    message for a session never opened, shows up in `chokes`, `errors` and `orphans`."""

    def __init__(self, path: str, dialect: Dialect = V0_11) -> None:
        super().__init__(path, dialect)
        self.chokes: collections.Counter[int] = collections.Counter()
        self.errors: collections.Counter[int] = collections.Counter()
        self.orphans: list[tuple[str, int]] = []
        #: Called with the session id at each choke (after counting), to keep a window full.
        self.on_done: Callable[[int], None] | None = None

    def _accept(self, channel: Channel) -> None:
        super()._accept(channel)
        channel.on_chunk = self._count_chunk

    def _on_v12(self, mid: int, channel: int, args: list[Any]) -> None:
        if channel != 1 and mid == 0:
            self._count_chunk(channel, args[0])
        else:
            super()._on_v12(mid, channel, args)

    def _count_chunk(self, session: int, data: bytes) -> None:
        reply = self.replies.get(session)
        if reply is None:
            self.orphans.append(("chunk", session))
            return
        reply.chunks.append(data)

    def _on_error(self, session: int, code: int, message: str) -> None:
        if session not in self.replies:
            self.orphans.append(("error", session))
        self.errors[session] += 1
        super()._on_error(session, code, message)

    def _on_choke(self, session: int) -> None:
        if session not in self.replies:
            self.orphans.append(("choke", session))
            return
        self.chokes[session] += 1
        super()._on_choke(session)
        if self.on_done is not None:
            self.on_done(session)


def http_invoke(engine: Engine, method: str, path: str, body: bytes = b"",
                choke: bool = True) -> int:
    """Open an HTTP session (invoke "http", the request frame, and the choke unless told)."""
    return engine.invoke("http", frame(method, path, body), choke=choke)


def response(reply: Reply, raw_body: bool = False) -> tuple[int, bytes]:
    """(status, body) of an HTTP reply (v0.12: `raw_body`)."""
    assert reply.chunks, f"no head; error {reply.error!r}"
    return decode(reply.chunks, raw_body)


def decode(chunks: list[bytes], raw_body: bool = False) -> tuple[int, bytes]:
    """(status, body) of HTTP reply chunks: a packed head, then msgpack strings of body
    (v0.11) or the body bytes as they are (v0.12, `raw_body`)."""
    status = msgpack.unpackb(chunks[0], raw=False)[0]
    if raw_body:
        return int(status), b"".join(chunks[1:])
    body = b"".join(msgpack.unpackb(c, raw=True) for c in chunks[1:])
    return int(status), body


def protocol_options(engine: Engine) -> list[str]:
    """The worker options that select the engine's dialect."""
    protocol = engine.dialect.protocol
    return ["--protocol", str(protocol)] if protocol else []


def gone(pid: int) -> bool:
    """True when `pid` names no process (exited and reaped) or only a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(params=[V0_11, V0_12], ids=["v0.11", "v0.12"])
async def counting_engine(tmp_path: Path, request: Any) -> AsyncIterator[CountingEngine]:
    """A started CountingEngine on a unix socket in tmp_path, for each dialect (a worker
    started against a v0.12 one needs `--protocol 1`, see `protocol_options`)."""
    peer = CountingEngine(str(tmp_path / "engine.sock"), request.param)
    await peer.start()
    yield peer
    await peer.close()


@pytest.fixture
async def chaos_worker() -> AsyncIterator[Callable[..., Any]]:
    """Start `python -m cocaine_http target options` against an engine; killed at teardown."""
    started: list[WorkerProcess] = []

    async def spawn(engine: Engine, target: str, *options: str,
                    env: dict[str, str] | None = None) -> WorkerProcess:
        environment = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cocaine_http", target, *options, *worker_argv(engine.path),
            cwd=str(ROOT), env=environment, start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        worker = WorkerProcess(proc)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill_group()
        if worker.proc.returncode is None:
            await worker.proc.wait()
        worker._reader.cancel()
