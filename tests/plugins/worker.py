"""Shared pytest fixtures: worker.

`Engine` is an in-test engine peer built on `cocaine_http.aio.channel.serve` over a unix socket:
it records the handshake, echoes heartbeats (switchable), opens sessions and collects replies.
`spawn_worker` starts a real worker process against it. `RecordingSession` is a real worker
Session whose channel decodes what it sends, so in-process adapter tests run the production
write path (write_chunks and the dialect's framing included).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest

from cocaine_http.aio.channel import Channel, serve
from cocaine_http.aio.session import Session, delivery
from cocaine_http.codec import PythonDecoder
from cocaine_http.protocol.dialect import V0_11, Dialect, Kind
from cocaine_http.protocol.session import Error

UUID = "0e7f4b9c-5d1a-4c2e-9a57-3f6c2b8d1e40"
ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0


@dataclass
class Reply:
    """What the worker sent on one session."""

    chunks: list[bytes] = field(default_factory=list)
    error: tuple[int, str] | None = None
    choked: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class Engine:
    """The engine side of one worker connection (docs/protocol.md §3.3), driven by the test."""

    def __init__(self, path: str, dialect: Dialect = V0_11) -> None:
        self.path = path
        self.dialect = dialect
        self.echo = True
        self.channel: Channel | None = None
        self.heartbeats = 0
        self.log: list[tuple[str, Any]] = []
        self.replies: dict[int, Reply] = {}
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[str] = loop.create_future()
        self.first_heartbeat: asyncio.Future[None] = loop.create_future()
        self.terminated: asyncio.Future[tuple[int, str]] = loop.create_future()
        self.disconnected: asyncio.Future[int] = loop.create_future()
        self._next = 1
        self._heartbeat_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> Engine:
        # The dialect routers classify what a *worker* receives; the v0.12 engine side routes
        # the worker's messages itself from raw (id, channel, args) triples.
        raw = self.dialect.name == "v0.12"
        self._server = await serve(self.path, self._accept, dialect=self.dialect, raw=raw)
        return self

    def _accept(self, channel: Channel) -> None:
        self.channel = channel
        channel.on_message = self._on_message
        channel.on_heartbeat = self._on_heartbeat
        channel.on_chunk = lambda s, data: self._reply(s).chunks.append(data)
        channel.on_error = self._on_error
        channel.on_choke = self._on_choke
        channel.on_terminate = self._on_terminate
        channel.on_socket_error = self._on_socket_error
        if channel.raw:
            channel.on_message = self._on_v12

    def _on_v12(self, mid: int, channel: int, args: list[Any]) -> None:
        if channel == 1 and mid == 0:
            if not self.handshake.done():
                self.handshake.set_result(args[0].decode())
            else:
                self._on_heartbeat()
        elif channel == 1 and mid == 1:
            self._on_terminate(channel, args[0], args[1].decode())
        elif mid == 0:
            self._reply(channel).chunks.append(args[0])
        elif mid == 1:
            self._on_error(channel, args[0][1], args[1].decode())
        elif mid == 2:
            self._on_choke(channel)

    def _on_message(self, mid: int, session: int, args: list[Any]) -> None:
        if mid == 0 and not self.handshake.done():
            self.handshake.set_result(args[0].decode())
        self.log.append(("message", (mid, session, args)))

    def _on_heartbeat(self) -> None:
        self.heartbeats += 1
        if not self.first_heartbeat.done():
            self.first_heartbeat.set_result(None)
        if self.echo and self.channel is not None:
            self.channel.send(self.dialect.control, self.dialect.heartbeat())
        for count, future in self._heartbeat_waiters:
            if self.heartbeats >= count and not future.done():
                future.set_result(None)

    async def wait_heartbeats(self, count: int) -> None:
        """Wait until `count` heartbeats have arrived in total."""
        future = asyncio.get_running_loop().create_future()
        self._heartbeat_waiters.append((count, future))
        if self.heartbeats >= count:
            future.set_result(None)
        await asyncio.wait_for(future, WAIT)

    def _reply(self, session: int) -> Reply:
        return self.replies.setdefault(session, Reply())

    def _on_error(self, session: int, code: int, message: str) -> None:
        self._reply(session).error = (code, message)
        if self.dialect.error_ends_stream:
            self._on_choke(session)

    def _on_choke(self, session: int) -> None:
        choked = self._reply(session).choked
        if not choked.done():
            choked.set_result(None)

    def _on_terminate(self, session: int, code: int, reason: str) -> None:
        if not self.terminated.done():
            self.terminated.set_result((code, reason))

    def _on_socket_error(self, errno: int) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(errno)

    # -- driving the worker ---------------------------------------------------------------------

    async def connected(self) -> None:
        """Wait for handshake and first heartbeat (the worker is then active)."""
        await asyncio.wait_for(asyncio.shield(self.first_heartbeat), WAIT)

    def invoke(self, event: str, *chunks: bytes, choke: bool = True) -> int:
        """Open a session like the engine does: invoke, chunks, choke back to back."""
        assert self.channel is not None
        sid = self._next
        self._next += 1
        if sid == self.dialect.control:
            sid = self._next  # the control channel (v0.12: 1) is not a session
            self._next += 1
        self._reply(sid)
        d = self.dialect
        messages = [d.invoke(sid, event), *(d.chunk(sid, c) for c in chunks)]
        if choke:
            messages.append(d.choke(sid))
        self.channel.send(sid, messages)
        return sid

    def send_chunk(self, sid: int, data: bytes) -> None:
        assert self.channel is not None
        self.channel.send(sid, self.dialect.chunk(sid, data))

    def send_choke(self, sid: int) -> None:
        assert self.channel is not None
        self.channel.send(sid, self.dialect.choke(sid))

    def send_error(self, sid: int, code: int, message: str) -> None:
        assert self.channel is not None
        self.channel.send(sid, self.dialect.error(sid, code, message))

    def terminate(self, reason: str = "slave is idle", code: int = 1) -> None:
        assert self.channel is not None
        self.channel.send(self.dialect.control, self.dialect.terminate(code, reason))

    async def reply(self, sid: int) -> Reply:
        """The session's reply once the worker has ended it (choke)."""
        reply = self._reply(sid)
        await asyncio.wait_for(asyncio.shield(reply.choked), WAIT)
        return reply

    async def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _reraise(session: Session, exc: BaseException) -> None:
    raise exc


