# Strategy: one Slave object per worker process, as in cocaine-runtime v0.11 (CORE11
# `src/slave.cpp`; docs/protocol.md §3, §9). It owns the process (spawned with the runtime's argv,
# cwd and environment, stdout+stderr on one pipe kept in a crashlog ring), the worker's channel
# once the engine has matched its handshake, the sessions assigned to it, and its three timers
# (startup, heartbeat, idle), all armed with loop.call_at: nothing polls.
#
# The slave decides nothing about the pool: it reports to its host (the engine) when it becomes
# active, frees a concurrency slot, goes idle, fails or terminates, and the host reacts. Teardown
# is idempotent: every open session gets error(2, reason) and no choke, the socket is closed and
# the process gets SIGTERM if it is still alive (v0.11 has no SIGKILL; the engine adds one only
# when it closes, so that no process outlives the dev runtime).
#
# Every frame toward the worker comes from the engine's Dialect (`engine_request`,
# `from_runtime`, `terminate`), and what the worker sends is classified by it (`worker_kind`),
# so the same slave serves v0.11 and v0.12 workers.
"""One worker process under the dev engine: spawn, handshake, heartbeats, sessions, teardown."""

from __future__ import annotations

import asyncio
import collections
import enum
import errno
import json
import logging
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..aio.channel import Channel
from ..codec.hpack import Trace
from ..protocol.dialect import CLIENT_GONE, V0_11, Dialect, Kind
from .profile import Profile

log = logging.getLogger("cocaine_http.dev.engine")
#: Where a worker's output that is not a log record of ours goes (at INFO).
OUTPUT_LOGGER = "cocaine_http.dev.worker"
output_log = logging.getLogger(OUTPUT_LOGGER)

#: Reasons given to sessions, verbatim from cocaine-runtime v0.11 (docs/protocol.md §3.6).
TIMED_OUT = "slave has timed out"
DISCONNECTED = "slave has unexpectedly disconnected"
SHUT_ITSELF_DOWN = "slave has shut itself down"
IDLE = "slave is idle"

_MAX_LINE = 65536

#: v0.12 error categories of the node plugin's slave and overseer [node `slave/error.hpp`].
SLAVE_CATEGORY = 0x53FF
OVERSEER_CATEGORY = 0x52FF
#: v0.12 [category, code] of the reasons above (heartbeat_timeout, conrol_ipc_error,
#: committed_suicide, slave_idle); any other reason of the engine is `invalid_state`.
V12_CODES = {TIMED_OUT: (SLAVE_CATEGORY, 8), DISCONNECTED: (SLAVE_CATEGORY, 10),
             SHUT_ITSELF_DOWN: (SLAVE_CATEGORY, 12), IDLE: (SLAVE_CATEGORY, 13)}
INVALID_STATE = (SLAVE_CATEGORY, 9)

#: A log line of a worker (cli.py `setup_logging`): time, pid, level, logger name, message.
_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ \d+ "
    r"(CRITICAL|ERROR|WARNING|INFO|DEBUG|TRACE|Level \d+) ([^\s:]+): (.*)$"
)
_LEVELS = {"CRITICAL": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
           "INFO": logging.INFO, "DEBUG": logging.DEBUG, "TRACE": 5}
#: Lines that continue the record before them (a traceback).
_CONTINUATION = (" ", "\t", "Traceback (most recent call last)", "During handling of",
                 "The above exception")
#: Why a file cannot be executed as a slave, in the runtime's terms.
NOT_EXECUTABLE = ("the runtime executes the slave file itself: it needs the execute bit and a "
                  "#! line naming its interpreter")


class ReplySink(Protocol):
    """Where a session's reply goes: the HTTP front, the app service, a test."""

    def on_chunk(self, data: bytes) -> None: ...

    def on_error(self, code: int, message: str, category: int | None = None) -> None:
        """A failed session; `category` is the v0.12 error category (None in v0.11, and
        never passed as an argument then)."""

    def on_choke(self) -> None: ...


