# Strategy: the engine of one app, imitating cocaine-runtime v0.11 (CORE11 `src/engine.cpp`;
# docs/protocol.md §3, §9). It owns the worker endpoint (a unix socket `<run dir>/<app>.<pid>`),
# the pool of Slaves, the queue of sessions that wait for a free slot and the engine-wide session
# counter (from 1, shared by every worker). Everything is driven by events: an enqueue, a slave
# becoming active, a slot freed by a choke, a slave failing. After each one `_pump` hands queued
# sessions to the least loaded active slave and `_balance` spawns workers when the queue outgrows
# the pool (grow-threshold), which is also how dead workers are replaced on demand.
#
# In v0.12 mode (docs/dev-runtime.md "v0.12 mode") the same engine speaks "protocol 1" through
# its Dialect: workers get `--protocol 1`, each slave counts its own channels from 2, errors
# carry the node plugin's [category, code], and a session opened by the app service (`open`)
# streams its request to the worker as the client writes it, until `end_request` or `abandon`.
#
# Deviations from the runtime, all for a better local loop: a worker that exits or cannot be
# exec'd before it activates is reported at once (no wait for the startup timeout), and when no
# worker can be started the queued sessions fail with SPAWN_FAILED instead of waiting forever
# (the HTTP front turns that into 502). On close, processes that ignore SIGTERM are killed.
"""The dev runtime's engine: worker pool, session queue, timers and failure handling."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import statistics
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from ..aio.channel import Channel, serve
from ..codec.hpack import Trace
from ..protocol.dialect import V0_11, Dialect
from .profile import Profile
from .slave import (OVERSEER_CATEGORY, ReplySink, Session, Slave, State, child_environment,
                    fail)

log = logging.getLogger("cocaine_http.dev.engine")

QUEUE_FULL = "the queue is full"
NOT_ACTIVE = "the engine is not active"
SHUTTING_DOWN = "the engine is shutting down"
BROKEN_QUEUE = "engine is shutting down"
#: Reason given to workers replaced by `restart` (dev only).
RELOADING = "the code has changed"
#: The node's outcomes of start_app that are not failures (the runtime's words).
STARTED = "the app has been started"
ALREADY_RUNNING = "the app is already running"
#: Prefix of the error given to queued sessions when no worker could be started (dev only).
SPAWN_FAILED = "no slave could be started"

__all__ = ["Engine", "Flow", "ReplySink", "StartupError", "QUEUE_FULL", "NOT_ACTIVE",
           "SHUTTING_DOWN", "SPAWN_FAILED"]

#: The worker's own one-line error, as `cocaine-http` prints it (cli.py `_fail`).
_WORKER_ERROR = "cocaine-http: error: "


class StartupError(Exception):
    """A worker started eagerly (`warm`) did not become active.

    Attributes:
        reason: the engine's reason (exit code, spawn failure, timeout).
        output: the worker's last output lines.
        returncode: the process's exit status, if it exited.
    """

    def __init__(self, reason: str, output: list[str], returncode: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output
        self.returncode = returncode

    @property
    def summary(self) -> str:
        """The worker's own one-line error when it printed one, else the engine's reason."""
        for line in reversed(self.output):
            if line.startswith(_WORKER_ERROR):
                return line
        return self.reason


class Flow:
    """Back-pressure for one session: its worker's channel can be paused while this session is
    the worker's only one (the channel carries every session of a worker and the protocol has
    no per-session flow control, so pausing it for a shared worker would stall the others).

    A sink that has `attach_flow(flow)` gets one when its session is assigned; `on_shared` is
    called when another session is assigned to the worker while the channel is paused (the
    holder must then give way: resume, or fail its session).
    """

    def __init__(self, holds: dict[str, Flow], slave: Slave) -> None:
        self._holds = holds
        self._slave = slave
        self.paused = False
        self.on_shared: Callable[[], None] | None = None

    def pause(self) -> bool:
        """Stop reading the worker; False (nothing done) when other sessions share it."""
        channel = self._slave.channel
        if channel is None or self._slave.load > 1:
            return False
        if not self.paused:
            self.paused = True
            self._holds[self._slave.uuid] = self
            channel.pause_reading()
            log.info("slave %s paused: its client reads slower than it writes", self._slave.uuid)
        return True

    def resume(self) -> None:
        """Read the worker again (idempotent)."""
        if not self.paused:
            return
        self.paused = False
        if self._holds.get(self._slave.uuid) is self:
            del self._holds[self._slave.uuid]
        if self._slave.channel is not None:
            self._slave.channel.resume_reading()

    def shared(self) -> None:
        if self.on_shared is not None:
            self.on_shared()
        self.resume()


class Engine:
    """One app's engine.

    Args:
        name: the app name (`--app`, the socket name, the app service name).
        command: the worker command; the runtime arguments are appended to it.
        profile: pool, queue and timer settings (runtime defaults).
        run_dir: where the worker socket `<name>.<pid>` is created.
        workdir: the workers' working directory (the runtime's `<spool>/<app>`).
        locator: the `--locator` value, "host:port".
        on_wire: optional tap called with (channel, bytes) for every read from a worker.
        dialect: the protocol toward the workers: V0_11, or V0_12 as cocaine-runtime v0.12
            speaks it (workers get `--protocol 1`).
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        profile: Profile | None = None,
        run_dir: str,
        workdir: str | None = None,
        locator: str = "127.0.0.1:10053",
        on_wire: Callable[[Channel, bytes], None] | None = None,
        dialect: Dialect = V0_11,
    ) -> None:
        self.name = name
        self.dialect = dialect
        self.command = list(command)
        self.profile = profile or Profile()
        self.endpoint = os.path.join(run_dir, f"{name}.{os.getpid()}")
        self.workdir = workdir
        self.locator = locator
        self.on_wire = on_wire
        #: Called with (key, lines) when a failed worker's output ring is dumped; the runtime
        #: saves it in the storage collection "crashlogs", as cocaine-runtime does.
        self.on_crashlog: Callable[[str, list[str]], None] | None = None
        self.state = "stopped"
        self.pool: dict[str, Slave] = {}
        self.queue: collections.deque[Session] = collections.deque()
        self.next_id = 1
        self.spawned = 0
        #: sessions taken and refused, workers that failed (the v0.12 `info` counters)
        self.accepted = self.rejected = self.crashed = 0
        self._started = 0.0
        self._server: asyncio.AbstractServer | None = None
        self._slaves: list[Slave] = []  # every slave ever spawned and not yet reaped
        self._pool_empty = asyncio.Event()
        self._pool_empty.set()
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._holds: dict[str, Flow] = {}  # by slave uuid: the session pausing its channel

    # -- public API ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on the worker endpoint; workers are spawned lazily, on the first enqueue."""
        self._server = await serve(self.endpoint, self._on_channel, dialect=self.dialect,
                                   raw=True)
        self.state = "running"
        self._started = time.monotonic()
        log.info("engine %s listening on %s", self.name, self.endpoint)

    async def warm(self, count: int) -> None:
        """Start `count` workers now (at most pool-limit) and wait until all are active.

        Raises:
            StartupError: the first worker that failed to activate, with its output.
        """
        loop = asyncio.get_running_loop()
        waiters = []
        for _ in range(min(count, self.profile.pool_limit)):
            slave = self._spawn(None)
            if slave is None:
                break
            waiter = self._waiters[slave.uuid] = loop.create_future()
            waiters.append(waiter)
        try:
            await asyncio.gather(*waiters)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def restart(self) -> None:
        """Replace every worker: active ones get terminate(1) and finish their sessions, new
        ones are started at once and take the new sessions."""
        if self.state != "running":
            return
        old = [s for s in self.pool.values() if s.state is not State.INACTIVE]
        for slave in old:
            if slave.state is State.ACTIVE:
                slave.terminate(RELOADING)
            else:
                self._remove(slave, RELOADING)
        for _ in range(max(1, len(old))):
            if self._spawn(None, replacing=True) is None:
                break

    def enqueue(self, event: str, data: bytes | bytearray, sink: ReplySink,
                tag: str | None = None) -> None:
        """Queue one event whose request is `data`; the reply (or a refusal, error(2,
        reason)) goes to `sink`. A bytearray is taken over, not copied (a request frame can
        be the size of the body): the caller must not change it afterwards."""
        blob = data if type(data) is bytearray else bytes(data)
        self._queue(Session(self.next_id, event, blob, sink, tag or None))

    def open(self, event: str, sink: ReplySink, tag: str | None = None,
             trace: Trace | None = None) -> Session | None:
        """Queue one event whose request its client is still writing (v0.12's app service):
        feed it with `feed`, then `end_request`, or `abandon` it. None when it was refused (the
        refusal went to `sink`). `trace`: the client's, continued on every frame the worker
        gets for this session."""
        session = Session(self.next_id, event, None, sink, tag or None, streaming=True,
                          trace=trace)
        return session if self._queue(session) else None

    def feed(self, session: Session, data: bytes) -> None:
        """One more request chunk of an open session (kept until it is assigned)."""
        if session.slave is not None:
            session.slave.forward(session, data)
        else:
            session.more.append(data)

    def end_request(self, session: Session) -> None:
        """The client closed the request of an open session."""
        session.streaming = False
        if session.slave is not None:
            session.slave.forward(session, None)

    def abandon(self, session: Session,
                error: tuple[int | None, int, str] | None = None) -> None:
        """The client of an open session left before closing its request (or failed it with
        `error`, category, code and message): a queued session is dropped, a running one is
        discarded (its worker is told, its replies dropped)."""
        if session.slave is not None:
            session.slave.discard(session, error)
        elif session in self.queue:
            self.queue.remove(session)

    def _queue(self, session: Session) -> bool:
        sink = session.sink
        if self.state != "running":
            self.rejected += 1
            fail(sink, self.dialect, NOT_ACTIVE)
            return False
        if self.profile.queue_limit and len(self.queue) >= self.profile.queue_limit:
            self.rejected += 1
            fail(sink, self.dialect, QUEUE_FULL, (OVERSEER_CATEGORY, 1))  # queue_is_full
            return False
        self.accepted += 1
        self.next_id += 1
        self.queue.append(session)
        self._pump()
        self._balance()
        return True

    def info_v12(self) -> dict[str, Any]:
        """The v0.12 app `info` layout, as node::v2 answers it (its rate and timing meters
        left out: the dev engine keeps none)."""
        live = [s for s in self.pool.values() if s.state is not State.INACTIVE]
        busy = sum(1 for s in live if s.load)
        return {
            "load": sum(s.load for s in self.pool.values()),
            "pool": {"active": busy, "capacity": self.profile.pool_limit,
                     "idle": len(live) - busy, "slaves": {},
                     "total:crashed": self.crashed, "total:spawned": self.spawned},
            "profile": {"name": self.name},
            "queue": {"capacity": self.profile.queue_limit, "depth": len(self.queue)},
            "requests": {"accepted": self.accepted, "rejected": self.rejected},
            "uptime": int(time.monotonic() - self._started) if self._started else 0,
        }

    def info(self) -> dict[str, Any]:
        """The v0.11 app `info` layout (docs/protocol.md §8.3)."""
        active = [s for s in self.pool.values() if s.state is State.ACTIVE]
        loads = [s.load for s in active]
        busy = sum(1 for load in loads if load)
        return {
            "load-median": statistics.median(loads) if loads else 0,
            "profile": {"name": "dev", **self.profile.to_dict()},
            "queue": {"capacity": self.profile.queue_limit, "depth": len(self.queue)},
            "sessions": {"pending": sum(s.load for s in self.pool.values())},
            "slaves": {
                "active": busy,
                "capacity": self.profile.pool_limit,
                "idle": len(self.pool) - busy,
            },
            "state": self.state,
        }

    async def stop(self) -> None:
        """Graceful shutdown: terminate(1, "the engine is shutting down") to each active
        worker, wait up to termination-timeout for them to leave, then tear down the rest."""
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        self._fail_queue(SHUTTING_DOWN)
        for slave in list(self.pool.values()):
            if slave.state is State.ACTIVE:
                slave.terminate(SHUTTING_DOWN)
            elif slave.state is not State.INACTIVE:
                self._remove(slave, SHUTTING_DOWN)
        try:
            await asyncio.wait_for(self._pool_empty.wait(), self.profile.termination_timeout)
        except asyncio.TimeoutError:
            log.warning("engine %s: workers still running after %gs, tearing them down",
                        self.name, self.profile.termination_timeout)
        for slave in list(self.pool.values()):
            self._remove(slave, SHUTTING_DOWN)
        self.state = "stopped"

    def kill(self) -> None:
        """SIGKILL every worker process (a forced exit: nothing waits for them)."""
        for slave in self._slaves:
            slave.kill()

    def resume(self) -> None:
        """Take sessions again after `stop()` (the node's start_app of a paused app)."""
        if self.state == "stopped" and self._server is not None:
            self.state = "running"

    async def close(self) -> None:
        """Stop, stop listening, and wait until every worker process has exited."""
        await self.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._reap()
        try:
            os.unlink(self.endpoint)
        except FileNotFoundError:
            pass

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- worker connections ----------------------------------------------------------------------

    def _on_channel(self, channel: Channel) -> None:
        # The first message is the handshake whatever its id; only its argument is checked.
        if self.on_wire is not None:
            self._tap(channel)
        channel.on_message = lambda mid, session, args: self._handshake(channel, args)

    def _tap(self, channel: Channel) -> None:
        receive, tap = channel.data_received, self.on_wire
        assert tap is not None

        def data_received(data: bytes) -> None:
            tap(channel, data)
            receive(data)

        channel.data_received = data_received  # type: ignore[method-assign]

    def _handshake(self, channel: Channel, args: list[Any]) -> None:
        uuid = args[0] if len(args) == 1 else None
        if isinstance(uuid, bytes):
            uuid = uuid.decode("utf-8", "replace")
        slave = self.pool.get(uuid) if isinstance(uuid, str) else None
        if slave is None or slave.state is not State.SPAWNING or slave.channel is not None:
            log.warning("engine %s: dropping a connection with an unknown handshake %r",
                        self.name, args)
            channel.close()
            return
        slave.bind(channel)

    # -- SlaveHost -------------------------------------------------------------------------------

    def slave_active(self, slave: Slave) -> None:
        log.info("slave %s is active", slave.uuid)
        waiter = self._waiters.pop(slave.uuid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._pump()

    def slave_released(self, slave: Slave) -> None:
        self._pump()

    def slave_failed(self, slave: Slave, reason: str) -> None:
        if slave.state is State.DEAD:
            return
        if slave.state is not State.INACTIVE:
            self.crashed += 1
            if slave.output:
                self._dump_crashlog(slave)
        log.info("slave %s removed: %s", slave.uuid, reason)
        waiter = self._waiters.pop(slave.uuid, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(StartupError(reason, list(slave.output), slave.returncode))
        never_active = not slave.activated
        self._remove(slave, reason)
        if never_active:
            self._spawn_failed(slave, reason)
        self._after_removal()

    def _dump_crashlog(self, slave: Slave) -> None:
        lines = list(slave.output)
        log.warning("crashlog of slave %s:\n%s", slave.uuid, "\n".join(lines))
        if self.on_crashlog is not None:
            key = f"{time.time_ns() // 1000}:{slave.uuid}"
            try:
                self.on_crashlog(key, lines)
            except Exception:
                log.exception("cannot save the crashlog of slave %s", slave.uuid)

    def slave_terminated(self, slave: Slave, code: int, reason: str) -> None:
        log.info("slave %s terminated itself (%d, %s)", slave.uuid, code, reason)
        waiter = self._waiters.pop(slave.uuid, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(StartupError(f"the worker terminated itself: {reason}",
                                              list(slave.output), slave.returncode))
        self._remove(slave, reason)
        if code == 2:
            self._break(reason)
        self._after_removal()

    # -- pool and queue --------------------------------------------------------------------------

    def _pump(self) -> None:
        """Hand queued sessions, oldest first, to the least loaded active slave."""
        if not self.queue:
            return
        kept: collections.deque[Session] = collections.deque()
        while self.queue:
            session = self.queue.popleft()
            slave = self._pick(session.tag)
            if slave is None:
                kept.append(session)
            else:
                self._assign(slave, session)
        self.queue = kept

    def _assign(self, slave: Slave, session: Session) -> None:
        slave.assign(session)
        hold = self._holds.get(slave.uuid)
        if hold is not None:
            hold.shared()  # the new session must not wait behind a slow client
        attach = getattr(session.sink, "attach_flow", None)
        if attach is not None:
            attach(Flow(self._holds, slave))

    def _pick(self, tag: str | None) -> Slave | None:
        if tag is not None:
            slave = self.pool.get(tag)
            return slave if slave is not None and slave.free else None
        free = [s for s in self.pool.values() if s.free]
        return min(free, key=lambda s: s.load) if free else None

    def _balance(self) -> None:
        """Spawn workers while the queue is longer than live slaves x grow-threshold."""
        if self.state != "running":
            return
        for session in self.queue:
            if session.tag is not None and session.tag not in self.pool:
                self._spawn(session.tag)
        pending = sum(1 for s in self.queue if s.tag is None)
        live = sum(1 for s in self.pool.values() if s.state is not State.INACTIVE)
        growth = self.profile.growth
        if pending <= live * growth:
            return
        target = min(self.profile.pool_limit, max(1, -(-pending // growth)))
        for _ in range(target - live):
            if self._spawn(None) is None:
                break

    def _spawn(self, tag: str | None, *, replacing: bool = False) -> Slave | None:
        # A replacement counts only live workers: the ones it replaces are on their way out.
        size = (sum(1 for s in self.pool.values() if s.state is not State.INACTIVE)
                if replacing else len(self.pool))
        if size >= self.profile.pool_limit:
            return None
        slave = Slave(self, tag or str(uuidlib.uuid4()), self.profile, self.dialect)
        self.pool[slave.uuid] = slave
        self._slaves = [s for s in self._slaves if s.task is None or not s.task.done()]
        self._slaves.append(slave)
        self._pool_empty.clear()
        self.spawned += 1
        # v0.12 adds `--protocol 1` before `--uuid` (docs/v012.md)
        protocol = ["--protocol", str(self.dialect.protocol)] if self.dialect.protocol else []
        argv = [*self.command, "--app", self.name, "--endpoint", self.endpoint,
                "--locator", self.locator, *protocol, "--uuid", slave.uuid]
        slave.spawn(argv, self.workdir, child_environment(self.profile.environment))
        return slave

    def _remove(self, slave: Slave, reason: str) -> None:
        slave.teardown(reason)
        if self.pool.get(slave.uuid) is slave:
            del self.pool[slave.uuid]
        if not self.pool:
            self._pool_empty.set()

    def _after_removal(self) -> None:
        if self.state == "running":
            self._pump()
            self._balance()

    def _spawn_failed(self, slave: Slave, reason: str) -> None:
        # Nothing else can serve the queue: fail it now rather than spawning in a loop.
        if self.state != "running":
            return
        if any(s.state is not State.INACTIVE for s in self.pool.values() if s.uuid != slave.uuid):
            return
        message = f"{SPAWN_FAILED}: {reason}"
        kept: collections.deque[Session] = collections.deque()
        for session in self.queue:
            if session.tag is None or session.tag == slave.uuid:
                fail(session.sink, self.dialect, message)
            else:
                kept.append(session)
        self.queue = kept

    def _break(self, reason: str) -> None:
        log.error("engine %s: the app seems to be broken (%s); restart the runtime", self.name,
                  reason)
        self.state = "broken"
        self._fail_queue(BROKEN_QUEUE)
        for slave in list(self.pool.values()):
            if slave.state is State.ACTIVE:
                slave.terminate(SHUTTING_DOWN)

    def _fail_queue(self, reason: str) -> None:
        queue, self.queue = self.queue, collections.deque()
        for session in queue:
            fail(session.sink, self.dialect, reason)

    async def _reap(self) -> None:
        """Wait for every process; SIGKILL those that survive SIGTERM for termination-timeout."""
        tasks = [s.task for s in self._slaves if s.task is not None]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=self.profile.termination_timeout)
            if pending:
                for slave in self._slaves:
                    slave.kill()
                await asyncio.wait(pending)
        self._slaves.clear()