class RecordingChannel:
    """What a Session writes to, decoding every message it is sent (v0.11) at once."""

    dialect = V0_11
    trace = None

    def __init__(self) -> None:
        self._decoder = PythonDecoder(self.dialect.name)
        self.messages: list[tuple[int, list[Any]]] = []
        self.choked = asyncio.Event()

    def send(self, session: int, message: Any) -> None:
        parts = [message] if isinstance(message, (bytes, bytearray, memoryview)) else message
        for mid, _, args in self._decoder.feed(b"".join(bytes(p) for p in parts)):
            self.messages.append((mid, args))
            if mid == Kind.CHOKE:
                self.choked.set()

    async def drain(self) -> None:
        return None


class RecordingSession(Session):
    """A raw worker Session on a RecordingChannel: the adapter under test drives the real
    write path, and the test reads back what went on the wire.

    Attributes:
        chunks: each response chunk's payload, as sent.
        ended: the response ended with a choke (not after an error).
        failure: the (code, message) of the worker's error, if it sent one.
        done: set once the response is over (choke, or error then choke).
        drain_gate: when given, drain() waits for it (a slow consumer); `drains` counts calls.
    """

    _next_id = 1

    def __init__(self, drain_gate: asyncio.Event | None = None) -> None:
        RecordingSession._next_id += 1
        self.wire = RecordingChannel()
        super().__init__(self.wire, RecordingSession._next_id, "http", True)
        self.drain_gate = drain_gate
        self.drains = 0
        self.done = self.wire.choked

    async def drain(self) -> None:
        self.drains += 1
        if self.drain_gate is not None:
            await self.drain_gate.wait()

    # -- what the engine does --------------------------------------------------------------
    def request(self, data: bytes) -> None:
        """The engine sends the request frame and ends the request (chunk, choke), delivered
        as the worker delivers them (a callback that raises fails the test)."""
        on_chunk, on_choke = delivery({self.id: self}, _reraise)
        on_chunk(self.id, data)
        on_choke(self.id)

    def fail(self, code: int = 1, message: str = "engine failed the session") -> None:
        """The engine fails the session (an engine error)."""
        self.receive(Error)
        self._deliver_fail(code, message)

    # -- what went on the wire -------------------------------------------------------------
    def _wire(self) -> list[tuple[int, list[Any]]]:
        return self.wire.messages

    @property
    def chunks(self) -> list[bytes]:
        return [args[0] for mid, args in self._wire() if mid == Kind.CHUNK]

    @property
    def failure(self) -> tuple[int, str] | None:
        errors = [(args[0], args[1].decode()) for mid, args in self._wire() if mid == Kind.ERROR]
        return errors[0] if errors else None

    @property
    def ended(self) -> bool:
        kinds = [mid for mid, _ in self._wire()]
        return Kind.CHOKE in kinds and Kind.ERROR not in kinds

    # -- decoded response ------------------------------------------------------------------
    @property
    def status(self) -> int:
        return int(msgpack.unpackb(self.chunks[0], raw=False)[0])

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in msgpack.unpackb(self.chunks[0], raw=False)[1]}

    @property
    def header_list(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in msgpack.unpackb(self.chunks[0], raw=False)[1]]

    @property
    def body_chunks(self) -> list[bytes]:
        return [msgpack.unpackb(c, raw=True) for c in self.chunks[1:]]

    @property
    def body(self) -> bytes:
        return b"".join(self.body_chunks)


def worker_argv(path: str, uuid: str = UUID, *extra: str) -> list[str]:
    """The argv cocaine-runtime passes (docs/protocol.md §12), after any app arguments."""
    return [*extra, "--app", "echo", "--endpoint", path, "--locator", "127.0.0.1:10053",
            "--uuid", uuid]  # fmt: skip


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """A started engine peer listening on a unix socket in tmp_path."""
    peer = await Engine(str(tmp_path / "engine.sock")).start()
    yield peer
    await peer.close()


@pytest.fixture
async def spawn_worker() -> AsyncIterator[Callable[..., Any]]:
    """Start a worker script as a subprocess with the runtime's argv (and extra environment
    variables); killed at teardown."""
    procs: list[asyncio.subprocess.Process] = []

    async def spawn(
        script: str, argv: list[str], env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / script), *argv, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()



# -- event loops ----------------------------------------------------------------------------------

#: Loops the scenario tests run on: asyncio in debug mode, and uvloop (docs/design.md §7.3).
LOOP_KINDS = ["asyncio-debug", "uvloop"]


def make_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh event loop of one of LOOP_KINDS."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    return loop


def run_on(kind: str, scenario: Callable[[], Any]) -> Any:
    """Run `scenario()` (a coroutine function) to completion on a new loop of `kind`."""
    loop = make_loop(kind)
    try:
        return loop.run_until_complete(asyncio.wait_for(scenario(), 60))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
