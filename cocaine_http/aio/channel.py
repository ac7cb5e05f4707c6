# Strategy: a Channel is the asyncio Protocol of one connection. Every socket read goes to the
# decoder in one call (`feed_records`) and comes back as records, one (kind, session, a, b)
# tuple per message (cocaine_http.codec.records); they are walked once and each message calls
# its callback. Callbacks are plain attributes (the seed design's on_* family) that default to
# no-ops; close() puts the no-ops back, so nothing fires after it.
#
# Receive hot path (a dialect with `fast_ids`, not raw): the record kind is the message id * 8
# + shape, so the common messages (invoke, chunk, choke, heartbeat) are told apart by one
# comparison each, payloads are sliced straight from the read's buffer, and short invoke event
# names (SHORT records) map to cached str without slicing. Callbacks are read per message, so a
# callback replaced by a callback takes effect from the very next message, and so does close(),
# which puts the no-ops back. Every other message goes through one general method
# (`_other`), which routes it with the dialect and checks its arguments (`Dialect.arguments`).
# A callback that raises is logged and the loop resumes with the next message.
#
# Bad input: a broken stream (bad msgpack, a frame that is not [id, session, args], a message
# over the size limit: the decoder's DecodeError) closes the channel with EPROTO, because
# nothing after it can be trusted. A well-framed message whose arguments do not fit leaves the
# stream in sync: it is logged and reported to on_bad_message(kind, session, reason), and the
# messages after it are delivered as usual. So is a well-framed message whose session is no
# non-negative integer (the decoder's DROPPED record), except that it has no session to fail:
# it is logged and reported to on_dropped(id, reason), even on a raw channel, and goes no
# further.
#
# Writes are batched: send() queues buffers and one writelines() per event-loop tick flushes them,
# so a tick that answers many sessions costs one syscall. A tick that queued a buffer of more
# than LARGE_WRITE bytes takes another path, so that a large payload is never copied whole
# (only a tick of more than LARGE_WRITE bytes is searched for one, with max(map(len, ...))):
# asyncio's
# transport joins what writelines() gets and, on Python before 3.12, copies whatever the kernel
# did not take at once into its own buffer (a slice, then that buffer: a 1 GiB request frame
# cost three copies of it). Such buffers wait in the channel's backlog, by reference, and go to
# the transport as memoryviews of at most WRITE_SLICE bytes while it is below its high-water
# mark; the rest follows at each resume_writing(). Small buffers next to them are still
# coalesced, one writelines() per batch. drain() waits for the backlog as well.
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
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..codec import Decoder, DecodeError
from ..codec.hpack import Trace
from ..codec.records import (
    REC_ARGS,
    REC_DROPPED,
    REC_EMPTY,
    REC_RAW,
    REC_SHORT,
    REC_TRACED,
    records_of,
    short_bytes,
)
from ..errors import ChannelError, RemoteProtocolError
from ..protocol.dialect import V0_11, Buffer, Dialect, Kind
from .endpoint import Endpoint, parse_endpoint

__all__ = ["Buffer", "Channel", "serve"]

log = logging.getLogger("cocaine_http.channel")

# record kinds of the hot path, for dialects whose ids are the kinds (Dialect.fast_ids)
_INVOKE = Kind.INVOKE * 8 + REC_RAW
_INVOKE_SHORT = Kind.INVOKE * 8 + REC_SHORT
_CHUNK = Kind.CHUNK * 8 + REC_RAW
_CHOKE = Kind.CHOKE * 8 + REC_EMPTY
_HEARTBEAT = Kind.HEARTBEAT * 8 + REC_EMPTY

#: Event names of SHORT invoke records (keyed by the packed name), decoded once: a worker
#: serves a handful. Bounded, so a peer sending endless new names only loses the cache.
_EVENTS: dict[int, str] = {}
_EVENTS_MAX = 1024


def _event(packed: int) -> str:
    text = short_bytes(packed).decode("utf-8", "replace")
    if len(_EVENTS) < _EVENTS_MAX:
        _EVENTS[packed] = text
    return text


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
    "on_bad_message",
    "on_dropped",
    "on_socket_error",
)


#: asyncio's selector transport of CPython 3.12 and 3.13 queues what writelines() cannot send
#: without asking the protocol to pause (write() does ask), so a peer that stops reading would
#: let the buffer grow without bound; the channel asks for that check itself after writelines().
_WRITELINES_SKIPS_PAUSE = sys.version_info >= (3, 12)

#: A buffer of more than this many bytes goes through the backlog, and so does the rest of its
#: tick and every tick after it until the backlog is empty (see the top).
LARGE_WRITE = 64 * 1024
#: The most of one large buffer handed to the transport at a time (what its own buffer may
#: copy of it).
WRITE_SLICE = 1024 * 1024


