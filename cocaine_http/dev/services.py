# Strategy: each dev service is a `_Server`: a method table {id: (MethodProtocol, handler)}
# served on its own 127.0.0.1 TCP port with raw Channels, in the dialect of the runtime it
# imitates; every frame it writes comes from the Dialect (`service_value`, `from_runtime`, ...).
# v0.11 (docs/protocol.md §4.1, §9 item 9, §12): native results are double-encoded (one chunk
# holding one msgpack value, then choke), void methods answer choke only, an unknown method id or
# a handler that raises answers error(1, text) + choke. v0.12 (docs/v012.md): a call opens a
# channel, its return values are the arguments of one value message, errors are [category, code]
# and end the call, an unbound method or a reused channel drops the connection, every frame
# carries the headers element. App services are the exception: enqueue forwards the worker's
# chunks untouched and an engine failure as an error without choke, like the runtime; under v0.12
# the request arrives as upstream writes after the call and is enqueued once the client closes it.
#
# The locator listens on 10053 unless told otherwise, falling back to an OS-assigned port (and
# saying so) when that is busy; resolve answers in the dialect's layout (`resolve_answer`). App
# services registered after start() come up in the background; resolve waits for them.
"""DevServices: locator, logging, storage, node and app services of the dev runtime, on TCP."""

from __future__ import annotations

import asyncio
import collections
import errno as errnos
import inspect
import json
import logging
import os
import urllib.parse
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from ..aio.channel import Channel, serve
from ..codec.hpack import Trace
from ..protocol.dialect import (APP_STOPPED, SERVICE_NOT_AVAILABLE, STREAM_GRAPH, V0_11,
                                VALUE_GRAPH, Buffer, Dialect, Kind, pack)
from ..protocol.service import MethodProtocol
from .engine import ALREADY_RUNNING, STARTED

log = logging.getLogger("cocaine_http.dev.services")
service_log = logging.getLogger("cocaine_http.dev.logging")
#: Bytes of an app session's reply queued for its caller before its worker is paused.
SINK_BUFFER = 4 * 1024 * 1024
#: Bytes queued past which a session whose worker cannot be paused (it has other sessions) is
#: dropped: a caller that stopped reading must not make the runtime hold a whole response.
SINK_LIMIT = 4 * SINK_BUFFER

#: cocaine v0.11 level -> Python level for the messages the logging service prints.
_PY_LEVELS = {0: logging.DEBUG, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO,
              4: logging.DEBUG}
#: [category, code] of a v0.12 dev service whose handler failed for a reason without one of
#: its own (category "unknown"; the runtime's own services fail in their own categories).
FAILED = (0xFF, 1)
#: v0.12 node errors [node plugin `include/cocaine/idl/node.hpp`]: category and codes.
NODE_CATEGORY = 0x51FF
NODE_ALREADY_STARTED, NODE_NOT_RUNNING, NODE_SPOOL_ERROR = 5, 6, 7


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


class ServiceFailure(Exception):
    """A handler's failure with its v0.12 [category, code] (v0.11 sends code 1)."""

    def __init__(self, message: str, category_code: tuple[int, int] = FAILED) -> None:
        super().__init__(message)
        self.category_code = category_code