def notify(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call a sink method; a sink that raises is logged and never breaks the engine."""
    try:
        callback(*args, **kwargs)
    except Exception:
        log.exception("reply sink %r raised", callback)


def fail(sink: ReplySink, dialect: Dialect, reason: str,
         category_code: tuple[int, int] | None = None) -> None:
    """Fail a session with one of the engine's own reasons: error(2, reason) in v0.11, the
    runtime's [category, code] in v0.12 (`category_code`, else by reason)."""
    pair = category_code or V12_CODES.get(reason, INVALID_STATE)
    code, category = dialect.engine_error_code(2, pair)
    if category is None:
        notify(sink.on_error, code, reason)
    else:
        notify(sink.on_error, code, reason, category=category)


class _Gone:
    """The sink of a session whose client left: the worker's replies go nowhere."""

    def on_chunk(self, data: bytes) -> None:
        return None

    def on_error(self, code: int, message: str, category: int | None = None) -> None:
        return None

    def on_choke(self) -> None:
        return None


GONE = _Gone()


@dataclass(eq=False)
class Session:
    """One enqueued event: its engine-wide id, the request and where the reply goes.

    A session's request is `data` (None: no chunk of its own) and the chunks of `more`; while
    `streaming` (a v0.12 app service client that has not closed its upstream yet) more chunks
    may come, and they follow the invoke to the worker as they arrive, as the runtime
    forwards them.
    """

    id: int
    event: str
    data: bytes | bytearray | None
    sink: ReplySink
    tag: str | None = None
    more: list[bytes] = field(default_factory=list)
    streaming: bool = False
    #: the slave that runs it and the session's id on that slave's connection, once assigned
    slave: Slave | None = None
    wire: int = 0
    #: the client's trace (v0.12), stamped on every frame toward the worker
    trace: Trace | None = None


class State(enum.Enum):
    SPAWNING = "spawning"  # process started, no handshake yet
    UNKNOWN = "unknown"  # handshake matched, waiting for the first heartbeat
    ACTIVE = "active"  # takes sessions
    INACTIVE = "inactive"  # asked to terminate (idle or shutdown); still answers heartbeats
    DEAD = "dead"


class SlaveHost(Protocol):
    """What a slave reports to its engine."""

    def slave_active(self, slave: Slave) -> None: ...

    def slave_released(self, slave: Slave) -> None: ...

    def slave_failed(self, slave: Slave, reason: str) -> None: ...

    def slave_terminated(self, slave: Slave, code: int, reason: str) -> None: ...


class Slave:
    """A worker process and its connection.

    Args:
        host: the engine, told about every state change.
        uuid: the worker's id (a uuid4, or the tag of a tagged enqueue).
        profile: timers, concurrency and output settings.
        dialect: the wire rules toward the worker (the engine's).
    """

    def __init__(self, host: SlaveHost, uuid: str, profile: Profile,
                 dialect: Dialect = V0_11) -> None:
        self.host = host
        self.uuid = uuid
        self.profile = profile
        self.dialect = dialect
        #: the session id toward the worker of each engine session (they differ in v0.12,
        #: whose ids count per slave)
        self._wire: dict[int, int] = {}
        self._next_channel = dialect.first_session
        self.state = State.SPAWNING
        self.sessions: dict[int, Session] = {}
        self.channel: Channel | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=profile.crashlog_limit)
        self.returncode: int | None = None
        self.activated = False
        self._loop = asyncio.get_running_loop()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._partial = b""
        self._record: tuple[logging.Logger, int] | None = None  # of the last log line
        self._in_traceback = False
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Slave {self.uuid} {self.state.value} load={self.load}>"

    @property
    def load(self) -> int:
        return len(self.sessions)

    @property
    def free(self) -> bool:
        return self.state is State.ACTIVE and self.load < self.profile.concurrency

    # -- process -------------------------------------------------------------------------------

    def spawn(self, argv: list[str], cwd: str | None, env: dict[str, str]) -> None:
        """Start the process in the background; the startup timer runs from now."""
        self._arm("startup", self.profile.startup_timeout, self._startup_expired)
        self.task = self._loop.create_task(self._run(argv, cwd, env))

    async def _run(self, argv: list[str], cwd: str | None, env: dict[str, str]) -> None:
        log.info("spawning slave %s: %s", self.uuid, " ".join(argv))
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the runtime, which then terminates
            )
        except OSError as exc:
            hint = f" ({NOT_EXECUTABLE})" if exc.errno in (errno.EACCES, errno.ENOEXEC) else ""
            self.output.append(f"failed to spawn {argv[0]!r}: {exc}{hint}")
            self.host.slave_failed(self, f"failed to spawn the slave: {exc}{hint}")
            return
        if self.state is State.DEAD:  # torn down while the exec was in progress
            self._signal(signal.SIGTERM)
        assert self.process.stdout is not None
        await self._read_output(self.process.stdout)
        self.returncode = await self.process.wait()
        self._process_exited()

    async def _read_output(self, stream: asyncio.StreamReader) -> None:
        while data := await stream.read(_MAX_LINE):
            *lines, self._partial = (self._partial + data).split(b"\n")
            for line in lines:
                self._line(line)
            if len(self._partial) >= _MAX_LINE:
                self._line(self._partial)
                self._partial = b""
        if self._partial:
            self._line(self._partial)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self.output.append(text)
        if self.profile.log_output:
            logger, level, message = self._classify(text)
            logger.log(level, "[%s] %s", self.uuid[:8], message)

    def _classify(self, text: str) -> tuple[logging.Logger, int, str]:
        """The logger and level a worker's output line is relayed at: a log record keeps its
        logger name and level, the lines of its traceback follow it, anything else is the
        worker's plain output (INFO on cocaine_http.dev.worker)."""
        if text.startswith("{"):
            record = _json_record(text)
            if record is not None:
                self._record, self._in_traceback = None, False
                return record
        match = _RECORD.match(text)
        if match is not None:
            label = match.group(1)
            level = int(label.split()[-1]) if label.startswith("Level") else _LEVELS[label]
            self._record = (logging.getLogger(match.group(2)), level)
            self._in_traceback = False
            return self._record[0], level, match.group(3)
        if self._record is not None and (text.startswith(_CONTINUATION) or self._in_traceback):
            self._in_traceback = text.startswith(_CONTINUATION)
            return self._record[0], self._record[1], text
        self._record = None
        return output_log, logging.INFO, text

    def _process_exited(self) -> None:
        log.info("slave %s exited with code %s", self.uuid, self.returncode)
        if self.state in (State.SPAWNING, State.UNKNOWN):
            # The runtime would wait out the startup timeout; the dev runtime reports at once.
            self.host.slave_failed(
                self, f"failed to activate: the process exited with code {self.returncode}"
            )
        elif self.state is State.ACTIVE:
            self.host.slave_failed(self, DISCONNECTED)
        elif self.state is State.INACTIVE:
            self.host.slave_failed(self, SHUT_ITSELF_DOWN)

    def _signal(self, signum: int) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL, for a process that outlived SIGTERM when the engine closes."""
        self._signal(signal.SIGKILL)

    # -- connection ----------------------------------------------------------------------------

    def bind(self, channel: Channel) -> None:
        """Take over a connection whose handshake named this slave."""
        self.channel = channel
        self.state = State.UNKNOWN
        channel.on_message = self._on_message
        channel.on_socket_error = self._on_socket_error
        if self.dialect.active_at_handshake:  # v0.12: the heartbeat timer starts now
            self._arm("heartbeat", self.profile.heartbeat_timeout, self._heartbeat_expired)
            self._activate()

    def _on_socket_error(self, errno: int) -> None:
        self.channel = None
        reason = SHUT_ITSELF_DOWN if self.state is State.INACTIVE else DISCONNECTED
        self.host.slave_failed(self, reason)

    def _on_message(self, mid: int, session: int, args: list[Any]) -> None:
        kind = self.dialect.worker_kind(mid, session)
        if kind is Kind.HEARTBEAT:
            self._on_heartbeat()
        elif kind is Kind.TERMINATE:
            code = args[0] if args and isinstance(args[0], int) else 0
            reason = _text(args[1]) if len(args) > 1 else ""
            self.host.slave_terminated(self, code, reason)
        elif kind in (Kind.CHUNK, Kind.ERROR, Kind.CHOKE):
            self._on_session_message(kind, session, args)
        else:
            log.debug("slave %s: dropping message %d on session %d", self.uuid, mid, session)

    def _on_heartbeat(self) -> None:
        assert self.channel is not None
        self.channel.send(0, self.dialect.from_runtime(self.dialect.heartbeat()))
        self._arm("heartbeat", self.profile.heartbeat_timeout, self._heartbeat_expired)
        if self.state is State.UNKNOWN:
            self._activate()

    def _activate(self) -> None:
        self._disarm("startup")
        self.state = State.ACTIVE
        self.activated = True
        self._arm_idle()
        self.host.slave_active(self)

    def _on_session_message(self, kind: Kind, wire_id: int, args: list[Any]) -> None:
        session = self.sessions.get(self._wire.get(wire_id, -1))
        if session is None:
            log.debug("slave %s: orphan %s for session %d", self.uuid, kind.name, wire_id)
            return
        if kind is Kind.CHUNK:
            data = args[0] if args else b""
            if not isinstance(data, bytes):
                data = _text(data).encode("utf-8")
            notify(session.sink.on_chunk, data)
            return
        if kind is Kind.ERROR:
            code = args[0] if args else 0
            message = _text(args[1]) if len(args) > 1 else ""
            if isinstance(code, list) and len(code) == 2:  # v0.12 [category, code]
                notify(session.sink.on_error, _int(code[1]), message, category=_int(code[0]))
            else:
                notify(session.sink.on_error, _int(code), message)
            if not self.dialect.error_ends_stream:
                return  # v0.11: the choke that follows ends the session
        else:
            notify(session.sink.on_choke)
        self._release(wire_id, session)

    def _release(self, wire_id: int, session: Session) -> None:
        del self._wire[wire_id]
        del self.sessions[session.id]
        if not self.sessions:
            self._arm_idle()
        self.host.slave_released(self)

    # -- sessions ------------------------------------------------------------------------------

    def assign(self, session: Session) -> None:
        """Send invoke, the request chunks and choke, back to back (one write); a streaming
        session's choke waits for its client's close (`forward`)."""
        assert self.channel is not None and self.free
        self.sessions[session.id] = session
        self._disarm("idle")
        if self.dialect.sessions_per_connection:
            sid, self._next_channel = self._next_channel, self._next_channel + 1
        else:
            sid = session.id
        self._wire[sid] = session.id
        session.slave, session.wire = self, sid
        self.channel.send(sid, self.dialect.engine_request(
            sid, session.event, session.more if session.data is None
            else (session.data, *session.more), end=not session.streaming,
            trace=session.trace))

    def forward(self, session: Session, data: bytes | None) -> None:
        """One more request chunk of an assigned streaming session; None: its client closed
        the upstream (choke / close)."""
        if self.channel is None or self.sessions.get(session.id) is not session:
            return
        dialect = self.dialect
        self.channel.send(session.wire, dialect.engine_chunk(session.wire, data, session.trace)
                          if data is not None
                          else dialect.from_runtime(dialect.choke(session.wire), session.trace))

    def discard(self, session: Session,
                error: tuple[int | None, int, str] | None = None) -> None:
        """The client of an assigned session left before closing its upstream, or failed
        it with `error` (category, code, message): the worker is told (v0.12: error [5, 2]
        "End of file", or the client's error as it is) and its replies are dropped."""
        session.sink = GONE
        if self.channel is None or self.sessions.get(session.id) is not session:
            return
        category, code, message = error or CLIENT_GONE
        if category is None:
            category = CLIENT_GONE[0]
        dialect = self.dialect
        self.channel.send(session.wire, dialect.from_runtime(
            dialect.error(session.wire, code, message, category), session.trace))

    def terminate(self, reason: str) -> None:
        """Ask the worker to leave: terminate(code, reason) with the engine's code (1 in
        v0.11, 11 in v0.12); it stays until it goes."""
        if self.channel is None or self.state not in (State.ACTIVE, State.UNKNOWN):
            return
        self.state = State.INACTIVE
        self._disarm("idle")
        dialect = self.dialect
        self.channel.send(0, dialect.from_runtime(
            dialect.terminate(dialect.engine_terminate_code, reason)))

    def teardown(self, reason: str) -> None:
        """Fail open sessions with error(2, reason), close the socket, SIGTERM the process.

        A stopped process would keep SIGTERM pending and a worker whose loop is blocked never
        runs its handler, so the process is continued first and killed once the profile's
        termination timeout has passed: a torn-down slave never outlives it.
        """
        if self.state is State.DEAD:
            return
        self.state = State.DEAD
        for name in list(self._timers):
            self._disarm(name)
        sessions, self.sessions = self.sessions, {}
        self._wire.clear()
        for session in sessions.values():
            fail(session.sink, self.dialect, reason)
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        self._arm("kill", self.profile.termination_timeout, self.kill)

    # -- timers --------------------------------------------------------------------------------

    def _arm(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._disarm(name)
        self._timers[name] = self._loop.call_at(self._loop.time() + delay, callback)

    def _disarm(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _arm_idle(self) -> None:
        if (self.profile.idle_timeout > 0 and self.state is State.ACTIVE
                and self.dialect.idle_terminates):
            self._arm("idle", self.profile.idle_timeout, self._idle_expired)

    def _startup_expired(self) -> None:
        self._timers.pop("startup", None)
        log.warning("slave %s failed to activate in %gs", self.uuid, self.profile.startup_timeout)
        self.host.slave_failed(self, TIMED_OUT)

    def _heartbeat_expired(self) -> None:
        self._timers.pop("heartbeat", None)
        log.warning("slave %s missed its heartbeat", self.uuid)
        self.host.slave_failed(self, TIMED_OUT)

    def _idle_expired(self) -> None:
        self._timers.pop("idle", None)
        log.info("slave %s is idle, terminating it", self.uuid)
        self.terminate(IDLE)


def _json_record(text: str) -> tuple[logging.Logger, int, str] | None:
    """A line of `--log-format json` (cli.py `JsonFormatter`) as (logger, level, message)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not {"level", "logger", "message"} <= doc.keys():
        return None
    label = str(doc["level"])
    level = int(label.split()[-1]) if label.startswith("Level") else _LEVELS.get(label)
    if level is None:
        return None
    message = str(doc["message"])
    if doc.get("exc_info"):
        message += "\n" + str(doc["exc_info"])
    return logging.getLogger(str(doc["logger"])), level, message


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """The runtime's own environment plus the manifest's `environment`."""
    env = dict(os.environ)
    env.update(extra)
    return env
