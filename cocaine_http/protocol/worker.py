# Strategy: everything a worker decides, without sockets or clocks. `WorkerConnection` holds the
# worker's state machine (transitions as data, one table per side), the session table, and three
# deadlines computed from the `now` values it is given:
#
#   heartbeat due   start + interval, then `now + interval` each time one is sent
#                   (the Node.js framework sends every 5 s, the v0.11 Python one every 20 s,
#                   docs/protocol.md §3.7)
#   disown          last heartbeat echo (or start) + disown_timeout: no echo for that long means
#                   the engine is gone or stuck (§3.7 "disown")
#   grace           terminate received + termination_grace: sessions still open then are aborted
#                   (the runtime's termination-timeout, §3.5, default 5 s)
#
# The I/O layer arms one timer for `get_timer()` and calls `handle_timer(now)` when it fires; an
# echo that moves the disown deadline later needs no re-arming, because the next firing simply
# finds nothing due and re-arms for the new minimum.
#
# Option parsing lives here too: the runtime passes `--app --endpoint --locator --uuid` (§3.1,
# §12), "protocol 1" adds `--protocol 1` (§3.8); anything else belongs to the app and is ignored.
"""Sans-IO worker: options, state machine, session table and timers."""

from __future__ import annotations

import enum
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Union

from ..config import split_runtime_args
from ..errors import ConfigError
from .dialect import Dialect, get_dialect
from .session import SessionMachine, SessionState
from .transitions import Transitions, diagram

#: Error code and text for an event without a handler (PY11 `sessioncontext.py`).
NO_HANDLER = -100
#: Error code for a handler that raised (PY11 uses 1 for handler errors).
HANDLER_FAILED = 1
#: `resource_error`: invokes refused while shutting down, sessions aborted at grace expiry.
SHUTTING_DOWN = 2
#: `timeout_error`: the per-session timeout expired.
SESSION_TIMEOUT = 3
#: `invocation_error`, the code the runtime gives a message it cannot use: the engine sent a
#: well-framed message with arguments that do not fit (the stream is still in sync).
BAD_MESSAGE = 1

_REQUEST_DONE = SessionState.REQUEST_DONE
_CLOSED = SessionState.CLOSED

# -- options ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What the runtime told the worker on its command line.

    Attributes:
        app: application name (`--app`).
        endpoint: engine socket, a unix path as a rule (`--endpoint`).
        locator: `host:port`, or a comma list of endpoints under protocol 1 (`--locator`).
        uuid: the worker's id to send in the handshake (`--uuid`; any string, tags included).
        protocol: 0 for v0.11 (default), 1 for v0.12 "protocol 1" (`--protocol`).
    """

    app: str | None = None
    endpoint: str | None = None
    locator: str | None = None
    uuid: str | None = None
    protocol: int = 0

    @property
    def dialect(self) -> Dialect:
        return get_dialect(self.protocol)

    @property
    def spawned(self) -> bool:
        """True when the runtime's options are all present (the worker was spawned by it)."""
        return None not in (self.app, self.endpoint, self.uuid)

    def require(self) -> None:
        """Raises ConfigError naming the options a worker cannot run without."""
        missing = [f"--{name}" for name in ("endpoint", "uuid") if getattr(self, name) is None]
        if missing:
            raise ConfigError(
                f"missing {' and '.join(missing)}: a worker is started by cocaine-runtime "
                "(or `cocaine-http dev`) with --app, --endpoint, --locator and --uuid"
            )

    def locators(self) -> list[tuple[str, int]]:
        """`--locator` as (host, port) pairs: `h:p`, `[v6]:p`, or a comma list of them."""
        result = []
        for item in (self.locator or "").split(","):
            host, sep, port = item.strip().rpartition(":")
            if not sep or not port.isdigit():
                continue
            result.append((host.strip("[]"), int(port)))
        return result


def parse_options(argv: Sequence[str]) -> WorkerOptions:
    """Pick the runtime's options out of `argv`, in any order, as `--x v` or `--x=v`.

    Unknown arguments are skipped, so an app's own command line can share argv; when an option
    repeats, the last one wins (the runtime's arguments come last).

    Raises:
        ConfigError: an option without a value, or a `--protocol` other than 0 or 1.
    """
    found, _ = split_runtime_args(argv)
    protocol = found.pop("protocol", "0")
    try:
        dialect = get_dialect(protocol)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return WorkerOptions(protocol=dialect.protocol, **found)


# -- events -------------------------------------------------------------------------------------


class WorkerEvent(enum.Enum):
    """What moves the worker's connection machine."""

    HANDSHAKE = "handshake"  #: the worker introduces itself (the first message)
    HEARTBEAT = "heartbeat"  #: a worker heartbeat, or the engine's echo of one
    INVOKE = "invoke"  #: the engine opens a session
    TERMINATE = "terminate"  #: either side ends the worker: the engine asks, the worker answers
    SHUTDOWN = "shutdown"  #: the worker decides to stop by itself (a signal): drain
    DISOWN = "disown"  #: no heartbeat echo arrived before the disown deadline
    GRACE_EXPIRED = "grace_expired"  #: sessions were still open when the grace ran out
    CONNECTION_CLOSED = "connection_closed"  #: the engine connection failed or ended


