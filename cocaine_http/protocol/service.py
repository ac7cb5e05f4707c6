# Strategy: the service client's rules without any I/O. Two small machines live here:
#
# - `ServiceMachine`: the connection state of a BaseService (seed design: closed, connecting,
#   connected, error; "resolving" is a flag over closed kept by Service). Every legal move is a
#   row of TRANSITIONS (protocol.transitions, the idiom of every machine here); process() is
#   the only way to change state and raises LocalProtocolError for a missing row, so an
#   impossible move is a bug that shows, never a silent state.
# - `CallTable`: the per-connection session counter (PY11 numbers from 1) and the reply state of
#   every call in flight. v0.11 replies are chunk*/error/choke on the call's session
#   [CORE11 `src/actor.cpp`]; an error ends the call at once because the runtime does not always
#   follow it with a choke (PROTOCOL.md §12, "slave has timed out"), and since ids are never
#   reused on a connection, a late choke for a finished call is simply ignored.
"""Sans-IO service client rules: the BaseService state table and per-call reply tracking."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .transitions import Transitions


class State(enum.Enum):
    """Connection state of a BaseService."""

    CLOSED = "closed"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


class Event(enum.Enum):
    """What can happen to a BaseService connection."""

    CONNECT = "connect"  # start connecting
    CONNECTED = "connected"  # the socket is up
    SOCKET_ERROR = "socket_error"  # connect failure, reset, EOF, malformed stream
    CLOSE = "close"  # the user (or a reconnect) closes it


#: Every legal move: (state, event) -> next state. NODE-a `lib/base_service.js`, with two
#: additions: CLOSE in CLOSED is a no-op (close() is idempotent) and CONNECT from ERROR is a
#: reconnect (the reconnect policy decides when it happens).
TRANSITIONS: Transitions[State, Event] = Transitions("service", {
    (State.CLOSED, Event.CONNECT): State.CONNECTING,
    (State.CLOSED, Event.CLOSE): State.CLOSED,
    (State.CONNECTING, Event.CONNECTED): State.CONNECTED,
    (State.CONNECTING, Event.SOCKET_ERROR): State.ERROR,
    (State.CONNECTING, Event.CLOSE): State.CLOSED,
    (State.CONNECTED, Event.SOCKET_ERROR): State.ERROR,
    (State.CONNECTED, Event.CLOSE): State.CLOSED,
    (State.ERROR, Event.CONNECT): State.CONNECTING,
    (State.ERROR, Event.CLOSE): State.CLOSED,
})


class ServiceMachine:
    """The BaseService state, changed only through `process`.

    Args:
        on_change: called as on_change(old, new, event) after every move, including the
            no-op CLOSE in CLOSED (so observers see each close() call).
    """

    def __init__(self, on_change: Callable[[State, State, Event], Any] | None = None) -> None:
        self.state = State.CLOSED
        self._on_change = on_change

    def can(self, event: Event) -> bool:
        return (self.state, event) in TRANSITIONS

    def process(self, event: Event) -> State:
        """Apply `event`; returns the new state.

        Raises:
            LocalProtocolError: the table has no row for (state, event).
        """
        old = self.state
        new = self.state = TRANSITIONS.next(old, event)
        if self._on_change is not None:
            self._on_change(old, new, event)
        return new


class ReplyKind(enum.Enum):
    CHUNK = "chunk"
    ERROR = "error"
    CHOKE = "choke"


@dataclass(slots=True)
class Reply:
    """The reply state of one call: chunks so far, and how it ended (if it has)."""

    session: int
    chunks: list[bytes] = field(default_factory=list)
    error: tuple[int, str] | None = None
    done: bool = False


class CallTable:
    """Session ids and reply states of the calls in flight on one connection."""

    def __init__(self, first: int = 1) -> None:
        self._next = first
        self._calls: dict[int, Reply] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def open(self) -> Reply:
        """Start a call on a fresh session id."""
        session = self._next
        self._next += 1
        reply = Reply(session)
        self._calls[session] = reply
        return reply

    def next_session(self) -> int:
        """A fresh session id for a message whose reply nobody waits for (logging.emit)."""
        session = self._next
        self._next += 1
        return session

    def receive(self, kind: ReplyKind, session: int, payload: Any = None) -> Reply | None:
        """Record one reply message; returns the call's Reply, or None for an unknown session.

        A call is finished (`done`, and forgotten) by choke or by error.
        """
        reply = self._calls.get(session)
        if reply is None:
            return None
        if kind is ReplyKind.CHUNK:
            reply.chunks.append(payload)
            return reply
        if kind is ReplyKind.ERROR:
            reply.error = payload
        reply.done = True
        del self._calls[session]
        return reply

    def forget(self, session: int) -> None:
        """Drop a call (timed out or cancelled): its late replies will be ignored."""
        self._calls.pop(session, None)

    def drain(self) -> list[Reply]:
        """Remove and return every call in flight (the connection is gone)."""
        calls = list(self._calls.values())
        self._calls.clear()
        return calls
