# Strategy: one session ("band", PROTOCOL.md §3.4) is two streams: the engine's request (invoke,
# chunks, choke) and the worker's response (chunks, then choke, or error then choke). The state
# is the pair of both halves folded into one enum; which side moved picks the table
# (ENGINE_TRANSITIONS for what arrived, WORKER_TRANSITIONS for what we send), and a missing key is
# a protocol violation: RemoteProtocolError for the engine, LocalProtocolError for us.
#
# Invariants:
#   - an engine `error` is terminal (PROTOCOL.md §3.6: failed streams get error without choke);
#   - a worker `error` is always followed by its `choke` in v0.11 (§12: the runtime waits for the
#     choke), while in v0.12 `error` closes the stream by itself, so `send_error` frames both
#     messages as one unit per dialect and the machine treats it as the end of the response;
#   - `Abort` (the worker gives up: disown, timeout, shutdown) closes from any open state.
#
# The hot path advances by event *type* (`receive(Chunk)`, `send_chunk(size)`) so no event
# object is allocated per message; `process_event` takes event objects for callers that have
# them (tests, tools). States are IntEnum, so the tables can also be read as rows
# (ENGINE_NEXT / WORKER_NEXT: event type -> next state indexed by the current state), derived
# from the tables at import: a check is one tuple index, and the tables stay the one source.
"""Sans-IO state machine of one worker session."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from ..errors import LocalProtocolError, RemoteProtocolError
from .dialect import V0_11, Dialect


class SessionState(enum.IntEnum):
    """Both halves of a session folded into one state."""

    OPEN = 0  #: request and response both open
    REQUEST_DONE = 1  #: the engine sent choke; the worker may still write
    RESPONSE_DONE = 2  #: the worker ended its response; request chunks may still arrive
    CLOSED = 3  #: nothing more flows in either direction


class Role(enum.Enum):
    """Which side produced an event."""

    ENGINE = "engine"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Invoke:
    """The engine opens a session for `event`."""

    session: int
    event: str

    def __post_init__(self) -> None:
        _check_session(self.session)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of request (engine) or response (worker) data."""

    session: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_session(self.session)


@dataclass(frozen=True, slots=True)
class Choke:
    """The sender's half of the session ends."""

    session: int

    def __post_init__(self) -> None:
        _check_session(self.session)


@dataclass(frozen=True, slots=True)
class Error:
    """The sender fails the session (from the worker: error then choke on the wire)."""

    session: int
    code: int
    message: str

    def __post_init__(self) -> None:
        _check_session(self.session)
        if not isinstance(self.code, int):
            raise TypeError("error code must be an int")


@dataclass(frozen=True, slots=True)
class Abort:
    """The worker gives the session up (disown, timeout, shutdown); never sent as such."""

    session: int
    code: int
    message: str


SessionEvent = Union[Invoke, Chunk, Choke, Error, Abort]


def _check_session(session: int) -> None:
    if not isinstance(session, int) or session < 0:
        raise ValueError(f"session id must be a non-negative int, got {session!r}")


S = SessionState

#: What the engine may send, per state (invoke only opens the session and is not listed).
ENGINE_TRANSITIONS: dict[tuple[SessionState, type], SessionState] = {
    (S.OPEN, Chunk): S.OPEN,
    (S.OPEN, Choke): S.REQUEST_DONE,
    (S.OPEN, Error): S.CLOSED,
    (S.REQUEST_DONE, Error): S.CLOSED,
    (S.RESPONSE_DONE, Chunk): S.RESPONSE_DONE,
    (S.RESPONSE_DONE, Choke): S.CLOSED,
    (S.RESPONSE_DONE, Error): S.CLOSED,
}

#: What the worker may do, per state.
WORKER_TRANSITIONS: dict[tuple[SessionState, type], SessionState] = {
    (S.OPEN, Chunk): S.OPEN,
    (S.OPEN, Choke): S.RESPONSE_DONE,
    (S.OPEN, Error): S.RESPONSE_DONE,
    (S.OPEN, Abort): S.CLOSED,
    (S.REQUEST_DONE, Chunk): S.REQUEST_DONE,
    (S.REQUEST_DONE, Choke): S.CLOSED,
    (S.REQUEST_DONE, Error): S.CLOSED,
    (S.REQUEST_DONE, Abort): S.CLOSED,
    (S.RESPONSE_DONE, Abort): S.CLOSED,
}



def _rows(
    table: dict[tuple[SessionState, type], SessionState],
) -> dict[type, tuple[SessionState | None, ...]]:
    """The table as rows: {event type: next state indexed by the current state's value, None
    where the table has no edge}. Derived once, so the table stays the single source."""
    rows: dict[type, list[SessionState | None]] = {}
    for (state, event_type), new in table.items():
        rows.setdefault(event_type, [None] * len(SessionState))[state] = new
    return {event_type: tuple(row) for event_type, row in rows.items()}


_NO_EDGE: tuple[SessionState | None, ...] = (None,) * len(SessionState)
#: ENGINE_TRANSITIONS as rows (hot path: `ENGINE_NEXT[Chunk][state]`).
ENGINE_NEXT = _rows(ENGINE_TRANSITIONS)
#: WORKER_TRANSITIONS as rows.
WORKER_NEXT = _rows(WORKER_TRANSITIONS)

_RESPONSE_OPEN = (S.OPEN, S.REQUEST_DONE)