# What handle_timer() returns: the timer events due, with the deadline that fired.


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A heartbeat is due: send `dialect.heartbeat()`."""


@dataclass(frozen=True, slots=True)
class Disown:
    """No heartbeat echo arrived before the disown deadline."""

    deadline: float


@dataclass(frozen=True, slots=True)
class GraceExpired:
    """Sessions were still open when the termination grace ran out."""

    deadline: float


TimerEvent = Union[Heartbeat, Disown, GraceExpired]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an invoke is answered with error+choke instead of a session."""

    code: int
    message: str


class WorkerState(enum.IntEnum):
    """Life of the worker's connection to its engine."""

    CONNECTING = 0  #: nothing sent yet
    ACTIVE = 1  #: handshake and first heartbeat sent; sessions are taken
    DRAINING = 2  #: terminate received or shutdown asked: no new sessions, open ones finish
    CLOSED = 3  #: terminate answered, disowned, or the connection is gone


W = WorkerState
V = WorkerEvent

#: What arrives from the engine (or from the transport under it), per state.
ENGINE = Transitions("engine", {
    (W.ACTIVE, V.HEARTBEAT): W.ACTIVE,
    (W.DRAINING, V.HEARTBEAT): W.DRAINING,
    (W.ACTIVE, V.INVOKE): W.ACTIVE,
    (W.DRAINING, V.INVOKE): W.DRAINING,
    (W.ACTIVE, V.TERMINATE): W.DRAINING,
    (W.DRAINING, V.TERMINATE): W.DRAINING,
    (W.CONNECTING, V.CONNECTION_CLOSED): W.CLOSED,
    (W.ACTIVE, V.CONNECTION_CLOSED): W.CLOSED,
    (W.DRAINING, V.CONNECTION_CLOSED): W.CLOSED,
}, remote=True)  # fmt: skip

#: What the worker sends or decides, per state.
WORKER = Transitions("worker", {
    (W.CONNECTING, V.HANDSHAKE): W.ACTIVE,
    (W.ACTIVE, V.HEARTBEAT): W.ACTIVE,
    (W.DRAINING, V.HEARTBEAT): W.DRAINING,
    (W.ACTIVE, V.SHUTDOWN): W.DRAINING,
    (W.DRAINING, V.GRACE_EXPIRED): W.DRAINING,
    (W.DRAINING, V.TERMINATE): W.CLOSED,
    (W.ACTIVE, V.DISOWN): W.CLOSED,
    (W.DRAINING, V.DISOWN): W.CLOSED,
})  # fmt: skip


