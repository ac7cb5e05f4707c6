# Strategy: BaseService is the seed design's state machine around one Channel. The state lives
# in protocol.service.ServiceMachine (the transition table is data there); this module only
# performs the I/O each transition implies and keeps the calls in flight in a CallTable.
#
# - Connecting is single-flight: concurrent callers share one task. A failed connect is retried
#   as the reconnect policy says; a policy with reconnect=False leaves a service that hit a
#   socket error in `error` until close().
# - A socket error fails every pending call with ConnectionLostError(errno) at once, so no caller
#   waits for its timeout on a dead connection (PY11 did the same with DisconnectionError).
# - Timeouts are loop timers (call_at), not wait_for tasks: one handle per call, cancelled when
#   the reply ends; a timed-out call is forgotten and its late replies ignored.
# - Replies are handed over raw (bytes); the caller (Service) unpacks them, so BaseService knows
#   nothing of method tables or definitions.
"""BaseService: one connection to a Cocaine service, its state machine and its calls."""

from __future__ import annotations

import asyncio
import collections
import errno as errnos
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..aio.channel import Channel
from ..aio.endpoint import Endpoint, parse_endpoint
from ..errors import (
    ConnectionLostError,
    RemoteProtocolError,
    ServiceError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)
from ..protocol.dialect import V0_11, Dialect, Kind
from ..protocol.service import (
    CallTable,
    Event,
    Graph,
    MethodProtocol,
    Reply,
    ReplyKind,
    ReplyStep,
    ServiceMachine,
    State,
)
from ..protocol.worker import BAD_MESSAGE
from .policy import ReconnectPolicy, get_policy

log = logging.getLogger("cocaine_http.services")

#: Default per-call timeout in seconds (the Node.js client's "call timeout").
DEFAULT_TIMEOUT = 30.0

StateListener = Callable[[State, State], Any]


