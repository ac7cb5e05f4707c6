# Strategy: a Channel is the asyncio Protocol of one connection. Every socket read goes to the
# decoder in one call (`feed_records`) and comes back as records, one (kind, session, a, b)
# tuple per message; they are walked once and each message calls its callback. Callbacks are
# attributes (the seed design's on_* family) that default to no-ops; close() puts the no-ops
# back, so nothing fires after it.
#
# The receive side (data_received and the rules for each message) lives in receive.py.
#
# Writes are batched: send() queues buffers and one writelines() per event-loop tick flushes them,
# so a tick that answers many sessions costs one syscall, and a large payload goes out as its own
# buffer, never joined.
#
# Failures are reported, never raised into the loop: the first socket error, the peer's EOF
# (ESHUTDOWN, as the Node.js framework reported it) or a malformed stream (EPROTO, with the
# DecodeError in `last_error`) calls on_socket_error(errno) once and closes the channel.
"""Channel: a connection to a Cocaine endpoint with C-decoded incoming messages."""

from __future__ import annotations

import asyncio
import errno as errnos
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..codec import Decoder
from ..errors import ChannelError
from ..protocol.dialect import V0_11, Dialect
from .endpoint import Endpoint, parse_endpoint
from .receive import Receiver, _Callback

log = logging.getLogger("cocaine_http.channel")

Buffer = bytes | bytearray | memoryview


def _noop(*args: Any) -> None:
    return None


_CALLBACKS = (
    "on_connect",
    "on_invoke",
    "on_chunk",
    "on_choke",
    "on_error",
    "on_terminate",
    "on_heartbeat",
    "on_message",
    "on_socket_error",
)