class WorkerConnection:
    """The worker's side of the engine conversation (docs/protocol.md §3.3), minus the I/O.

    Args:
        uuid: sent in the handshake.
        dialect: wire rules (`WorkerOptions.dialect`).
        heartbeat_interval: seconds between heartbeats.
        disown_timeout: seconds without an echo before the worker considers itself disowned.
        termination_grace: seconds open sessions get after a terminate.
        session_timeout: seconds a session may stay open, or None for no limit.
    """

    def __init__(
        self,
        uuid: str,
        dialect: Dialect,
        *,
        heartbeat_interval: float = 5.0,
        disown_timeout: float = 30.0,
        termination_grace: float = 5.0,
        session_timeout: float | None = None,
    ) -> None:
        if heartbeat_interval <= 0 or disown_timeout <= 0 or termination_grace < 0:
            raise ConfigError("heartbeat_interval and disown_timeout must be > 0, grace >= 0")
        if session_timeout is not None and session_timeout <= 0:
            raise ConfigError("session_timeout must be > 0 or None")
        self.uuid = uuid
        self.dialect = dialect
        self.heartbeat_interval = heartbeat_interval
        self.disown_timeout = disown_timeout
        self.termination_grace = termination_grace
        self.session_timeout = session_timeout
        self.state = W.CONNECTING
        self.sessions: dict[int, SessionMachine] = {}
        self.open_responses = 0
        self.terminate_reason: str | None = None
        #: the code of the engine's terminate (None: none came, or we stopped first)
        self.terminate_code: int | None = None
        self.heartbeat_due: float | None = None
        self.disown_deadline: float | None = None
        self.grace_deadline: float | None = None

    # -- state machine -------------------------------------------------------------------------

    def _advance(self, table: Transitions[WorkerState, WorkerEvent], event: WorkerEvent) -> None:
        new = self.state = table.next(self.state, event)
        if new is W.CLOSED:
            self.heartbeat_due = self.disown_deadline = self.grace_deadline = None

    @property
    def accepting(self) -> bool:
        """True while new invokes become sessions."""
        return self.state is W.ACTIVE

    @property
    def drained(self) -> bool:
        """True once a draining worker has no session with an open response."""
        return self.state is W.DRAINING and self.open_responses == 0

    # -- worker -> engine ----------------------------------------------------------------------

    def start(self, now: float) -> list[bytes]:
        """Connected: returns handshake and first heartbeat (send both at once) and starts the
        heartbeat and disown clocks."""
        self._advance(WORKER, V.HANDSHAKE)
        self.heartbeat_due = now + self.heartbeat_interval
        self.disown_deadline = now + self.disown_timeout
        return [self.dialect.handshake(self.uuid), self.dialect.heartbeat()]

    def shutdown(self, reason: str, now: float) -> None:
        """Stop taking sessions by our own decision; drains like an engine terminate."""
        self._advance(WORKER, V.SHUTDOWN)
        self._begin_drain(reason, now)

    def finish(self) -> bytes:
        """Drained (or given up): returns our terminate (its code is the dialect's answer to
        the engine's, `normal` when we stop on our own) and closes the machine."""
        reason = self.terminate_reason or "worker shut down"
        self._advance(WORKER, V.TERMINATE)
        return self.dialect.terminate(self.dialect.terminate_answer(self.terminate_code), reason)

    # -- engine -> worker ----------------------------------------------------------------------

    def receive_heartbeat(self, now: float) -> None:
        """An echo: the engine is alive, the disown deadline moves to `now + disown_timeout`."""
        self._advance(ENGINE, V.HEARTBEAT)
        self.disown_deadline = now + self.disown_timeout

    def receive_terminate(self, code: int, reason: str, now: float) -> None:
        """The engine asks the worker to go: stop taking invokes, start the grace clock."""
        self._advance(ENGINE, V.TERMINATE)
        if self.terminate_reason is None:
            self.terminate_code = code
        self._begin_drain(reason, now)

    def _begin_drain(self, reason: str, now: float) -> None:
        if self.terminate_reason is None:
            self.terminate_reason = reason
            self.grace_deadline = now + self.termination_grace

    def receive_invoke(self, session: int, event: str, handlers: Container[str]) -> Refusal | None:
        """Decide whether an invoke becomes a session: None to accept, else why not."""
        if self.state is W.ACTIVE and event in handlers and session not in self.sessions:
            return None  # the common case; (ACTIVE, INVOKE) is a self-loop in the table
        self._advance(ENGINE, V.INVOKE)
        if self.state is not W.ACTIVE:
            return Refusal(SHUTTING_DOWN, "the worker is shutting down")
        if event not in handlers:
            return Refusal(NO_HANDLER, f"there is no handler for event {event}")
        if session in self.sessions:
            return Refusal(HANDLER_FAILED, f"session {session} is already open")
        return None

    def refuse(self, session: int, refusal: Refusal) -> bytes:
        """The error+choke that answers a refused invoke."""
        return self.dialect.failure(session, refusal.code, refusal.message)

    def open_session(self, machine: SessionMachine, now: float | None = None) -> None:
        """Track an accepted session; with a session timeout, `now` sets its deadline."""
        if self.session_timeout is not None and now is not None:
            machine.deadline = now + self.session_timeout
        machine._on_change = self._session_changed
        self.sessions[machine.id] = machine
        self.open_responses += 1

    def _session_changed(
        self, machine: SessionMachine, old: SessionState, new: SessionState
    ) -> None:
        # module constants: an enum member looked up on its class costs about 60 ns each
        if old <= _REQUEST_DONE < new:
            self.open_responses -= 1
        if new is _CLOSED:
            self.sessions.pop(machine.id, None)

    def connection_closed(self, errno: int) -> list[SessionMachine]:
        """The transport is gone; returns the sessions still open (the caller aborts them)."""
        self._advance(ENGINE, V.CONNECTION_CLOSED)
        return list(self.sessions.values())

    def open_sessions(self) -> list[SessionMachine]:
        """Sessions whose response is still open, oldest first."""
        return [m for m in self.sessions.values() if m.response_open]

    # -- timers ---------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline (heartbeat, disown, grace), or None when nothing is pending."""
        deadlines = [
            d
            for d in (self.heartbeat_due, self.disown_deadline, self.grace_deadline)
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[TimerEvent]:
        """What is due at `now`, in the order to act on it.

        `Disown` comes alone and closes the machine. `GraceExpired` asks the caller to abort
        `open_sessions()` and `finish()`. `Heartbeat` asks the caller to send
        `dialect.heartbeat()`; the next one is then due at `now + heartbeat_interval`.
        """
        if self.disown_deadline is not None and now >= self.disown_deadline:
            deadline = self.disown_deadline
            self._advance(WORKER, V.DISOWN)
            return [Disown(deadline)]
        due: list[TimerEvent] = []
        if self.grace_deadline is not None and now >= self.grace_deadline:
            due.append(GraceExpired(self.grace_deadline))
            self._advance(WORKER, V.GRACE_EXPIRED)
            self.grace_deadline = None
        if self.heartbeat_due is not None and now >= self.heartbeat_due:
            self._advance(WORKER, V.HEARTBEAT)
            self.heartbeat_due = now + self.heartbeat_interval
            due.append(Heartbeat())
        return due


def state_diagram() -> str:
    """Mermaid state diagram generated from the two transition tables (used by docs)."""
    return diagram("CONNECTING", ENGINE, WORKER)