class Reply:
    """The answer to one call, framed by the service's dialect."""

    __slots__ = ("channel", "session", "dialect", "finished", "trace")

    def __init__(self, channel: Channel, session: int, dialect: Dialect = V0_11,
                 trace: Trace | None = None) -> None:
        self.channel = channel
        self.session = session
        self.dialect = dialect
        self.finished = False
        #: the call's trace (v0.12), continued on every frame of the answer as the runtime does
        self.trace = trace

    def _send(self, frame: Buffer | list[Buffer]) -> None:
        self.channel.send(self.session, frame)

    def write(self, data: bytes) -> None:
        """One data message of a streamed answer (v0.11 chunk, v0.12 write)."""
        dialect = self.dialect
        self._send(dialect.from_runtime((dialect.chunk_header(self.session, len(data)), data),
                                        self.trace))

    def value(self, *values: Any) -> None:
        """The method's return values (none for a void method); the call ends."""
        if not self.finished:
            self.finished = True
            self._send(self.dialect.service_value(self.session, values, self.trace))

    def done(self) -> None:
        """A void method's answer."""
        self.value()

    def close(self) -> None:
        """The end of a streamed answer (v0.11 choke, v0.12 close)."""
        if not self.finished:
            self.finished = True
            self._send(self.dialect.from_runtime(self.dialect.choke(self.session), self.trace))

    def error(self, code: int, message: str, category: int | None = None) -> None:
        """An error that ends the answer; v0.11 sends no choke after it (engine failures,
        docs/protocol.md §9 item 7)."""
        self.finished = True
        self._send(self.dialect.from_runtime(self._error(code, message, category), self.trace))

    def fail(self, code: int, message: str, category: int | None = None) -> None:
        """How services report failures: the error, then (v0.11) a choke."""
        self.finished = True
        dialect = self.dialect
        frames = dialect.from_runtime(self._error(code, message, category), self.trace)
        if not dialect.error_ends_stream:
            frames += dialect.from_runtime(dialect.choke(self.session), self.trace)
        self._send(frames)

    def failure(self, exc: BaseException) -> None:
        """A handler's exception as a failure: code 1 (v0.11), or its [category, code]."""
        pair = exc.category_code if isinstance(exc, ServiceFailure) else FAILED
        code, category = self.dialect.engine_error_code(1, pair)
        self.fail(code, str(exc) or type(exc).__name__, category)

    def _error(self, code: int, message: str, category: int | None) -> bytes:
        if category is None:
            return self.dialect.error(self.session, code, message)
        return self.dialect.error(self.session, code, message, category)


class Upstream(Protocol):
    """What a call that takes upstream messages (v0.12 enqueue) is told of them."""

    def on_write(self, data: Any) -> None: ...

    def on_error(self, args: list[Any]) -> None: ...

    def on_close(self) -> None: ...

    def on_gone(self) -> None:
        """The client's connection went away before the upstream was closed."""


Handler = Callable[[list[Any], Reply], "Awaitable[None] | Upstream | None"]


class _Server:
    """One service on a TCP port, in one dialect."""

    def __init__(self, name: str, methods: dict[int, tuple[MethodProtocol, Handler | None]],
                 dialect: Dialect = V0_11, version: int = 1,
                 max_message_size: int | None = None) -> None:
        self.name = name
        self.dialect = dialect
        self.version = version
        self.max_message_size = max_message_size
        self.methods = methods
        #: what resolve lists: every method, with the dialect's extras (v0.12 control)
        self.protocol = {mid: m for mid, (m, _) in methods.items()} | dialect.service_extras
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._channels: set[Channel] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready: asyncio.Future[None] | None = None

    async def start(self, host: str, port: int = 0) -> None:
        server = await serve((host, port), self._on_channel, dialect=self.dialect, raw=True,
                             max_message_size=self.max_message_size)
        self._server = server
        # uvloop's server is not an asyncio.Server subclass, but has the same `sockets`.
        self.port = cast(asyncio.Server, server).sockets[0].getsockname()[1]

    def _on_channel(self, channel: Channel) -> None:
        self._channels.add(channel)
        router = self.dialect.call_router()
        upstreams: dict[int, Upstream] = {}

        def on_message(mid: int, session: int, args: list[Any]) -> None:
            kind = router.route(mid, session)
            if kind is Kind.INVOKE:
                self._dispatch(channel, mid, session, args, router, upstreams)
            elif kind is Kind.OTHER:
                log.warning("%s: message %d on channel %d, which is not open; dropping the "
                            "connection", self.name, mid, session)
                self._drop(channel, upstreams)
            else:
                self._upstream(upstreams, kind, session, args)

        channel.on_message = on_message
        channel.on_socket_error = lambda errno: self._drop(channel, upstreams)

    def _drop(self, channel: Channel, upstreams: dict[int, Upstream]) -> None:
        self._channels.discard(channel)
        channel.close()
        gone = list(upstreams.values())
        upstreams.clear()
        for upstream in gone:  # calls whose client left before closing their upstream
            try:
                upstream.on_gone()
            except Exception:
                log.exception("%s: upstream handler failed", self.name)

    def _upstream(self, upstreams: dict[int, Upstream], kind: Kind, session: int,
                  args: list[Any]) -> None:
        target = upstreams.get(session)
        if target is None:
            return
        try:
            if kind is Kind.CHUNK:
                target.on_write(args[0] if args else b"")
                return
            del upstreams[session]
            if kind is Kind.ERROR:
                target.on_error(args)
            else:
                target.on_close()
        except Exception:
            log.exception("%s: upstream handler failed", self.name)

    def _dispatch(self, channel: Channel, mid: int, session: int, args: list[Any],
                  router: Any, upstreams: dict[int, Upstream]) -> None:
        reply = Reply(channel, session, self.dialect, channel.trace)
        entry = self.methods.get(mid)
        if entry is None or entry[1] is None:
            if self.dialect.drops_unknown_method:
                log.warning("%s: no method %d; dropping the connection", self.name, mid)
                self._drop(channel, upstreams)
            else:
                reply.fail(1, "unknown message type")
            return
        method, handler = entry
        assert handler is not None
        try:
            result = handler(args, reply)
        except Exception as exc:
            reply.failure(exc)
            return
        if method.upstream_id("write") is not None and result is not None \
                and not inspect.isawaitable(result):
            router.keep(session)
            upstreams[session] = result
        elif inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._finish(result, reply))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _finish(self, pending: Awaitable[None], reply: Reply) -> None:
        try:
            await pending
        except Exception as exc:
            reply.failure(exc)

    def retire(self, enqueue: Handler) -> None:
        """Take no more connections, and answer calls of method 0 (an app's enqueue) on the
        open ones with `enqueue` (v0.12's stopped app)."""
        if self._server is not None:
            self._server.close()
        self.methods[0] = (self.methods[0][0], enqueue)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for channel in list(self._channels):
            channel.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None


