# Strategy: each dev service is a `_Server`: a method table {id: (name, handler)} served on its
# own 127.0.0.1 TCP port with raw Channels, speaking v0.11 exactly as cocaine-runtime does
# (docs/protocol.md §4.1, §9 item 9, §12): native results are double-encoded (one chunk holding one
# msgpack value, then choke), void methods answer choke only, an unknown method id or a handler
# that raises answers error(1, text) + choke. App services are the exception: enqueue forwards
# the worker's chunks untouched and an engine failure as error without choke, like the runtime.
#
# The locator listens on 10053 unless told otherwise, falling back to an OS-assigned port (and
# saying so) when that is busy; resolve answers [[host, port], 1, {id: method}]. App services
# registered after start() come up in the background; resolve waits for them.
"""DevServices: locator, logging, storage and app services of the dev runtime, on TCP."""

from __future__ import annotations

import asyncio
import collections
import errno as errnos
import inspect
import json
import logging
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from ..aio.channel import Channel, serve
from ..protocol.dialect import V0_11, pack

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


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


class Reply:
    """The answer to one call: v0.11 chunk/error/choke on the call's session."""

    __slots__ = ("channel", "session", "finished")

    def __init__(self, channel: Channel, session: int) -> None:
        self.channel = channel
        self.session = session
        self.finished = False

    def chunk(self, data: bytes) -> None:
        self.channel.send(self.session, [V0_11.chunk_header(self.session, len(data)), data])

    def value(self, obj: Any) -> None:
        """A native result: one chunk holding msgpack(obj), then choke."""
        self.chunk(pack(obj))
        self.done()

    def done(self) -> None:
        if not self.finished:
            self.finished = True
            self.channel.send(self.session, V0_11.choke(self.session))

    def error(self, code: int, message: str) -> None:
        """An error without choke (engine failures, docs/protocol.md §9 item 7)."""
        self.finished = True
        self.channel.send(self.session, V0_11.error(self.session, code, message))

    def fail(self, code: int, message: str) -> None:
        """error(code, message) + choke, how services report failures."""
        self.finished = True
        self.channel.send(self.session, V0_11.error(self.session, code, message))
        self.channel.send(self.session, V0_11.choke(self.session))


Handler = Callable[[list[Any], Reply], Awaitable[None] | None]


class _Server:
    """One v0.11 service on a TCP port."""

    def __init__(self, name: str, methods: dict[int, tuple[str, Handler]],
                 max_message_size: int | None = None) -> None:
        self.name = name
        self.max_message_size = max_message_size
        self.methods = methods
        self.table = {mid: m for mid, (m, _) in methods.items()}
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._channels: set[Channel] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready: asyncio.Future[None] | None = None

    async def start(self, host: str, port: int = 0) -> None:
        server = await serve((host, port), self._on_channel, raw=True,
                             max_message_size=self.max_message_size)
        self._server = server
        # uvloop's server is not an asyncio.Server subclass, but has the same `sockets`.
        self.port = cast(asyncio.Server, server).sockets[0].getsockname()[1]

    def _on_channel(self, channel: Channel) -> None:
        self._channels.add(channel)
        channel.on_message = lambda mid, session, args: self._dispatch(channel, mid, session, args)
        channel.on_socket_error = lambda errno: self._channels.discard(channel)

    def _dispatch(self, channel: Channel, mid: int, session: int, args: list[Any]) -> None:
        reply = Reply(channel, session)
        entry = self.methods.get(mid)
        if entry is None:
            reply.fail(1, "unknown message type")
            return
        try:
            result = entry[1](args, reply)
        except Exception as exc:
            reply.fail(1, str(exc) or type(exc).__name__)
            return
        if inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._finish(result, reply))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _finish(self, pending: Awaitable[None], reply: Reply) -> None:
        try:
            await pending
        except Exception as exc:
            reply.fail(1, str(exc) or type(exc).__name__)

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


class StorageError(Exception):
    """A storage failure; its text goes back to the client as error(1, text)."""


def _not_found(namespace: str, key: str) -> StorageError:
    return StorageError(f"the specified object has not been found: {namespace}/{key}")


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

    def info(self) -> dict[str, Any]: ...


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
        self.reply.chunk(data)
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
            self.reply.error(2, "the caller reads slower than the app writes")

    def on_error(self, code: int, message: str) -> None:
        if not self.dropped:
            self.reply.error(code, message)

    def on_choke(self) -> None:
        if not self.dropped:
            self.reply.done()


