# Strategy: the cluster side of the proxy, built on the services client. Each app gets an
# AppPool: the endpoints its service has, as the locators say (every locator is asked, so two
# runtimes behind two locators are one cluster; their endpoints are pooled together), and per
# endpoint up to `pool_size` AppConnections (BaseService, one TCP connection each, many
# sessions on it). A session goes to the endpoint with the least sessions, turns taken among
# equals, and on it to the least loaded connection; a new connection is opened in the
# background when every one of that endpoint is busy. The request is the app service's
# `enqueue` (v0.11 `[event, frame]`; v0.12 `[event]` and an upstream `write [frame]`, `close`:
# the dialect and the method table say which). Replies are pushed to the front's Reply as they
# arrive (no task per request): a chunk goes out at once.
#
# Failures: a connect that fails drops the endpoint and the session is retried on another one
# (nothing was sent); a connection that dies drops its endpoint (the locators are asked again
# on the next request) and fails its sessions with 502, since the app may have run them; "the
# queue is full" before any chunk is retried on another connection, preferring another
# endpoint, up to `retries` times, then answered 503. "The app has been stopped" before any
# chunk (v0.12: a connection opened before a redeploy still reaches the stopped app, which
# refuses every enqueue, while the new one listens elsewhere) retires that endpoint, asks the
# locators again and sends the request once more; refused so again, it is a 503. Both refusals
# mean no worker saw the request (`refusal`, the one place of that rule). A locator that knows
# no such service is a 404 once every locator has answered so; no locator and no endpoint
# reachable is a 502.
# Endpoints are re-resolved every `resolve_ttl` seconds too, so a runtime that comes back is
# used again.
#
# Back-pressure (the front's rule, docs/proxy.md "Bounds"): a session may pause its connection
# only while it is the connection's only session; a new session is placed on a paused
# connection only when no other is free, and then the paused session gives way (it fails).
"""The proxy's upstream: app services of a Cocaine cluster, resolved through the locators."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from ..aio.endpoint import Endpoint
from ..errors import (
    ChannelError,
    CocaineError,
    ConnectionLostError,
    RemoteProtocolError,
    ServiceError,
    ServiceNotFoundError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)
from ..protocol.dialect import APP_STOPPED, V0_11, Dialect
from ..protocol.service import Reply as CallReply
from ..protocol.service import State, table_methods
from ..services.base import BaseService, _Stream
from ..services.client import Client
from ..services.policy import NoReconnect
from .connection import Reply

log = logging.getLogger("cocaine_http.proxy.upstream")

#: The runtime's refusal of a session when the app's queue is full (v0.11 error code 2, the
#: v0.12 overseer's category 0x52FF code 1).
QUEUE_FULL = "the queue is full"
_QUEUE_FULL_V012 = (0x52FF, 1)
#: The start of the v0.12 node's message for a stopped app, when it sends one (v0.12.14 sends
#: none: dialect.APP_STOPPED). It keeps such connections open, so this answer is all that
#: tells the proxy the endpoint is stale.
STOPPED = "the application has been stopped"
#: The v0.11 engine's other refusals of a session (docs/protocol.md §7.1): it is not running.
REFUSALS = frozenset({"the engine is not active", "engine is shutting down",
                      "the engine is shutting down"})
#: The v0.11 engine's error for a session whose worker missed its heartbeats.
TIMED_OUT = "slave has timed out"


class Refusal(Enum):
    """A session the runtime refused before handing it to a worker: the request is sent
    again, since no worker saw it."""

    #: the app is busy at that endpoint: another connection, up to `retries` times
    QUEUE_FULL = "queue full"
    #: the endpoint serves the app no more: retired, the locators asked again, sent once more
    STOPPED = "stopped"


def refusal(category: int | None, code: int, message: str) -> Refusal | None:
    """Which refusal an error is, None when it is the app's own or its worker's (those are
    answered, not retried: a worker may have run the request)."""
    if QUEUE_FULL in message or (category, code) == _QUEUE_FULL_V012:
        return Refusal.QUEUE_FULL
    if (category, code) == APP_STOPPED and (not message or message.startswith(STOPPED)):
        return Refusal.STOPPED
    return None


def is_queue_full(exc: ServiceError) -> bool:
    return refusal(exc.category, exc.code, exc.message) is Refusal.QUEUE_FULL


class _Session(_Stream):
    """One request's enqueue on an AppConnection: replies go straight to the front's Reply."""

    __slots__ = ("connection", "reply", "event", "frame", "tried", "answered", "over",
                 "session", "flow", "resent")

    def __init__(self, connection: AppConnection, reply: Reply, event: str,
                 frame: bytes | bytearray, tried: list[AppConnection],
                 resent: bool = False) -> None:
        super().__init__("enqueue")
        self.connection = connection
        self.reply = reply
        self.event = event
        self.frame = frame
        self.tried = tried
        self.answered = False
        self.over = False
        self.session = 0
        self.flow: ConnectionFlow | None = None
        #: sent again already after its endpoint was found stopped (once at most)
        self.resent = resent

    def chunk(self, reply: CallReply) -> None:
        data = reply.chunks.pop()
        if type(data) is list:  # v0.12: the message's arguments
            data = data[0] if data else b""
        self.answered = True
        self.reply.on_chunk(data)

    def end(self, reply: CallReply, exc: BaseException | None) -> None:
        if not self._leave():
            return
        if exc is None:
            self.reply.on_choke()
        elif isinstance(exc, ServiceError):
            kind = None if self.answered else refusal(exc.category, exc.code, exc.message)
            if kind is Refusal.QUEUE_FULL:
                self.connection.pool.queue_full(self)
            elif kind is Refusal.STOPPED:
                self.connection.pool.stopped(self)
            else:
                self.reply.on_error(exc.code, exc.message, exc.category)
        else:
            self.reply.fail(502, f"the connection to the app was lost: {exc}")

    def cancel(self) -> None:
        """The client went away (or the front timed out): forget the session."""
        if self._leave():
            self.connection.cancel_stream(self.session)

    def _leave(self) -> bool:
        if self.over:
            return False
        self.over = True
        connection = self.connection
        connection.sessions -= 1
        if self.flow is not None:
            self.flow.resume()
        if connection.retired and not connection.sessions:
            connection.close()
        return True


class ConnectionFlow:
    """Back-pressure of one session on its AppConnection (the front's Flow)."""

    __slots__ = ("connection", "paused", "on_shared")

    def __init__(self, connection: AppConnection) -> None:
        self.connection = connection
        self.paused = False
        self.on_shared: Callable[[], None] | None = None

    def pause(self) -> bool:
        connection = self.connection
        channel = connection._channel
        if channel is None or connection.sessions > 1:
            return False
        if not self.paused:
            self.paused = True
            connection.holder = self
            channel.pause_reading()
            log.info("connection to %s paused: its client reads slower than the app writes",
                     connection.endpoint)
        return True

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        connection = self.connection
        if connection.holder is self:
            connection.holder = None
        if connection._channel is not None:
            connection._channel.resume_reading()

    def shared(self) -> None:
        if self.on_shared is not None:
            self.on_shared()
        self.resume()


class AppConnection(BaseService):
    """One connection to an endpoint of an app service; many sessions share it."""

    def __init__(self, pool: AppPool, endpoint: Endpoint, methods: Any,
                 dialect: Dialect) -> None:
        super().__init__(pool.name, endpoint, dialect=dialect, policy=NoReconnect())
        self.pool = pool
        self.protocols = table_methods(methods)
        names = {m.name: mid for mid, m in self.protocols.items()}
        if "enqueue" not in names:
            raise RemoteProtocolError(f"service {pool.name} has no enqueue: not an app")
        self.enqueue_id = names["enqueue"]
        self.streamed = self._upstream.get(self.enqueue_id) is not None
        self.sessions = 0
        self.holder: ConnectionFlow | None = None
        #: out of the pool (its endpoint serves a stopped app): closed once its sessions end
        self.retired = False

    def start(self, session: _Session) -> None:
        """Send the enqueue of `session` (a connection lost meanwhile fails it with 502)."""
        hold = self.holder
        if hold is not None:
            hold.shared()  # the new session must not wait behind a slow client
        try:
            if self.streamed:
                session.session = self._send(self.enqueue_id, [session.event], session,
                                             [[session.frame]])
            else:
                session.session = self._send(self.enqueue_id, [session.event, session.frame],
                                             session)
        except ConnectionLostError as exc:
            session.over = True
            session.reply.fail(502, f"the connection to the app was lost: {exc}")
            return
        self.sessions += 1
        session.flow = ConnectionFlow(self)
        session.reply.attach_flow(session.flow)
        session.reply.on_cancel = session.cancel

    @property
    def usable(self) -> bool:
        return self.state is State.CONNECTED


class AppPool:
    """The endpoints of one app and their connections."""

    def __init__(self, upstream: ClusterUpstream, name: str) -> None:
        self.upstream = upstream
        self.name = name
        #: endpoint -> (method table, its connections)
        self.endpoints: dict[Endpoint, tuple[Any, list[AppConnection]]] = {}
        self.resolved_at = -1.0
        self._resolving: asyncio.Task[None] | None = None
        self._turn = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- choosing a connection -------------------------------------------------------------------

    def pick(self, avoid: Sequence[AppConnection] = ()) -> AppConnection | None:
        """The connected connection for the next session, or None (none connected)."""
        ranked: list[tuple[int, int, int, AppConnection]] = []
        turn = next(self._turn)
        size = len(self.endpoints) or 1
        for index, (endpoint, (_, connections)) in enumerate(list(self.endpoints.items())):
            live = [c for c in connections if c.usable]
            if not live:
                self._grow(endpoint, connections)  # a new endpoint, or one reconnecting
                continue
            best = min(live, key=lambda c: (c.holder is not None, c.sessions))
            tried = best in avoid
            load = sum(c.sessions for c in live)
            ranked.append((int(tried) * 2 + int(best.holder is not None), load,
                           (index - turn) % size, best))
            if best.sessions and len(connections) < self.upstream.pool_size:
                self._grow(endpoint, connections)
        if not ranked:
            return None
        return min(ranked, key=lambda r: r[:3])[3]

    def _grow(self, endpoint: Endpoint, connections: list[AppConnection]) -> None:
        """Open one more connection to `endpoint` in the background (one at a time)."""
        if any(c.state is State.CONNECTING for c in connections):
            return
        methods, _ = self.endpoints[endpoint]
        connection = self._open(endpoint, methods)
        self._spawn(self._connect(connection))

    def _open(self, endpoint: Endpoint, methods: Any) -> AppConnection:
        connection = AppConnection(self, endpoint, methods, self.upstream.dialect)
        self.endpoints[endpoint][1].append(connection)
        connection.add_listener(lambda old, new: self._changed(connection, new))
        return connection

    async def _connect(self, connection: AppConnection) -> bool:
        try:
            await asyncio.wait_for(connection.connect(), self.upstream.timeout)
        except (ChannelError, ServiceUnavailableError, asyncio.TimeoutError) as exc:
            log.warning("app %s: cannot connect to %s: %s", self.name, connection.endpoint,
                        exc or "timed out")
            self._drop_endpoint(connection.endpoint)
            return False
        return True

    def _changed(self, connection: AppConnection, new: State) -> None:
        if new is State.ERROR:
            log.warning("app %s: the connection to %s was lost", self.name, connection.endpoint)
            self._drop_endpoint(connection.endpoint)

    def _retire_endpoint(self, endpoint: Endpoint) -> None:
        """Take a stale endpoint out of the pool; its connections close as their sessions end
        (each gets its own refusal and is sent again)."""
        entry = self.endpoints.pop(endpoint, None)
        if entry is None:
            return
        self.resolved_at = -1.0
        for connection in entry[1]:
            connection.retired = True
            if not connection.sessions:
                connection.close()

    def _drop_endpoint(self, endpoint: Endpoint | None) -> None:
        entry = self.endpoints.pop(endpoint, None) if endpoint is not None else None
        if entry is None:
            return
        self.resolved_at = -1.0  # ask the locators again on the next request
        for connection in entry[1]:
            if connection.state is not State.ERROR:
                connection.close()

    # -- sessions --------------------------------------------------------------------------------

    def send(self, event: str, frame: bytes | bytearray, reply: Reply,
             tried: list[AppConnection] | None = None, resent: bool = False) -> None:
        tried = tried if tried is not None else []
        if self.endpoints and time.monotonic() - self.resolved_at > self.upstream.resolve_ttl:
            self._spawn(self._refresh())
        connection = self.pick(tried)
        if connection is not None and (connection not in tried or not self._more(tried)):
            tried.append(connection)
            connection.start(_Session(connection, reply, event, frame, tried, resent))
            return
        self._spawn(self._send_later(event, frame, reply, tried, resent))

    def _more(self, tried: list[AppConnection]) -> bool:
        """Whether a connection not tried yet exists or may be opened."""
        return any(c not in tried for _, cs in self.endpoints.values() for c in cs) or any(
            len(cs) < self.upstream.pool_size for _, cs in self.endpoints.values())

    async def _send_later(self, event: str, frame: bytes | bytearray, reply: Reply,
                          tried: list[AppConnection], resent: bool = False) -> None:
        try:
            connection = await self._connection(tried)
        except ServiceNotFoundError as exc:
            reply.fail(404, f"no such app: {exc}")
            return
        except ServiceTimeoutError as exc:
            reply.fail(504, f"the cluster did not answer in time: {exc}")
            return
        except (ServiceUnavailableError, ChannelError, RemoteProtocolError) as exc:
            reply.fail(502, f"the app cannot be reached: {exc}")
            return
        except Exception as exc:  # a bug must still answer the client, and show in the log
            log.exception("app %s: cannot place a request", self.name)
            reply.fail(502, f"the app cannot be reached: {exc}")
            return
        if reply.finished:
            return
        tried.append(connection)
        connection.start(_Session(connection, reply, event, frame, tried, resent))

    async def _connection(self, tried: list[AppConnection]) -> AppConnection:
        """A connected connection, resolving and connecting as needed."""
        for _ in range(3):  # resolve, connect; again if every endpoint refused
            if not self.endpoints:
                await self.resolve()
            connection = self.pick(tried)
            if connection is not None and connection not in tried:
                return connection
            for endpoint, (methods, connections) in list(self.endpoints.items()):
                if len(connections) >= self.upstream.pool_size and all(
                        c in tried for c in connections):
                    continue
                fresh = [c for c in connections if c.state is State.CONNECTING]
                candidate = fresh[0] if fresh else self._open(endpoint, methods)
                if await self._connect(candidate) and candidate.usable:
                    return candidate
            if connection is not None:
                return connection  # every connection tried: the last chance goes to the best
        raise ServiceUnavailableError(f"no endpoint of {self.name} accepts connections")

    def queue_full(self, session: _Session) -> None:
        """The app refused the session: try another connection, else answer 503."""
        if len(session.tried) > self.upstream.retries or session.reply.finished:
            session.reply.fail(503, QUEUE_FULL)
            return
        log.info("app %s: the queue is full at %s; trying elsewhere", self.name,
                 session.connection.endpoint)
        if not self._more(session.tried) and len(self.endpoints) <= 1:
            session.reply.fail(503, QUEUE_FULL)
            return
        self.send(session.event, session.frame, session.reply, session.tried, session.resent)

    def stopped(self, session: _Session) -> None:
        """The session's endpoint serves a stopped app: retire it, ask the locators again and
        send the request once more (a second refusal is answered 503)."""
        endpoint = session.connection.endpoint
        if endpoint is not None:
            self._retire_endpoint(endpoint)
        if session.resent or session.reply.finished:
            session.reply.fail(503, STOPPED)
            return
        log.info("app %s: %s serves a stopped app; asking the locators again", self.name,
                 endpoint)
        self.send(session.event, session.frame, session.reply, session.tried, resent=True)

    # -- resolving -------------------------------------------------------------------------------

    async def resolve(self) -> None:
        """Ask every locator (single-flight); keeps the connections of endpoints still there.

        Raises:
            ServiceNotFoundError: every locator that answered does not know the app.
            ServiceUnavailableError, ServiceTimeoutError: no endpoint and no answer.
        """
        task = self._resolving
        if task is None or task.done():
            task = self._resolving = asyncio.get_running_loop().create_task(self._resolve())
        await asyncio.shield(task)

    async def _refresh(self) -> None:
        """Re-resolve in the background; the endpoints in use serve meanwhile."""
        self.resolved_at = time.monotonic()  # one refresh at a time
        try:
            await self.resolve()
        except ServiceNotFoundError:
            log.warning("app %s: the locators no longer know it", self.name)
            for endpoint in list(self.endpoints):
                self._drop_endpoint(endpoint)
        except Exception as exc:  # the endpoints in use stay; the next refresh tries again
            log.info("app %s: cannot refresh its endpoints: %s", self.name, exc)

    async def _resolve(self) -> None:
        results = await asyncio.gather(
            *(self._resolve_at(client) for client in self.upstream.clients),
            return_exceptions=True)
        found: dict[Endpoint, Any] = {}
        errors: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                errors.append(result)
            else:
                found.setdefault(result[0], result[1])
        if not found:
            self.resolved_at = -1.0
            if errors and all(isinstance(e, ServiceNotFoundError) for e in errors):
                raise errors[0]
            if any(isinstance(e, ServiceUnavailableError) for e in errors):
                raise ServiceUnavailableError("; ".join(str(e) for e in errors))
            raise errors[0] if errors else ServiceUnavailableError("no locator")
        for endpoint in [e for e in self.endpoints if e not in found]:
            self._drop_endpoint(endpoint)
        for endpoint, methods in found.items():
            if endpoint not in self.endpoints:
                self.endpoints[endpoint] = (methods, [])
        self.resolved_at = time.monotonic()

    async def _resolve_at(self, client: Client) -> tuple[Endpoint, Any]:
        client.forget(self.name)
        try:
            found = await client.resolve(self.name, timeout=self.upstream.timeout)
        except ServiceError as exc:  # an answer, but not a resolve result
            raise ServiceUnavailableError(str(exc)) from exc
        if "enqueue" not in {m.name for m in table_methods(found.methods).values()}:
            raise ServiceNotFoundError(self.name, f"{self.name} is a service, not an app")
        host, port = found.endpoint
        return Endpoint(host=host, port=port), found.methods

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._resolving is not None:
            self._resolving.cancel()
        for _, connections in self.endpoints.values():
            for connection in connections:
                connection.close()
        self.endpoints.clear()


class ClusterUpstream:
    """The front's Upstream for a Cocaine cluster.

    Args:
        locators: "host:port" of each locator (IPv6 as "[::1]:10053"); each is asked.
        dialect: v0.11 (protocol 0) or v0.12 (protocol 1).
        pool_size: most connections per app endpoint.
        retries: how many more connections a session refused with "the queue is full" tries.
        timeout: seconds for a resolve or a connect.
        resolve_ttl: seconds an app's endpoints are used before the locators are asked again.
    """

    def __init__(self, locators: Sequence[str], *, dialect: Dialect = V0_11,
                 pool_size: int = 4, retries: int = 2, timeout: float = 5.0,
                 resolve_ttl: float = 10.0) -> None:
        if not locators:
            raise ValueError("at least one locator is needed")
        self.locators = list(locators)
        self.dialect = dialect
        self.raw_body = dialect.raw_body
        self.pool_size = max(1, pool_size)
        self.retries = retries
        self.timeout = timeout
        self.resolve_ttl = resolve_ttl
        self.clients = [Client(locator, protocol=dialect, timeout=timeout)
                        for locator in self.locators]
        self.pools: dict[str, AppPool] = {}

    def send(self, service: str, event: str, frame: bytes | bytearray, reply: Reply) -> None:
        pool = self.pools.get(service)
        if pool is None:
            pool = self.pools[service] = AppPool(self, service)
        try:
            pool.send(event, frame, reply)
        except CocaineError as exc:  # the client gets an answer whatever went wrong here
            log.error("app %s: cannot place a request: %s", service, exc)
            reply.fail(502, f"the app cannot be reached: {exc}")

    def status_for_error(self, code: int, message: str) -> int:
        """The status of an error the runtime or the app answered before the head
        (docs/proxy.md "Error mapping"): 503 when the runtime refuses the session (a full
        queue, after the retries; an engine that is not running), 504 for a worker that missed
        its heartbeats, 502 for anything else (the app failed, its worker died). A stopped app
        is answered 503 by `AppPool.stopped`."""
        if QUEUE_FULL in message or message in REFUSALS:
            return 503
        if message == TIMED_OUT:
            return 504
        return 502

    async def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
        for client in self.clients:
            await client.close()


__all__ = ["AppConnection", "AppPool", "ClusterUpstream", "ConnectionFlow", "QUEUE_FULL",
           "Refusal", "STOPPED", "is_queue_full", "refusal"]