# -- storage backends --------------------------------------------------------------------------


class StorageError(ServiceFailure):
    """A storage failure; its text goes back to the client as error(1, text) (v0.11) or
    with its [category, code] (v0.12)."""


def _not_found(namespace: str, key: str) -> StorageError:
    # v0.12's files storage: errno ENOENT (category 12) [CORE12 `src/storage/files.cpp`]
    return StorageError(f"the specified object has not been found: {namespace}/{key}",
                        (12, errnos.ENOENT))


class MemoryStorage:
    """Storage in a dict: {(namespace, key): (blob, tags)}."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, list[str]]] = {}

    def read(self, namespace: str, key: str) -> bytes:
        try:
            return self.objects[(namespace, key)][0]
        except KeyError:
            raise _not_found(namespace, key) from None

    def write(self, namespace: str, key: str, blob: bytes, tags: list[str]) -> None:
        self.objects[(namespace, key)] = (blob, list(tags))

    def remove(self, namespace: str, key: str) -> None:
        if self.objects.pop((namespace, key), None) is None:
            raise _not_found(namespace, key)

    def find(self, namespace: str, tags: list[str]) -> list[str]:
        wanted = set(tags)
        return sorted(k for (ns, k), (_, t) in self.objects.items()
                      if ns == namespace and wanted <= set(t))


class DirectoryStorage:
    """Storage under a directory: `<root>/<namespace>/<quoted key>`, tags in `<root>/.tags`."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def _paths(self, namespace: str, key: str) -> tuple[str, str]:
        ns, k = urllib.parse.quote(namespace, safe=""), urllib.parse.quote(key, safe="")
        return os.path.join(self.root, ns, k), os.path.join(self.root, ".tags", ns, k)

    def read(self, namespace: str, key: str) -> bytes:
        try:
            with open(self._paths(namespace, key)[0], "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise _not_found(namespace, key) from None

    def write(self, namespace: str, key: str, blob: bytes, tags: list[str]) -> None:
        data, meta = self._paths(namespace, key)
        for path, content in ((data, blob), (meta, json.dumps(list(tags)).encode())):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(content)
            os.replace(tmp, path)

    def remove(self, namespace: str, key: str) -> None:
        data, meta = self._paths(namespace, key)
        try:
            os.unlink(data)
        except FileNotFoundError:
            raise _not_found(namespace, key) from None
        if os.path.exists(meta):
            os.unlink(meta)

    def find(self, namespace: str, tags: list[str]) -> list[str]:
        ns = urllib.parse.quote(namespace, safe="")
        folder = os.path.join(self.root, ".tags", ns)
        wanted, keys = set(tags), []
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".tmp"):
                continue
            with open(os.path.join(folder, name), "rb") as f:
                if wanted <= set(json.loads(f.read())):
                    keys.append(urllib.parse.unquote(name))
        return keys


