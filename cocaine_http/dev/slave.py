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
from dataclasses import dataclass
from typing import Any, Protocol

from ..aio.channel import Channel
from ..protocol.dialect import V0_11
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

    def on_error(self, code: int, message: str) -> None: ...

    def on_choke(self) -> None: ...


def notify(callback: Callable[..., Any], *args: Any) -> None:
    """Call a sink method; a sink that raises is logged and never breaks the engine."""
    try:
        callback(*args)
    except Exception:
        log.exception("reply sink %r raised", callback)


@dataclass(eq=False)
class Session:
    """One enqueued event: its engine-wide id, the request blob and where the reply goes."""

    id: int
    event: str
    data: bytes | bytearray
    sink: ReplySink
    tag: str | None = None


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
    """

    def __init__(self, host: SlaveHost, uuid: str, profile: Profile) -> None:
        self.host = host
        self.uuid = uuid
        self.profile = profile
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

    def _on_socket_error(self, errno: int) -> None:
        self.channel = None
        reason = SHUT_ITSELF_DOWN if self.state is State.INACTIVE else DISCONNECTED
        self.host.slave_failed(self, reason)

    def _on_message(self, mid: int, session: int, args: list[Any]) -> None:
        if mid == 1:
            self._on_heartbeat()
        elif mid == 2:
            code = args[0] if args and isinstance(args[0], int) else 0
            reason = _text(args[1]) if len(args) > 1 else ""
            self.host.slave_terminated(self, code, reason)
        elif mid in (4, 5, 6):
            self._on_session_message(mid, session, args)
        else:
            log.debug("slave %s: dropping message %d", self.uuid, mid)

    def _on_heartbeat(self) -> None:
        assert self.channel is not None
        self.channel.send(0, V0_11.heartbeat())
        self._arm("heartbeat", self.profile.heartbeat_timeout, self._heartbeat_expired)
        if self.state is State.UNKNOWN:
            self._disarm("startup")
            self.state = State.ACTIVE
            self.activated = True
            self._arm_idle()
            self.host.slave_active(self)

    def _on_session_message(self, mid: int, session_id: int, args: list[Any]) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            log.debug("slave %s: orphan message %d for session %d", self.uuid, mid, session_id)
            return
        if mid == 4:
            data = args[0] if args else b""
            if not isinstance(data, bytes):
                data = _text(data).encode("utf-8")
            notify(session.sink.on_chunk, data)
        elif mid == 5:
            code = args[0] if args and isinstance(args[0], int) else 0
            notify(session.sink.on_error, code, _text(args[1]) if len(args) > 1 else "")
        else:
            del self.sessions[session_id]
            notify(session.sink.on_choke)
            if not self.sessions:
                self._arm_idle()
            self.host.slave_released(self)

    # -- sessions ------------------------------------------------------------------------------

    def assign(self, session: Session) -> None:
        """Send invoke, the one request chunk and choke, back to back (one write)."""
        assert self.channel is not None and self.free
        self.sessions[session.id] = session
        self._disarm("idle")
        sid = session.id
        self.channel.send(
            sid,
            [
                V0_11.invoke(sid, session.event),
                V0_11.chunk_header(sid, len(session.data)),
                session.data,
                V0_11.choke(sid),
            ],
        )

    def terminate(self, reason: str) -> None:
        """Ask the worker to leave: terminate(1, reason); it stays until it goes."""
        if self.channel is None or self.state not in (State.ACTIVE, State.UNKNOWN):
            return
        self.state = State.INACTIVE
        self._disarm("idle")
        self.channel.send(0, V0_11.terminate(1, reason))

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
        for session in sessions.values():
            notify(session.sink.on_error, 2, reason)
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
        if self.profile.idle_timeout > 0 and self.state is State.ACTIVE:
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


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """The runtime's own environment plus the manifest's `environment`."""
    env = dict(os.environ)
    env.update(extra)
    return env