class Channel(asyncio.Protocol):
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
        own, on_bad_message(kind, session, reason) for a well-framed message whose arguments
        do not fit (logged; the stream goes on), on_dropped(id, reason) for a well-framed
        message whose session is unusable (logged and dropped, even when raw; the stream goes
        on), and on_socket_error(errno) for a failed
        connect, a socket error, the peer's EOF (ESHUTDOWN) or a broken stream (EPROTO;
        `last_error` holds the DecodeError).
    """

    on_connect: Callable[[], Any]
    on_invoke: Callable[[int, str], Any]
    on_chunk: Callable[[int, bytes], Any]
    on_choke: Callable[[int], Any]
    on_error: Callable[[int, int, str], Any]
    on_terminate: Callable[[int, int, str], Any]
    on_heartbeat: Callable[[], Any]
    on_message: Callable[[int, int, list[Any]], Any]
    on_bad_message: Callable[[Kind, int, str], Any]
    on_dropped: Callable[[int, str], Any]
    on_socket_error: Callable[[int], Any]
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
        #: while a v0.12 message carrying a trace is delivered, that trace (else None)
        self.trace: Trace | None = None
        self.peer: str = ""
        self._decoder = Decoder(
            dialect.name, max_message_size=max_message_size, max_depth=max_depth
        )
        self._feed = self._decoder.feed_records
        self._router = dialect.router()
        self._fast_ids = dialect.fast_ids and not raw
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._pending: list[Buffer] = []
        self._pending_size = 0
        self._flush_scheduled = False
        # writers wait on this while the transport is over its high-water mark or the
        # backlog is not empty
        self._paused: asyncio.Future[None] | None = None
        self._transport_paused = False
        self._backlog: deque[tuple[int, Any]] = deque()  # (size, buffer or list of them)
        self._backlog_size = 0
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
        return size + self._pending_size + self._backlog_size

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its low-water mark and every
        large buffer queued before has been handed to it."""
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
            self._hand_over_backlog()
            self._transport.close()
        self._release_writers()

    def abort(self) -> None:
        """Close the socket at once, discarding queued data; no callback fires after this call."""
        self._closed = True
        self._detach()
        self._discard_writes()
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
        self._transport_paused = True
        if self._paused is None:
            self._paused = (self._loop or asyncio.get_running_loop()).create_future()

    def resume_writing(self) -> None:
        self._transport_paused = False
        if self._backlog:
            self._pump()
        if not self._backlog and not self._transport_paused:
            self._release_writers()

    # -- receive ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            records, buf = self._feed(data)
        except DecodeError as exc:
            self._dispatch(*records_of(exc.messages))
            if not self._closed:
                log.error("protocol error from %s: %s", self.peer, exc)
                self.last_error = exc
                self._fail(errnos.EPROTO)
            return
        if not self._fast_ids or type(buf) is not bytes:
            self._dispatch(records, buf)
            return
        # the hot path: see the module comment
        while True:  # again after a callback raised, with the next message
            try:
                for kind, session, a, b in records:
                    if kind == _CHUNK:
                        self.on_chunk(session, buf[a:b])
                    elif kind == _CHOKE:
                        self.on_choke(session)
                    elif kind == _INVOKE_SHORT:  # a names the event (cached)
                        self.on_invoke(session, _EVENTS.get(a) or _event(a))
                    elif kind == _HEARTBEAT:
                        self.on_heartbeat()
                    elif kind == _INVOKE:
                        self.on_invoke(session, buf[a:b].decode("utf-8", "replace"))
                    else:
                        self._other(kind, session, a, b, buf)
                return
            except Exception:
                log.exception("a callback raised")

    def _dispatch(self, records: Iterable[tuple[Any, ...]], buf: Any) -> None:
        """Every message of a read through the general path (v0.12, raw, a bytearray)."""
        with memoryview(buf) as view:
            for kind, session, a, b in records:
                if self._closed:
                    return
                self._other(kind, session, a, b, view)

    def _other(self, kind: int, session: int, a: Any, b: Any, buf: Any) -> None:
        """Deliver one message by the general rules (nothing, once the channel is closed)."""
        if self._closed:
            return
        mid, shape = kind >> 3, kind & 7
        if shape == REC_EMPTY:
            args: list[Any] = []
        elif shape == REC_RAW:
            data = buf[a:b]
            args = [data if type(data) is bytes else bytes(data)]
        elif shape == REC_SHORT:
            args = [short_bytes(a)]
        elif shape == REC_DROPPED:  # no session to deliver it to or to fail
            log.warning("dropped message %d from %s: %s", mid, self.peer, a)
            self._call(self.on_dropped, mid, a)
            return
        elif shape == REC_TRACED:  # its callback finds the trace in self.trace
            self.trace = b
            try:
                self._other(mid * 8 + REC_ARGS, session, a, 0, buf)
            finally:
                self.trace = None
            return
        else:
            assert shape == REC_ARGS
            args = a
        if self.raw:
            self._call(self.on_message, mid, session, args)
            return
        route = self._router.route(mid, session)
        try:
            values = self.dialect.arguments(route, args)
        except RemoteProtocolError as exc:
            # Arguments are checked before the callback runs, so a shape error is the peer's
            # fault and an exception inside the callback is the callback's (logged by _call).
            log.warning("bad %s message from %s on session %d: %s",
                        route.name.lower(), self.peer, session, exc)  # fmt: skip
            self._call(self.on_bad_message, route, session, str(exc))
            return
        self._deliver(route, mid, session, values, args)

    def _deliver(
        self, kind: Kind, mid: int, session: int, values: tuple[Any, ...], args: list[Any]
    ) -> None:
        if kind is Kind.CHUNK:
            self._call(self.on_chunk, session, *values)
        elif kind is Kind.CHOKE:
            self._call(self.on_choke, session)
        elif kind is Kind.INVOKE:
            self._call(self.on_invoke, session, *values)
        elif kind is Kind.HEARTBEAT:
            self._call(self.on_heartbeat)
        elif kind is Kind.ERROR:
            self._call(self.on_error, session, *values)
        elif kind is Kind.TERMINATE:
            self._call(self.on_terminate, session, *values)
        else:
            self._call(self.on_message, mid, session, args)

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
        size, self._pending_size = self._pending_size, 0
        if self._transport.is_closing():
            return
        if self._backlog or (size > LARGE_WRITE and max(map(len, pending)) > LARGE_WRITE):
            self._queue(pending, size)  # see the top: never copied whole
            self._pump()
        elif len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)
            if _WRITELINES_SKIPS_PAUSE and not self._transport_paused:
                check = getattr(self._transport, "_maybe_pause_protocol", None)
                if check is not None:
                    check()

    def _queue(self, pending: list[Buffer], size: int) -> None:
        """Add a flush to the backlog as (size, item) entries: each large buffer alone, the
        small ones between them as lists written together."""
        backlog = self._backlog
        self._backlog_size += size
        if max(map(len, pending)) <= LARGE_WRITE:
            backlog.append((size, pending))
            return
        batch: list[Buffer] = []
        batch_size = 0
        for part in pending:
            n = len(part)
            if n <= LARGE_WRITE:
                batch.append(part)
                batch_size += n
                continue
            if batch:
                backlog.append((batch_size, batch))
                batch, batch_size = [], 0
            backlog.append((n, part))
        if batch:
            backlog.append((batch_size, batch))

    def _pump(self) -> None:
        """Hand the backlog to the transport while it is below its high-water mark: small
        buffers together, large ones as memoryview slices (see the top)."""
        backlog, transport = self._backlog, self._transport
        if transport is None or transport.is_closing():
            return
        while backlog and not self._transport_paused:
            n, item = backlog.popleft()
            if type(item) is list:
                self._backlog_size -= n
                if len(item) == 1:
                    transport.write(item[0])
                else:
                    self._writelines(item)
                continue
            view = item if type(item) is memoryview else memoryview(item)
            if n > WRITE_SLICE:
                backlog.appendleft((n - WRITE_SLICE, view[WRITE_SLICE:]))
                view, n = view[:WRITE_SLICE], WRITE_SLICE
            self._backlog_size -= n
            transport.write(view)
        if not backlog and not self._transport_paused:
            self._release_writers()
        elif self._paused is None:  # writers wait for the backlog, too
            self._paused = (self._loop or asyncio.get_running_loop()).create_future()

    def _writelines(self, buffers: list[Buffer]) -> None:
        assert self._transport is not None
        self._transport.writelines(buffers)
        if _WRITELINES_SKIPS_PAUSE and not self._transport_paused:
            check = getattr(self._transport, "_maybe_pause_protocol", None)
            if check is not None:
                check()

    def _hand_over_backlog(self) -> None:
        """Closing: the transport writes what is left before it closes (copying it)."""
        transport, backlog = self._transport, self._backlog
        if transport is not None and backlog and not transport.is_closing():
            parts: list[Buffer] = []
            for _, item in backlog:
                if type(item) is list:
                    parts += item
                else:
                    parts.append(item)
            transport.writelines(parts)
        backlog.clear()
        self._backlog_size = 0

    def _discard_writes(self) -> None:
        self._pending.clear()
        self._pending_size = 0
        self._backlog.clear()
        self._backlog_size = 0

    def _fail(self, code: int) -> None:
        if self._closed:
            return
        callback = self.on_socket_error
        self._closed = True
        self._detach()
        self._discard_writes()
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