# -- the services ------------------------------------------------------------------------------


class Engine(Protocol):
    """What an app service needs from the dev engine (cocaine_http/dev/engine.py)."""

    name: str

    def enqueue(self, event: str, data: bytes, sink: Any, tag: str | None = None) -> None: ...

    def open(self, event: str, sink: Any, tag: str | None = None,
             trace: Trace | None = None) -> Any: ...

    def feed(self, session: Any, data: bytes) -> None: ...

    def end_request(self, session: Any) -> None: ...

    def abandon(self, session: Any, error: tuple[int | None, int, str] | None = None
                ) -> None: ...

    dialect: Dialect

    def info(self) -> dict[str, Any]: ...

    def info_v12(self) -> dict[str, Any]: ...


class NodeHost(Protocol):
    """What the node service asks of the dev runtime (cocaine_http/dev/runtime.py)."""

    async def start_app(self, name: str, profile: str) -> str: ...

    async def pause_app(self, name: str) -> str: ...

    def running_apps(self) -> list[str]: ...


class _Sink:
    """Forwards an engine session's replies to the caller verbatim (no double encoding).

    Back-pressure: while more than SINK_BUFFER bytes wait to be sent to the caller (a proxy
    that stopped reading for a slow client), the session's worker is paused through the
    engine's Flow, when the session is the worker's only one, until the connection drains.
    When another session needs that worker the paused one gives way, as in the front: its
    remaining replies are dropped and the caller gets an error instead."""

    __slots__ = ("reply", "flow", "dropped")

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.flow: Any = None
        self.dropped = False

    def attach_flow(self, flow: Any) -> None:
        self.flow = flow
        flow.on_shared = self._shared

    def on_chunk(self, data: bytes) -> None:
        if self.dropped:
            return
        self.reply.write(data)
        flow = self.flow
        channel = self.reply.channel
        if flow is None or flow.paused:
            return
        queued = channel.write_buffer_size()
        if queued <= SINK_BUFFER:
            return
        if flow.pause():
            task = asyncio.get_running_loop().create_task(channel.drain())
            task.add_done_callback(lambda _: flow.resume())
        elif queued > SINK_LIMIT:  # a shared worker cannot be paused: the session gives way
            self._drop()

    def _shared(self) -> None:
        if self.flow is not None and self.flow.paused:
            self._drop()

    def _drop(self) -> None:
        if not self.dropped:
            log.warning("a caller of app service reads slower than the app writes; dropping "
                        "its session")
            self.dropped = True
            code, category = self.reply.dialect.engine_error_code(2, FAILED)
            self.reply.error(code, "the caller reads slower than the app writes", category)

    def on_error(self, code: int, message: str, category: int | None = None) -> None:
        if not self.dropped:
            self.reply.error(code, message, category)

    def on_choke(self) -> None:
        if not self.dropped:
            self.reply.close()


class _Dropped:
    """The upstream of a refused v0.12 enqueue: read and dropped."""

    def on_write(self, data: Any) -> None:
        pass

    def on_error(self, args: list[Any]) -> None:
        pass

    def on_close(self) -> None:
        pass

    def on_gone(self) -> None:
        pass


def _refuse_stopped(args: list[Any], reply: Reply) -> _Dropped:
    category, code = APP_STOPPED
    reply.fail(code, "", category)
    return _Dropped()


class _Request:
    """A v0.12 enqueue's upstream, fed to the engine as it arrives: the session is queued at
    the call, each write follows the invoke to the worker, close ends the request, and a
    client that leaves (or fails its upstream) before closing it is abandoned, as the runtime
    does (the worker gets [5, 2] "End of file")."""

    def __init__(self, engine: Engine, session: Any) -> None:
        self.engine, self.session = engine, session  # session None: refused, already answered

    def on_write(self, data: Any) -> None:
        if self.session is not None:
            self.engine.feed(self.session, data if isinstance(data, bytes)
                             else _text(data).encode())

    def on_error(self, args: list[Any]) -> None:
        log.info("the client failed its request: %.80r", args)
        if self.session is not None:  # the runtime forwards the client's error as it is
            self.engine.abandon(self.session, self.engine.dialect.service_error(args))

    def on_close(self) -> None:
        if self.session is not None:
            self.engine.end_request(self.session)

    def on_gone(self) -> None:
        if self.session is not None:
            self.engine.abandon(self.session)


