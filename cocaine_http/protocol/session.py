# Strategy: one session ("band", docs/protocol.md §3.4) is two streams: the engine's request
# (invoke, chunks, choke) and the worker's response (chunks, then choke, or error then choke). The
# state is the pair of both halves folded into one enum; which side moved picks the table (ENGINE
# for what arrived, WORKER for what we send), and a missing row is a protocol violation:
# RemoteProtocolError for the engine, LocalProtocolError for us (protocol.transitions).
#
# Invariants:
#   - an engine `error` is terminal (docs/protocol.md §3.6: failed streams get error without
#     choke);
#   - a worker `error` ends the response: the dialect frames it (error then choke in v0.11, the
#     error alone in v0.12, `Dialect.failure`) and the machine treats it as the end;
#   - `ABORT` (the worker gives up: disown, timeout, shutdown) closes from any open state.
#
# The hot path advances by event token (`receive(Chunk)`, `send_chunk(size)`), never by event
# object. States are IntEnum, so the tables are also read as rows (ENGINE_NEXT / WORKER_NEXT:
# event -> next state indexed by the current state), derived from the tables at import: a
# check is one tuple index, and the tables stay the one source.
"""Sans-IO state machine of one worker session."""

from __future__ import annotations

import enum
from collections.abc import Callable

from ..errors import LocalProtocolError
from .dialect import V0_11, Dialect
from .transitions import Transitions, diagram


class SessionState(enum.IntEnum):
    """Both halves of a session folded into one state."""

    OPEN = 0  #: request and response both open
    REQUEST_DONE = 1  #: the engine sent choke; the worker may still write
    RESPONSE_DONE = 2  #: the worker ended its response; request chunks may still arrive
    CLOSED = 3  #: nothing more flows in either direction


class SessionEvent(enum.Enum):
    """What moves a session (the invoke opens it and is the worker machine's event)."""

    CHUNK = "chunk"  #: one chunk of request (engine) or response (worker) data
    CHOKE = "choke"  #: the sender's half of the session ends
    ERROR = "error"  #: the sender fails the session
    ABORT = "abort"  #: the worker gives the session up (disown, timeout, shutdown)


Chunk = SessionEvent.CHUNK
Choke = SessionEvent.CHOKE
Error = SessionEvent.ERROR
Abort = SessionEvent.ABORT

S = SessionState

#: What the engine may send, per state.
ENGINE = Transitions("engine", {
    (S.OPEN, Chunk): S.OPEN,
    (S.OPEN, Choke): S.REQUEST_DONE,
    (S.OPEN, Error): S.CLOSED,
    (S.REQUEST_DONE, Error): S.CLOSED,
    (S.RESPONSE_DONE, Chunk): S.RESPONSE_DONE,
    (S.RESPONSE_DONE, Choke): S.CLOSED,
    (S.RESPONSE_DONE, Error): S.CLOSED,
}, remote=True)  # fmt: skip

#: What the worker may do, per state.
WORKER = Transitions("worker", {
    (S.OPEN, Chunk): S.OPEN,
    (S.OPEN, Choke): S.RESPONSE_DONE,
    (S.OPEN, Error): S.RESPONSE_DONE,
    (S.OPEN, Abort): S.CLOSED,
    (S.REQUEST_DONE, Chunk): S.REQUEST_DONE,
    (S.REQUEST_DONE, Choke): S.CLOSED,
    (S.REQUEST_DONE, Error): S.CLOSED,
    (S.REQUEST_DONE, Abort): S.CLOSED,
    (S.RESPONSE_DONE, Abort): S.CLOSED,
})  # fmt: skip

#: ENGINE as rows (hot path: `ENGINE_NEXT[Chunk][state]`).
ENGINE_NEXT = {event: ENGINE.row(event, SessionState) for event in SessionEvent}
#: WORKER as rows.
WORKER_NEXT = {event: WORKER.row(event, SessionState) for event in SessionEvent}

_RESPONSE_OPEN = (S.OPEN, S.REQUEST_DONE)

#: NOTABLE[old][new]: the changes an owner tracks (the response half ends, or the session
#: closes); the `_on_change` hook runs for these only, so the engine's ordinary choke costs none.
NOTABLE: tuple[tuple[bool, ...], ...] = tuple(
    tuple(new is S.CLOSED or (old in _RESPONSE_OPEN and new not in _RESPONSE_OPEN)
          for new in SessionState)
    for old in SessionState
)  # fmt: skip


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

    def receive(self, event: SessionEvent) -> SessionState:
        """Advance on a message from the engine.

        Raises:
            RemoteProtocolError: the engine sent something this state forbids.
        """
        new = ENGINE_NEXT[event][self.state]
        if new is None:
            raise ENGINE.violation(self.state, event, f"session {self.id}")
        self._enter(new)
        return new

    def local(self, event: SessionEvent) -> SessionState:
        """Advance on a move of the worker.

        Raises:
            LocalProtocolError: this state forbids the move.
        """
        new = WORKER_NEXT[event][self.state]
        if new is None:
            raise WORKER.violation(self.state, event, f"session {self.id}")
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
        if WORKER_NEXT[Chunk][self.state] is not self.state:
            self.local(Chunk)  # raises: the table has no chunk edge from here
        return self.dialect.chunk_header(self.id, size)

    def send_choke(self) -> bytes:
        """End the response; returns the choke message."""
        self.local(Choke)
        return self.dialect.choke(self.id)

    def send_error(self, code: int, message: str) -> bytes:
        """Fail the response; returns what the dialect frames as a failure (`Dialect.failure`)."""
        self.local(Error)
        return self.dialect.failure(self.id, code, message)

    def abort(self) -> bool:
        """Give the session up locally. Returns whether the response was still open (so the
        caller may tell the engine with `Dialect.failure`). Aborting a closed session is a
        no-op."""
        if self.state is S.CLOSED:
            return False
        was_open = self.response_open
        self.local(Abort)
        return was_open


def state_diagram() -> str:
    """Mermaid state diagram generated from the two transition tables (used by docs)."""
    return diagram("OPEN: engine invoke", ENGINE, WORKER)