class _Unary:
    """Waiter for a call whose reply is gathered whole."""

    __slots__ = ("future", "timer", "method")

    def __init__(self, future: asyncio.Future[list[bytes]], method: str) -> None:
        self.future = future
        self.method = method
        self.timer: asyncio.TimerHandle | None = None

    def chunk(self, reply: Reply) -> None:
        return None

    def end(self, reply: Reply, exc: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.future.done():
            if exc is None:
                self.future.set_result(reply.chunks)
            else:
                self.future.set_exception(exc)


class _Stream:
    """Waiter for a streaming call: chunks are queued until the consumer takes them."""

    __slots__ = ("items", "waiter", "ended", "method")

    def __init__(self, method: str) -> None:
        self.method = method
        self.items: collections.deque[bytes | BaseException | None] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.ended = False

    def chunk(self, reply: Reply) -> None:
        self.items.append(reply.chunks.pop())
        self._wake()

    def end(self, reply: Reply, exc: BaseException | None) -> None:
        if not self.ended:
            self.ended = True
            self.items.append(exc)
            self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class BaseService:
    """A connection to one Cocaine service endpoint.

    Args:
        name: service name (for errors and logs).
        endpoint: "host:port", (host, port) or a unix path; Service may fill it in by resolving.
        dialect: wire dialect (v0.11 or v0.12).
        policy: reconnect policy, "none", "backoff" or None (backoff).
        timeout: default per-call timeout in seconds.

    Attributes:
        state: a `State`; `errno` holds the last socket error.
    """

    def __init__(
        self,
        name: str,
        endpoint: str | tuple[str, int] | Endpoint | None = None,
        *,
        dialect: Dialect = V0_11,
        policy: ReconnectPolicy | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.name = name
        self.endpoint: Endpoint | None = parse_endpoint(endpoint) if endpoint is not None else None
        self.dialect = dialect
        self.policy = get_policy(policy)
        self.timeout = timeout
        self.errno: int | None = None
        self._machine = ServiceMachine(self._changed)
        self._listeners: list[StateListener] = []
        self._channel: Channel | None = None
        self._calls = CallTable()
        self._waiters: dict[int, _Unary | _Stream] = {}
        self._connecting: asyncio.Task[None] | None = None
        self._protocols: dict[int, MethodProtocol] = {}
        # derived from the protocols, so a call costs one lookup (empty for v0.11 tables)
        self._graphs: dict[int, Graph] = {}
        self._upstream: dict[int, tuple[int | None, int | None]] = {}
        self._mute: frozenset[int] = frozenset()
        self._default_graph = dialect.default_downstream

    # -- state ----------------------------------------------------------------------------------

    @property
    def protocols(self) -> dict[int, MethodProtocol]:
        """{method id: MethodProtocol}: what each method's replies look like (v0.12 graphs)."""
        return self._protocols

    @protocols.setter
    def protocols(self, protocols: dict[int, MethodProtocol]) -> None:
        self._protocols = protocols
        self._graphs = {
            mid: m.downstream for mid, m in protocols.items() if m.downstream is not None
        }
        self._upstream = {
            mid: (m.upstream_id("write"), m.upstream_id("close"))
            for mid, m in protocols.items() if m.upstream
        }
        self._mute = frozenset(mid for mid, m in protocols.items() if m.mute)

    @property
    def state(self) -> State:
        return self._machine.state

    @property
    def connected(self) -> bool:
        return self._machine.state is State.CONNECTED

    def add_listener(self, listener: StateListener) -> None:
        """Call `listener(old, new)` after every state change (and every close())."""
        self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self, old: State, new: State, event: Event) -> None:
        log.debug("service %s: %s -> %s on %s", self.name, old.value, new.value, event.value)
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:
                log.exception("state listener of service %s raised", self.name)

    # -- connecting ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect unless connected; retries per the reconnect policy.

        Raises:
            ConnectionLostError: the service is in `error` and the policy does not reconnect.
            ServiceUnavailableError: every connect attempt failed.
        """
        if self._machine.state is State.CONNECTED:
            return
        task = self._connecting
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._connect_loop())
            self._connecting = task
        await asyncio.shield(task)

    async def _connect_loop(self) -> None:
        if self._machine.state is State.ERROR and not self.policy.reconnect:
            raise ConnectionLostError(
                self.errno or 0, f"service {self.name} is in the error state; close() it first"
            )
        attempt = 0
        while True:
            if await self._connect_once():
                return
            delay = self.policy.delay(attempt)
            if delay is None:
                raise ServiceUnavailableError(
                    f"cannot connect to service {self.name} at {self.endpoint}: "
                    f"{ConnectionLostError(self.errno or 0)}"
                )
            attempt += 1
            log.debug("service %s: retry %d in %.3f s", self.name, attempt, delay)
            await asyncio.sleep(delay)

    async def _prepare(self) -> None:
        """Hook run before each connect attempt (Service resolves its endpoint here)."""

    async def _connect_once(self) -> bool:
        await self._prepare()
        if self._machine.state is State.CONNECTED:
            return True
        if self.endpoint is None:
            raise ServiceUnavailableError(f"service {self.name} has no endpoint")
        self._machine.process(Event.CONNECT)
        # graph dialects: every reply goes to _on_message, which follows the call's graph
        channel = Channel(self.dialect, raw=self.dialect.graph_replies)
        self._channel = channel
        self._calls = CallTable()
        channel.on_connect = self._on_connect
        channel.on_chunk = self._on_chunk
        channel.on_error = self._on_error
        channel.on_choke = self._on_choke
        channel.on_bad_message = self._on_bad_message
        channel.on_message = self._on_message
        channel.on_socket_error = self._on_socket_error
        ok = await channel.connect(self.endpoint)
        state: State = self._machine.state  # changed by the callbacks during the await
        if self._channel is not channel or state is not State.CONNECTED:
            channel.abort()  # closed meanwhile, or the connect failed
            return False
        return ok

    def _on_connect(self) -> None:
        if self._machine.state is State.CONNECTING:
            self._machine.process(Event.CONNECTED)

    def _on_socket_error(self, errno: int) -> None:
        self.errno = errno
        self._channel = None
        if self._machine.can(Event.SOCKET_ERROR):
            self._machine.process(Event.SOCKET_ERROR)
        self._lost(errno)
        self._fail_all(ConnectionLostError(errno, f"connection to service {self.name} lost"))

    def _lost(self, errno: int) -> None:
        """Hook run after a socket error (Service drops its resolved endpoint here)."""

    def _fail_all(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, {}
        for reply in self._calls.drain():
            waiter = waiters.get(reply.session)
            if waiter is not None:
                waiter.end(reply, exc)

    def close(self) -> None:
        """Close from any state; pending calls fail with ConnectionLostError. Idempotent."""
        channel, self._channel = self._channel, None
        task, self._connecting = self._connecting, None
        if task is not None and not task.done():
            task.cancel()
        self._machine.process(Event.CLOSE)
        if channel is not None:
            channel.close()
        self._fail_all(ConnectionLostError(errnos.ECONNRESET, f"service {self.name} closed"))

    # -- replies ------------------------------------------------------------------------------

    def _on_chunk(self, session: int, data: bytes) -> None:
        reply = self._calls.receive(ReplyKind.CHUNK, session, data)
        if reply is not None:
            self._waiters[session].chunk(reply)

    def _on_error(
        self, session: int, code: int, message: str, category: int | None = None
    ) -> None:
        reply = self._calls.receive(ReplyKind.ERROR, session, (code, message))
        if reply is not None:
            waiter = self._waiters.pop(session)
            waiter.end(reply, ServiceError(self.name, waiter.method, code, message, category))

    def _on_message(self, mid: int, session: int, args: list[Any]) -> None:
        """A reply on a graph dialect: the call's downstream graph says what it means."""
        if not self.dialect.graph_replies:
            log.debug("service %s: ignored message %d on session %d", self.name, mid, session)
            return
        try:
            moved = self._calls.follow(session, mid)
            if moved is None:
                return  # a call that timed out or was cancelled
            step, reply = moved
            if step is ReplyStep.ERROR:
                category, code, message = self.dialect.service_error(args)
                self._on_error(session, code, message, category)
                return
        except RemoteProtocolError as exc:
            self._on_bad_message(Kind.OTHER, session, str(exc))
            return
        if step is not ReplyStep.END:
            self._calls.receive(ReplyKind.CHUNK, session, args)
            self._waiters[session].chunk(reply)
        if step is not ReplyStep.DATA:
            self._on_choke(session)

    def _on_choke(self, session: int) -> None:
        reply = self._calls.receive(ReplyKind.CHOKE, session)
        if reply is not None:
            self._waiters.pop(session).end(reply, None)

    def _on_bad_message(self, kind: Kind, session: int, reason: str) -> None:
        """A reply whose arguments do not fit fails its own call; the others go on."""
        self._on_error(session, BAD_MESSAGE, f"bad {kind.name.lower()} message: {reason}")

    # -- calls --------------------------------------------------------------------------------

    def _send(
        self,
        method_id: int,
        args: Sequence[Any],
        waiter: _Unary | _Stream | None,
        upstream: Sequence[Sequence[Any]] = (),
        trace: tuple[int, int, int] | None = None,
    ) -> int:
        """Send a call; `upstream` holds the args of `write` messages sent after it on its
        channel, followed by `close` (methods whose upstream protocol has them: v0.12 app
        enqueue). `trace` goes in the call's headers (v0.12): the runtime takes a channel's trace
        from its first message [CORE12 `src/session.cpp`], as PY12 sends it."""
        traced = None if trace is None else self.dialect.trace(trace)
        channel = self._channel
        if channel is None or self._machine.state is not State.CONNECTED:
            raise ConnectionLostError(self.errno or 0, f"service {self.name} is not connected")
        if waiter is None:
            session = self._calls.next_session()
        else:
            graphs = self._graphs  # empty for v0.11 tables: no lookup on that hot path
            default = self._default_graph
            graph = graphs.get(method_id, default) if graphs else default
            session = self._calls.open(graph).session
            self._waiters[session] = waiter
        call = self.dialect.call
        channel.send(session, call(session, method_id, args, traced))
        ids = self._upstream.get(method_id) if self._upstream else None
        if ids is not None:
            write, close = ids
            if write is not None:
                for chunk in upstream:
                    channel.send(session, call(session, write, chunk))
            if close is not None:
                channel.send(session, call(session, close, []))
        return session

    def mute(self, method_id: int) -> bool:
        """Whether the method never answers (its downstream protocol is empty)."""
        return method_id in self._mute

    def notify(self, method_id: int, args: Sequence[Any]) -> bool:
        """Send a call whose reply nobody waits for (logging.emit); False if not connected."""
        if self._machine.state is not State.CONNECTED:
            return False
        self._send(method_id, args, None)
        return True

    async def call(
        self,
        method_id: int,
        args: Sequence[Any],
        *,
        method: str = "?",
        timeout: float | None = None,
        trace: tuple[int, int, int] | None = None,
    ) -> list[bytes]:
        """Call a method and gather its reply chunks (raw, not unpacked); `trace` (v0.12:
        trace_id, span_id, parent_id) rides in the call's headers.

        Raises:
            ServiceError: the service answered with an error.
            ServiceTimeoutError: no complete reply within `timeout` (default: the service's).
            ConnectionLostError: the connection dropped before the reply ended.
            ServiceUnavailableError: the service cannot be reached.
        """
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        if self._machine.state is not State.CONNECTED:
            await self._connect_within(method, limit)
        if self._mute and method_id in self._mute:
            self._send(method_id, args, None, trace=trace)
            return []
        waiter = _Unary(loop.create_future(), method)
        session = self._send(method_id, args, waiter, trace=trace)
        waiter.timer = loop.call_at(deadline, self._expire, session, method, limit)
        return await waiter.future

    async def _connect_within(self, method: str, limit: float) -> None:
        try:
            await asyncio.wait_for(self.connect(), limit)
        except asyncio.TimeoutError:
            raise ServiceTimeoutError(
                f"{self.name}.{method}: not connected within {limit} s"
            ) from None

    def _expire(self, session: int, method: str, limit: float) -> None:
        waiter = self._waiters.pop(session, None)
        self._calls.forget(session)
        if waiter is not None:
            exc = ServiceTimeoutError(f"{self.name}.{method} timed out after {limit} s")
            waiter.end(Reply(session), exc)

    async def open_stream(
        self,
        method_id: int,
        args: Sequence[Any],
        *,
        method: str = "?",
        timeout: float | None = None,
        upstream: Sequence[Sequence[Any]] = (),
        trace: tuple[int, int, int] | None = None,
    ) -> tuple[int, _Stream]:
        """Start a streaming call; read it with `next_chunk`. `upstream`, `trace`: see
        `_send`."""
        limit = self.timeout if timeout is None else timeout
        if self._machine.state is not State.CONNECTED:
            await self._connect_within(method, limit)
        stream = _Stream(method)
        return self._send(method_id, args, stream, upstream, trace), stream

    async def next_chunk(
        self, session: int, stream: _Stream, *, method: str = "?", timeout: float | None = None
    ) -> bytes | None:
        """The next chunk of a stream, None at its end; `timeout` bounds the wait for it."""
        limit = self.timeout if timeout is None else timeout
        while not stream.items:
            stream.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(stream.waiter, limit)
            except asyncio.TimeoutError:
                self._waiters.pop(session, None)
                self._calls.forget(session)
                raise ServiceTimeoutError(
                    f"{self.name}.{method}: no reply for {limit} s"
                ) from None
            finally:
                stream.waiter = None
        item = stream.items.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel_stream(self, session: int) -> None:
        """Stop listening to a stream (its later replies are ignored)."""
        self._waiters.pop(session, None)
        self._calls.forget(session)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.state.value} at {self.endpoint}>"


__all__ = ["BaseService", "DEFAULT_TIMEOUT", "State"]