def _graphs(dialect: Dialect, table: dict[int, tuple[str, Any, Any]]
            ) -> dict[int, MethodProtocol]:
    """MethodProtocols of {id: (name, upstream, downstream)}; v0.11 keeps the names only."""
    if not dialect.graph_replies:
        return {mid: MethodProtocol(name) for mid, (name, _, _) in table.items()}
    return {mid: MethodProtocol(name, up, down) for mid, (name, up, down) in table.items()}


Table = dict[int, tuple[str, Any, Any]]
_V = VALUE_GRAPH
_S = STREAM_GRAPH
#: The services' methods and graphs as cocaine-runtime v0.12 resolves them (v0.11 has the
#: same ids, names only), and their protocol versions [CORE12 `include/cocaine/idl/*.hpp`].
STORAGE: Table = {0: ("read", {}, _V), 1: ("write", {}, _V), 2: ("remove", {}, _V), 3: ("find", {}, _V)}
LOGGING: Table = {0: ("emit", {}, {}), 1: ("verbosity", {}, _V), 2: ("set_verbosity", {}, _V)}
NODE_V11: Table = {0: ("start_app", {}, _V), 1: ("pause_app", {}, _V), 2: ("list", {}, _V)}
NODE: Table = {**NODE_V11, 3: ("info", {}, _V), 4: ("control", _S, _V), 5: ("enqueue", _S, _S)}
APP: Table = {0: ("enqueue", _S, _S), 1: ("info", {}, _V), 2: ("control", _S, _V)}
VERSIONS = {"locator": 3, "logging": 2}