class Channel(Receiver, asyncio.Protocol):
    """A connection to a Cocaine endpoint (tcp or unix), client or accepted.

    Args:
        dialect: wire rules; v0.11 unless the runtime passed `--protocol 1`.
        raw: deliver every message to `on_message(id, session, args)` (service servers use it).
        max_message_size: decoder limit, see `cocaine_http.codec.Decoder`.
        max_depth: decoder limit, see `cocaine_http.codec.Decoder`.

    Callbacks (assign them; each defaults to a no-op):
        on_connect(), on_invoke(session, event), on_chunk(session, data), on_choke(session),
        on_error(session, code, message), on_terminate(session, code, reason), on_heartbeat(),
        on_message(id, session, args) for the handshake and any id without a callback of its
        own, and on_socket_error(errno) for a failed connect, a socket error, the peer's EOF
        (ESHUTDOWN) or a malformed stream (EPROTO; `last_error` holds the DecodeError).
    """

    on_connect: _Callback[Callable[[], Any]] = _Callback()
    on_invoke: _Callback[Callable[[int, str], Any]] = _Callback()
    on_chunk: _Callback[Callable[[int, bytes], Any]] = _Callback()
    on_choke: _Callback[Callable[[int], Any]] = _Callback()
    on_error: _Callback[Callable[[int, int, str], Any]] = _Callback()
    on_terminate: _Callback[Callable[[int, int, str], Any]] = _Callback()
    on_heartbeat: _Callback[Callable[[], Any]] = _Callback()
    on_message: _Callback[Callable[[int, int, list[Any]], Any]] = _Callback()
    on_socket_error: _Callback[Callable[[int], Any]] = _Callback()
    # where the descriptors keep the four the hot loop reads
    _cb_on_invoke: Callable[[int, str], Any]
    _cb_on_chunk: Callable[[int, bytes], Any]
    _cb_on_choke: Callable[[int], Any]
    _cb_on_heartbeat: Callable[[], Any]
    #: the loop that runs the connection, kept by connection_made: looking it up per send
    #: costs a getpid() on Python 3.11 (None when a test or benchmark drives it by hand)
    _loop: asyncio.AbstractEventLoop | None = None

    def __init__(
        self,
        dialect: Dialect = V0_11,
        *,
        raw: bool = False,
        max_message_size: int | None = None,
        max_depth: int | None = None,
    ) -> None:
        self.dialect = dialect
        self.raw = raw
        self.last_error: BaseException | None = None
        self.peer: str = ""
        self._hot: tuple[Any, ...] | None = None  # the hot callbacks; None after any is set
        self._running: Iterator[tuple[Any, ...]] | None = None  # the hot loop's records
        self._rest: list[tuple[Any, ...]] = []  # what it had left when a callback was set
        self._decoder = Decoder(
            dialect.name, max_message_size=max_message_size, max_depth=max_depth
        )
        self._feed = self._decoder.feed_records
        self._router = dialect.router()
        self._fast_v11 = dialect.name == "v0.11" and not raw
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._pending: list[Buffer] = []
        self._pending_size = 0
        self._flush_scheduled = False
        self._paused: asyncio.Future[None] | None = None
        self._detach()

    # -- public API ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    async def connect(self, endpoint: str | tuple[str, int] | Endpoint) -> bool:
        """Connect to a unix path or host:port; names are resolved, IPv4 and IPv6 both work.

        Returns:
            True once connected (on_connect has fired); False after a failure, which was
            reported once through on_socket_error(errno).
        """
        loop = asyncio.get_running_loop()
        try:
            ep = parse_endpoint(endpoint)
            self.peer = str(ep)
            if ep.is_unix:
                await loop.create_unix_connection(lambda: self, ep.path)
            else:
                await self._connect_tcp(loop, ep)
        except (OSError, ValueError) as exc:
            self._connect_failed(exc)
            return False
        except Exception as exc:  # EndpointError and friends: still reported, never raised
            self._connect_failed(exc)
            return False
        return not self._closed

    async def _connect_tcp(self, loop: asyncio.AbstractEventLoop, ep: Endpoint) -> None:
        # One address at a time, so the first failure keeps its errno (asyncio folds several
        # failures into one OSError without an errno).
        assert ep.host is not None and ep.port is not None
        try:
            infos = await loop.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ChannelError(errnos.EHOSTUNREACH, f"cannot resolve {ep.host}: {exc}") from exc
        first: OSError | None = None
        for family, type_, proto, _, addr in infos:
            try:
                host, port = addr[0], addr[1]
                assert isinstance(host, str) and isinstance(port, int)
                await loop.create_connection(lambda: self, host, port, family=family)
                return
            except OSError as exc:
                first = first or exc
        raise first or ChannelError(errnos.EHOSTUNREACH, f"no address for {ep.host}")

    def _connect_failed(self, exc: BaseException) -> None:
        self.last_error = exc
        code = getattr(exc, "errno", None)
        if not isinstance(code, int) or code <= 0:
            code = errnos.EINVAL if not isinstance(exc, OSError) else errnos.EHOSTUNREACH
        log.debug("connect to %s failed: %s", self.peer, exc)
        self._fail(code)

    def send(self, session: int, message: Buffer | Sequence[Buffer]) -> None:
        """Queue one encoded message (bytes, or a sequence of buffers sent back to back).

        `session` names the session the message belongs to; buffers must not be mutated after
        the call. Writes after close() are dropped.
        """
        if self._closed or self._transport is None:
            return
        if isinstance(message, (bytes, bytearray, memoryview)):
            self._pending.append(message)
            self._pending_size += len(message)
        else:
            for part in message:
                self._pending.append(part)
                self._pending_size += len(part)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def write_buffer_size(self) -> int:
        """Bytes queued but not yet accepted by the kernel."""
        transport = self._transport
        size = transport.get_write_buffer_size() if transport is not None else 0
        return size + self._pending_size

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its low-water mark."""
        if self._pending:
            self._flush()
        if self._paused is not None:
            await asyncio.shield(self._paused)

    def pause_reading(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()

    def close(self) -> None:
        """Close the socket after writing what is queued; no callback fires after this call."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        if self._transport is not None:
            self._flush()
            self._transport.close()
        self._release_writers()

    def abort(self) -> None:
        """Close the socket at once, discarding queued data; no callback fires after this call."""
        self._closed = True
        self._detach()
        self._pending.clear()
        if self._transport is not None:
            self._transport.abort()
        self._release_writers()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self._transport = transport  # type: ignore[assignment]
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # driven by hand, outside a loop
            self._loop = None
        if not self.peer:
            peer = transport.get_extra_info("peername")
            self.peer = str(peer) if peer else "unix"
        self._call(self.on_connect)

    def eof_received(self) -> bool:
        self._fail(errnos.ESHUTDOWN)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.last_error = exc
            code = getattr(exc, "errno", None)
            self._fail(code if isinstance(code, int) and code > 0 else errnos.ECONNRESET)
        else:
            self._fail(errnos.ESHUTDOWN)
        self._release_writers()

    def pause_writing(self) -> None:
        if self._paused is None:
            self._paused = (self._loop or asyncio.get_running_loop()).create_future()

    def resume_writing(self) -> None:
        self._release_writers()

    # -- internals ----------------------------------------------------------------------------

    def _detach(self) -> None:
        for name in _CALLBACKS:
            setattr(self, name, _noop)

    def _release_writers(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._transport is None:
            return
        pending, self._pending = self._pending, []
        self._pending_size = 0
        if self._transport.is_closing():
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def _fail(self, code: int) -> None:
        if self._closed:
            return
        callback = self.on_socket_error
        self._closed = True
        self._detach()
        self._pending.clear()
        if self._transport is not None:
            self._transport.abort()
        self._call(callback, code)

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("callback %s raised", getattr(callback, "__name__", callback))

async def serve(
    endpoint: str | tuple[str, int] | Endpoint,
    on_channel: Callable[[Channel], Any],
    *,
    dialect: Dialect = V0_11,
    raw: bool = False,
    max_message_size: int | None = None,
    max_depth: int | None = None,
) -> asyncio.AbstractServer:
    """Listen on a unix path or host:port; each accepted connection becomes a Channel.

    `on_channel(channel)` runs when the connection is made and before any data is delivered,
    so it is the place to assign the channel's callbacks. A stale unix socket file is removed.
    """
    loop = asyncio.get_running_loop()
    ep = parse_endpoint(endpoint)

    def factory() -> Channel:
        channel = Channel(
            dialect, raw=raw, max_message_size=max_message_size, max_depth=max_depth
        )
        channel.on_connect = lambda: on_channel(channel)
        return channel

    if ep.is_unix:
        assert ep.path is not None
        if os.path.exists(ep.path):
            os.unlink(ep.path)
        return await loop.create_unix_server(factory, ep.path)
    assert ep.port is not None
    return await loop.create_server(factory, ep.host, ep.port)