class DevServices:
    """Locator, logging, storage and app services for local development.

    Args:
        host: address every service binds to and the locator reports.
        locator_port: 10053 by default; 0 picks a free port; a busy port falls back to one.
        storage_dir: keep storage under this directory (default: in memory).
        verbosity: what logging.verbosity() answers (v0.11 levels, 4 = debug).
        message_limit: the largest call an app service reads (an enqueue carries a whole
            request body); None: the decoder's default.
    """

    def __init__(self, host: str = "127.0.0.1", locator_port: int = 10053,
                 storage_dir: str | None = None, verbosity: int = 4,
                 message_limit: int | None = None) -> None:
        self.host = host
        self.message_limit = message_limit
        self.locator_port = locator_port
        self.verbosity = verbosity
        self.storage: MemoryStorage | DirectoryStorage = (
            DirectoryStorage(storage_dir) if storage_dir else MemoryStorage())
        self.log_records: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=10000)
        self._servers: dict[str, _Server] = {
            "logging": _Server("logging", {0: ("emit", self._emit),
                                           1: ("verbosity", self._verbosity)}),
            "storage": _Server("storage", {0: ("read", self._read), 1: ("write", self._write),
                                           2: ("remove", self._remove), 3: ("find", self._find)}),
        }
        self._locator = _Server("locator", {0: ("resolve", self._resolve)})
        self._started = False
        self.node: NodeHost | None = None

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
        self._started = True
        log.info("locator on %s:%d", self.host, self._locator.port)

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
        """Serve the v0.11 `node` service (start_app, pause_app, list) for `host`; before
        start() only."""
        self.node = host
        self._servers["node"] = _Server("node", {0: ("start_app", self._start_app),
                                                 1: ("pause_app", self._pause_app),
                                                 2: ("list", self._list)})

    def register_app(self, engine: Engine) -> None:
        """Serve the app service `engine.name` (enqueue, info); started now if running."""
        server = _Server(engine.name, {
            0: ("enqueue", lambda args, reply: self._enqueue(engine, args, reply)),
            1: ("info", lambda args, reply: reply.value(engine.info())),
        }, self.message_limit)
        self._servers[engine.name] = server
        if self._started:
            task = asyncio.get_running_loop().create_task(self._start_server(server))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def unregister_app(self, name: str) -> None:
        server = self._servers.pop(name, None)
        if server is not None:
            await server.close()

    async def close(self) -> None:
        await self._locator.close()
        for server in list(self._servers.values()):
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
        server = self._servers.get(name)
        if server is None or server.ready is None:
            reply.fail(1, f"service {name} is not available")
            return
        await server.ready
        reply.value([[self.host, server.port], 1, server.table])

    def _emit(self, args: list[Any], reply: Reply) -> None:
        level, source, message = args[0], _text(args[1]), _text(args[2])
        if not isinstance(level, int):
            raise TypeError("level must be an integer")
        self.log_records.append((level, source, message))
        service_log.log(_PY_LEVELS.get(level, logging.DEBUG), "%s: %s", source, message)
        reply.done()

    def _verbosity(self, args: list[Any], reply: Reply) -> None:
        reply.value(self.verbosity)

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

    # The node's answers are the runtime's: a map of app name to outcome, per app.

    async def _start_app(self, args: list[Any], reply: Reply) -> None:
        (runlist,) = args
        if not isinstance(runlist, dict):
            raise TypeError("start_app expects a map of app names to profile names")
        assert self.node is not None
        result = {}
        for name, profile in runlist.items():
            result[_text(name)] = await self.node.start_app(_text(name), _text(profile))
        reply.value(result)

    async def _pause_app(self, args: list[Any], reply: Reply) -> None:
        (names,) = args
        if not isinstance(names, (list, tuple)):
            raise TypeError("pause_app expects a list of app names")
        assert self.node is not None
        reply.value({_text(n): await self.node.pause_app(_text(n)) for n in names})

    def _list(self, args: list[Any], reply: Reply) -> None:
        assert self.node is not None
        reply.value(self.node.running_apps())

    def _enqueue(self, engine: Engine, args: list[Any], reply: Reply) -> None:
        event, data = _text(args[0]), args[1]
        tag = _text(args[2]) if len(args) > 2 and args[2] is not None else None
        if isinstance(data, str):
            data = data.encode()
        engine.enqueue(event, data, _Sink(reply), tag)