class DevServices:
    """Locator, logging, storage, node and app services for local development.

    Args:
        host: address every service binds to and the locator reports.
        locator_port: 10053 by default; 0 picks a free port; a busy port falls back to one.
        storage_dir: keep storage under this directory (default: in memory).
        verbosity: what logging.verbosity() answers (library levels, 4 = debug; sent in the
            dialect's levels).
        dialect: V0_11, or V0_12 to speak as cocaine-runtime v0.12 does.
        message_limit: the largest call an app service reads (an enqueue carries a whole
            request body; under v0.12 a write carries it); None: the decoder's default.
    """

    def __init__(self, host: str = "127.0.0.1", locator_port: int = 10053,
                 storage_dir: str | None = None, verbosity: int = 4,
                 dialect: Dialect = V0_11, message_limit: int | None = None) -> None:
        self.host = host
        self.message_limit = message_limit
        self.locator_port = locator_port
        self.verbosity = verbosity
        self.dialect = dialect
        self.storage: MemoryStorage | DirectoryStorage = (
            DirectoryStorage(storage_dir) if storage_dir else MemoryStorage())
        #: (library level, source, message) of every emit
        self.log_records: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=10000)
        #: the attributes of each record of `log_records` (v0.12; empty in v0.11)
        self.log_attributes: collections.deque[list[Any]] = collections.deque(maxlen=10000)
        self._servers: dict[str, _Server] = {
            "logging": self._server("logging", LOGGING, {0: self._emit, 1: self._verbosity}),
            "storage": self._server("storage", STORAGE, {
                0: self._read, 1: self._write, 2: self._remove, 3: self._find}),
        }
        locator = {mid: (m.name, m.upstream, m.downstream) for mid, m in dialect.locator.items()}
        bound: dict[int, Handler] = {0: self._resolve}
        if dialect.graph_replies:  # v0.12's uuid and cluster (v0.11's ids 1-3 are others)
            bound.update({3: self._cluster, 6: self._uuid})
        self._locator = self._server("locator", locator, bound)
        self._uuid_value = str(uuidlib.uuid4())
        self._started = False
        self.node: NodeHost | None = None
        #: the services of apps stopped under v0.12, serving their old connections
        self._stopped: list[_Server] = []

    def _server(self, name: str, table: dict[int, tuple[str, Any, Any]],
                handlers: dict[int, Handler], max_message_size: int | None = None) -> _Server:
        methods = {mid: (m, handlers.get(mid))
                   for mid, m in _graphs(self.dialect, table).items()}
        if not self.dialect.graph_replies:  # v0.11 tables list only the bound methods
            methods = {mid: m for mid, m in methods.items() if m[1] is not None}
        version = VERSIONS.get(name, 1) if self.dialect.graph_replies else 1
        return _Server(name, methods, self.dialect, version, max_message_size)

    @property
    def locator_endpoint(self) -> tuple[str, int]:
        return (self.host, self._locator.port)

    @property
    def endpoints(self) -> dict[str, tuple[str, int]]:
        """Every service's (host, port), the locator included."""
        eps = {name: (self.host, s.port) for name, s in self._servers.items()}
        eps["locator"] = self.locator_endpoint
        return eps

    async def start(self) -> None:
        for server in list(self._servers.values()):
            await self._start_server(server)
        try:
            await self._locator.start(self.host, self.locator_port)
        except OSError as exc:
            if exc.errno != errnos.EADDRINUSE or self.locator_port == 0:
                raise
            await self._locator.start(self.host, 0)
            log.warning("locator port %d is busy; the locator listens on %s:%d instead",
                        self.locator_port, self.host, self._locator.port)
        self._locator.ready = asyncio.get_running_loop().create_future()
        self._locator.ready.set_result(None)
        self._started = True
        log.info("locator on %s:%d (%s)", self.host, self._locator.port, self.dialect.name)

    async def _start_server(self, server: _Server) -> None:
        server.ready = asyncio.get_running_loop().create_future()
        try:
            await server.start(self.host, 0)
        except BaseException as exc:
            server.ready.set_exception(exc)
            server.ready.exception()  # retrieved: resolve reports it
            raise
        server.ready.set_result(None)

    def serve_node(self, host: NodeHost) -> None:
        """Serve the `node` service (start_app, pause_app, list; v0.12 adds info) for
        `host`; before start() only."""
        self.node = host
        handlers: dict[int, Handler] = {0: self._start_app, 1: self._pause_app, 2: self._list}
        if self.dialect.graph_replies:
            handlers[3] = self._node_info
        table = NODE if self.dialect.graph_replies else NODE_V11
        self._servers["node"] = self._server("node", table, handlers)

    def register_app(self, engine: Engine) -> None:
        """Serve the app service `engine.name` (enqueue, info); started now if running."""
        server = self._server(engine.name, APP, {
            0: lambda args, reply: self._enqueue(engine, args, reply),
            1: lambda args, reply: reply.value(
                engine.info_v12() if self.dialect.graph_replies else engine.info()),
        }, self.message_limit)
        self._servers[engine.name] = server
        if self._started:
            task = asyncio.get_running_loop().create_task(self._start_server(server))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def unregister_app(self, name: str) -> None:
        server = self._servers.pop(name, None)
        if server is None:
            return
        if not self.dialect.graph_replies:  # v0.11 closes the app's connections
            await server.close()
            return
        # v0.12 keeps them, each enqueue refused, and publishes a new start on a new port
        server.retire(_refuse_stopped)
        self._stopped.append(server)

    async def close(self) -> None:
        await self._locator.close()
        for server in [*self._servers.values(), *self._stopped]:
            await server.close()
        self._started = False

    async def __aenter__(self) -> DevServices:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- handlers ------------------------------------------------------------------------------

    async def _resolve(self, args: list[Any], reply: Reply) -> None:
        (raw_name,) = args
        name = _text(raw_name)
        server = self._locator if name == "locator" and self.dialect.graph_replies \
            else self._servers.get(name)
        if server is None or server.ready is None:
            if self.dialect.graph_replies:  # v0.12: [10, 1], the runtime's own words
                reply.fail(SERVICE_NOT_AVAILABLE[1], "service is not available",
                           SERVICE_NOT_AVAILABLE[0])
            else:
                reply.fail(1, f"service {name} is not available")
            return
        await server.ready
        reply.value(*self.dialect.resolve_answer((self.host, server.port), server.version,
                                                 server.protocol))

    def _uuid(self, args: list[Any], reply: Reply) -> None:
        reply.value(self._uuid_value)

    def _cluster(self, args: list[Any], reply: Reply) -> None:
        reply.value({})  # no other node

    def _emit(self, args: list[Any], reply: Reply) -> None:
        wire, source, message = args[0], _text(args[1]), _text(args[2])
        if not isinstance(wire, int):
            raise TypeError("level must be an integer")
        attributes = [[_text(a[0]), *a[1:]] for a in args[3]] if len(args) > 3 else []
        level = self.dialect.library_level(wire)
        self.log_records.append((level, source, message))
        self.log_attributes.append(attributes)
        shown = " ".join(f"{_text(a[0])}={a[1]!r}" for a in attributes if len(a) == 2)
        service_log.log(_PY_LEVELS.get(level, logging.DEBUG), "%s: %s%s", source, message,
                        f" [{shown}]" if shown else "")
        if self.dialect.graph_replies:
            return  # v0.12 emit is mute: no answer at all
        reply.done()

    def _verbosity(self, args: list[Any], reply: Reply) -> None:
        reply.value(self.dialect.log_level(self.verbosity))

    def _read(self, args: list[Any], reply: Reply) -> None:
        namespace, key = args
        reply.value(self.storage.read(_text(namespace), _text(key)))

    def _write(self, args: list[Any], reply: Reply) -> None:
        namespace, key, blob = args[0], args[1], args[2]
        tags = [_text(t) for t in args[3]] if len(args) > 3 else []
        if isinstance(blob, str):
            blob = blob.encode()
        if not isinstance(blob, bytes):
            raise TypeError("the object must be a string")
        self.storage.write(_text(namespace), _text(key), blob, tags)
        reply.done()

    def _remove(self, args: list[Any], reply: Reply) -> None:
        namespace, key = args
        self.storage.remove(_text(namespace), _text(key))
        reply.done()

    def _find(self, args: list[Any], reply: Reply) -> None:
        namespace, tags = args
        reply.value(self.storage.find(_text(namespace), [_text(t) for t in tags]))

    # The node's answers: v0.11 answers a map of app name to outcome, per app; v0.12 takes one
    # app and answers nothing or an error in the node category.

    async def _start_app(self, args: list[Any], reply: Reply) -> None:
        assert self.node is not None
        if self.dialect.graph_replies:
            name, profile = _text(args[0]), _text(args[1])
            outcome = await self.node.start_app(name, profile)
            if outcome == STARTED:
                reply.done()
            elif outcome == ALREADY_RUNNING:
                raise ServiceFailure(f"app '{name}' is already running: application has "
                                     "already been started", (NODE_CATEGORY, NODE_ALREADY_STARTED))
            else:
                raise ServiceFailure(outcome, (NODE_CATEGORY, NODE_SPOOL_ERROR))
            return
        (runlist,) = args
        if not isinstance(runlist, dict):
            raise TypeError("start_app expects a map of app names to profile names")
        result = {}
        for name, profile in runlist.items():
            result[_text(name)] = await self.node.start_app(_text(name), _text(profile))
        reply.value(result)

    async def _pause_app(self, args: list[Any], reply: Reply) -> None:
        assert self.node is not None
        if self.dialect.graph_replies:
            name = _text(args[0])
            if name not in self.node.running_apps():
                raise ServiceFailure(f"app '{name}' is not running: application is not running",
                                     (NODE_CATEGORY, NODE_NOT_RUNNING))
            await self.node.pause_app(name)
            reply.done()
            return
        (names,) = args
        if not isinstance(names, (list, tuple)):
            raise TypeError("pause_app expects a list of app names")
        reply.value({_text(n): await self.node.pause_app(_text(n)) for n in names})

    def _list(self, args: list[Any], reply: Reply) -> None:
        assert self.node is not None
        reply.value(self.node.running_apps())

    def _node_info(self, args: list[Any], reply: Reply) -> None:
        assert self.node is not None
        name = _text(args[0])
        if name not in self.node.running_apps():
            raise ServiceFailure(f"app '{name}' is not running: application is not running",
                                 (NODE_CATEGORY, NODE_NOT_RUNNING))
        reply.value({"state": "running"})

    def _enqueue(self, engine: Engine, args: list[Any], reply: Reply) -> _Request | None:
        event = _text(args[0])
        if self.dialect.graph_replies:  # v0.12: [event, tag?], then the upstream
            tag = _text(args[1]) if len(args) > 1 and args[1] else None
            return _Request(engine, engine.open(event, _Sink(reply), tag, reply.trace))
        data = args[1]
        tag = _text(args[2]) if len(args) > 2 and args[2] is not None else None
        if isinstance(data, str):
            data = data.encode()
        engine.enqueue(event, data, _Sink(reply), tag)
        return None
