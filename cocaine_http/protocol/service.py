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
#   follow it with a choke (docs/protocol.md §12, "slave has timed out"), and since ids are never
#   reused on a connection, a late choke for a finished call is simply ignored.
"""Sans-IO service client rules: the BaseService state table and per-call reply tracking."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import RemoteProtocolError
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
    chunks: list[Any] = field(default_factory=list)
    error: tuple[int, str] | None = None
    done: bool = False
    #: where the downstream protocol stands (graph dialects; None for v0.11)
    graph: Graph | None = None


class CallTable:
    """Session ids and reply states of the calls in flight on one connection."""

    def __init__(self, first: int = 1) -> None:
        self._next = first
        self._calls: dict[int, Reply] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def open(self, graph: Graph | None = None) -> Reply:
        """Start a call on a fresh session id; `graph` is its downstream protocol (v0.12)."""
        session = self._next
        self._next += 1
        reply = Reply(session, graph=graph)
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

    def follow(self, session: int, mid: int) -> tuple[ReplyStep, Reply] | None:
        """Move a call along its downstream graph on message `mid` (graph dialects); None for
        an unknown session. The caller records the step's data or error with `receive`.

        Raises:
            RemoteProtocolError: the message is not allowed in the call's state.
        """
        reply = self._calls.get(session)
        if reply is None:
            return None
        step, reply.graph = follow(reply.graph, mid)
        return step, reply

    def forget(self, session: int) -> None:
        """Drop a call (timed out or cancelled): its late replies will be ignored."""
        self._calls.pop(session, None)

    def drain(self) -> list[Reply]:
        """Remove and return every call in flight (the connection is gone)."""
        calls = list(self._calls.values())
        self._calls.clear()
        return calls


# -- protocol graphs (v0.12) ---------------------------------------------------------------------
#
# A v0.12 locator describes every method of a service with two graphs: what the client may send
# after the call (upstream) and what the service answers (downstream) [CORE12 `idl/primitive.hpp`,
# `idl/streaming.hpp`]. A graph maps a message id to (name, next graph): next None means the
# protocol stays where it is (a stream: `write`), an empty graph means the message ends the
# channel (`value`, `error`, `close`). An empty downstream means the method never answers
# (`logging.emit`). v0.11 has no graphs: every reply is chunk*, then error or choke.

#: One protocol state: {message id: (message name, next state or None to stay)}.
Graph = dict[int, tuple[str, "Graph | None"]]


def _name(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_graph(value: Any) -> Graph | None:
    """A graph from its wire form `{id: [name, next]}` (next nil: stay; {}: end).

    Raises:
        RemoteProtocolError: the value is not a graph.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"a protocol graph is a map, got {value!r:.80}")
    graph: Graph = {}
    for key, step in value.items():
        if not isinstance(key, int) or not isinstance(step, (list, tuple)) or not step:
            raise RemoteProtocolError(f"a protocol graph step is [name, next], got {step!r:.80}")
        graph[key] = (_name(step[0]), parse_graph(step[1]) if len(step) > 1 else {})
    return graph


def dump_graph(graph: Graph | None) -> dict[int, list[Any]] | None:
    """A graph in its wire form `{id: [name, next]}`, the inverse of `parse_graph`."""
    if graph is None:
        return None
    return {mid: [name, dump_graph(nxt)] for mid, (name, nxt) in graph.items()}


@dataclass(frozen=True, slots=True)
class MethodProtocol:
    """One method of a service: its name and, where the locator tells them, its graphs.

    Attributes:
        name: the method name.
        upstream: what the caller may send on the channel after the call (None: unknown, or
            nothing).
        downstream: what the service answers (None: unknown, v0.11; {}: nothing at all).
    """

    name: str
    upstream: Graph | None = None
    downstream: Graph | None = None

    @property
    def mute(self) -> bool:
        """The service never answers this method (`logging.emit` in v0.12)."""
        return self.downstream == {}

    @property
    def streaming(self) -> bool:
        """The answer may hold several data messages (a step that stays: `write`)."""
        steps = self.downstream or {}
        return any(nxt is None and name != "error" for name, nxt in steps.values())

    def upstream_id(self, name: str) -> int | None:
        """Id of the upstream message `name` (`write`, `close`), None if it has none."""
        for mid, (step, _) in (self.upstream or {}).items():
            if step == name:
                return mid
        return None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the locator says about a service. Unpacks and indexes as `(host, port), version,
    table`, the v0.11 layout, whatever the dialect.

    Attributes:
        endpoints: every (host, port) the service listens on, in the locator's order.
        version: the service's protocol version.
        methods: {method id: MethodProtocol}.
    """

    endpoints: tuple[tuple[str, int], ...]
    version: int
    methods: dict[int, MethodProtocol]

    @property
    def endpoint(self) -> tuple[str, int]:
        return self.endpoints[0]

    @property
    def table(self) -> dict[int, str]:
        """{method id: name}, the v0.11 method table."""
        return {mid: m.name for mid, m in self.methods.items()}

    def as_tuple(self) -> tuple[tuple[str, int], int, dict[int, str]]:
        """`((host, port), version, {id: name})`, the v0.11 layout."""
        return self.endpoint, self.version, self.table

    def __iter__(self) -> Iterator[Any]:
        return iter(self.as_tuple())

    def __getitem__(self, index: int) -> Any:
        return self.as_tuple()[index]

    def __len__(self) -> int:
        return 3


def table_methods(table: Mapping[int, Any]) -> dict[int, MethodProtocol]:
    """MethodProtocols of a method table: {id: name} (v0.11) or {id: MethodProtocol}."""
    return {
        int(mid): m if isinstance(m, MethodProtocol) else MethodProtocol(_name(m))
        for mid, m in table.items()
    }


class ReplyStep(enum.Enum):
    """What one downstream message does to its call (graph dialects)."""

    DATA = "data"  # a data message; the call goes on (write)
    LAST = "last"  # a data message that ends the call (value)
    ERROR = "error"  # an error; the call ends
    END = "end"  # the end of the call, no data (close)


def follow(graph: Graph | None, mid: int) -> tuple[ReplyStep, Graph | None]:
    """The step a downstream message `mid` takes from state `graph`, and the state after it.

    Raises:
        RemoteProtocolError: the state has no message `mid`.
    """
    step = graph.get(mid) if graph else None
    if step is None:
        known = ", ".join(f"{k} {n}" for k, (n, _) in (graph or {}).items()) or "none"
        raise RemoteProtocolError(f"message {mid} is not allowed here (allowed: {known})")
    name, nxt = step
    after = graph if nxt is None else nxt
    if name == "error":
        return ReplyStep.ERROR, {}
    if nxt == {}:
        return (ReplyStep.LAST if name == "value" else ReplyStep.END), {}
    return ReplyStep.DATA, after