#: NOTABLE[old][new]: the changes an owner tracks (the response half ends, or the session
#: closes); the `_on_change` hook runs for these only, so the engine's ordinary choke costs none.
NOTABLE: tuple[tuple[bool, ...], ...] = tuple(
    tuple(new is S.CLOSED or (old in _RESPONSE_OPEN and new not in _RESPONSE_OPEN)
          for new in SessionState)
    for old in SessionState
)
#: States where a worker chunk is a self-loop, derived from the table for the write fast path.
_CHUNK_KEEPS_STATE = frozenset(
    s for (s, event), new in WORKER_TRANSITIONS.items() if event is Chunk and new is s
)

#: v0.12 `error` ends a stream by itself (streaming protocol); v0.11 needs the choke after it.
_ERROR_ENDS_STREAM = {"v0.11": False, "v0.12": True}


class SessionMachine:
    """State of one session, plus the encoders for what the worker sends on it.

    Subclasses (the asyncio Session) add delivery; `_on_change(machine, old, new)` is called
    after every NOTABLE transition (the response ends, or the session closes) so an owner (the
    WorkerConnection) can keep its counters without scanning.

    Attributes:
        id: the session id from the engine's invoke.
        event: the event name from the invoke.
        state: current SessionState.
        deadline: when the worker gives the session up (`now`-based), or None.
    """

    __slots__ = ("id", "event", "dialect", "state", "deadline", "_on_change")

    def __init__(self, session: int, event: str, dialect: Dialect = V0_11) -> None:
        self.id = session
        self.event = event
        self.dialect = dialect
        self.state = S.OPEN
        self.deadline: float | None = None
        self._on_change: Callable[[SessionMachine, SessionState, SessionState], None] | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def response_open(self) -> bool:
        """True while the worker may still write (it has sent neither choke nor error)."""
        return self.state in _RESPONSE_OPEN

    @property
    def request_open(self) -> bool:
        """True while the engine may still send request chunks."""
        return self.state is S.OPEN or self.state is S.RESPONSE_DONE

    @property
    def finished(self) -> bool:
        """True once nothing more flows in either direction."""
        return self.state is S.CLOSED

    def process_event(self, role: Role, event: SessionEvent) -> SessionState:
        """Apply one event from `role`; returns the new state.

        Raises:
            RemoteProtocolError: the engine sent something its state forbids.
            LocalProtocolError: the worker tried something its state forbids.
        """
        if event.session != self.id:
            raise LocalProtocolError(f"event for session {event.session} given to {self.id}")
        if role is Role.ENGINE:
            return self.receive(type(event))
        return self._local(type(event))

    def receive(self, event_type: type) -> SessionState:
        """Advance on a message of `event_type` from the engine (hot path: no event object)."""
        new = ENGINE_NEXT.get(event_type, _NO_EDGE)[self.state]
        if new is None:
            raise RemoteProtocolError(
                f"engine sent {event_type.__name__.lower()} on session {self.id} "
                f"in state {self.state.name}"
            )
        self._enter(new)
        return new

    def _local(self, event_type: type) -> SessionState:
        new = WORKER_NEXT.get(event_type, _NO_EDGE)[self.state]
        if new is None:
            raise LocalProtocolError(
                f"cannot send {event_type.__name__.lower()} on session {self.id} "
                f"in state {self.state.name}"
            )
        self._enter(new)
        return new

    def _enter(self, new: SessionState) -> None:
        old = self.state
        if new is old:
            return
        self.state = new
        if self._on_change is not None and NOTABLE[old][new]:
            self._on_change(self, old, new)

    # -- worker -> engine ---------------------------------------------------------------------

    def send_chunk(self, size: int) -> bytes:
        """Advance on a response chunk of `size` bytes; returns the frame header to put
        before the payload (the payload itself is never copied)."""
        if self.state not in _CHUNK_KEEPS_STATE:
            self._local(Chunk)  # raises: the table has no chunk edge from here
        return self.dialect.chunk_header(self.id, size)

    def send_choke(self) -> bytes:
        """End the response; returns the choke message."""
        self._local(Choke)
        return self.dialect.choke(self.id)

    def send_error(self, code: int, message: str) -> bytes:
        """Fail the response; returns error then choke (v0.11) or the error alone (v0.12)."""
        self._local(Error)
        data = self.dialect.error(self.id, code, message)
        if _ERROR_ENDS_STREAM.get(self.dialect.name, False):
            return data
        return data + self.dialect.choke(self.id)

    def abort(self) -> bool:
        """Give the session up locally. Returns whether the response was still open (so the
        caller may tell the engine with `error_bytes`). Aborting a closed session is a no-op."""
        if self.state is S.CLOSED:
            return False
        was_open = self.response_open
        self._local(Abort)
        return was_open


def error_bytes(dialect: Dialect, session: int, code: int, message: str) -> bytes:
    """Error then choke for a session that has no machine (refused invokes, aborts)."""
    data = dialect.error(session, code, message)
    if _ERROR_ENDS_STREAM.get(dialect.name, False):
        return data
    return data + dialect.choke(session)


def state_diagram() -> str:
    """Mermaid state diagram generated from the two transition tables (used by docs)."""
    lines = ["stateDiagram-v2", "    [*] --> OPEN: engine invoke"]
    for role, table in (("engine", ENGINE_TRANSITIONS), ("worker", WORKER_TRANSITIONS)):
        for (state, event_type), new in table.items():
            lines.append(f"    {state.name} --> {new.name}: {role} {event_type.__name__.lower()}")
    lines.append("    CLOSED --> [*]")
    return "\n".join(lines)
