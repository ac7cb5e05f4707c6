# Strategy: an HTTP/1.1 server on h11 and asyncio that behaves like Cocaine's HTTP proxies
# (docs/protocol.md §6, docs/proxy.md). One asyncio.Protocol per client connection owns an
# h11.Connection; a request is read whole (the request frame carries the full body), checked,
# routed, its forwarded headers rewritten, packed into `[method, uri, "1.1", [[name, value],
# ...], body]` and handed to the Upstream with a Reply as the sink. The Reply turns the app's
# chunks into HTTP as they arrive: the first chunk is the head `[status, [[name, value], ...]]`,
# later ones are body bytes (v0.11: msgpack strings; v0.12: the bytes), empty ones skipped.
# Content-Length from the app is honoured (excess dropped, shortfall closes the connection),
# otherwise h11 frames the body (chunked for HTTP/1.1); hop-by-hop and framing headers of the
# app are dropped, so there is exactly one framing header. Failures before the head become a
# status chosen by the Upstream (502 app error or no connection, 404 unknown app, 503 queue
# full, 504 timeout); after the head the connection is closed. Reading is paused while a
# request is in flight, so pipelined requests wait in the kernel, and resumed when the
# response is complete (keep-alive).
#
# Bounds: one timer per connection, its meaning set by the phase: keep-alive (waiting for a
# request: close quietly), head (from the first byte of a request: 408), body (client silence:
# 408), reply (the client leaves the response unread: abort). What the front holds for a
# response is the transport's write buffer, whose high-water mark is `max_response_buffer`.
# Past it the session's upstream connection is paused (Flow) when the session is that
# connection's only one, and resumed once the client drains; a shared connection is never
# paused (the protocol has no per-session flow control: every other session would stall), so
# there the session is failed instead (connection aborted, the rest of its chunks dropped), as
# it is when another session arrives on a paused connection.
"""The HTTP front's client connections: h11 in, Cocaine sessions out."""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import h11
import msgpack

from .. import __version__
from ..adapters.accesslog import AccessLog
from ..aio.channel import _WRITELINES_SKIPS_PAUSE
from ..http.request import Request
from ..http.response import is_front_owned
from ..protocol.dialect import pack, raw_header
from .checks import HeadGuard, RequestRejected, check_request, check_trailers
from .routing import PING, Router

log = logging.getLogger("cocaine_http.proxy")

POWERED_BY = (b"X-Powered-By", b"Cocaine")
SERVER = (b"Server", f"cocaine-http/{__version__}".encode())
#: The statuses the v0.11 tornado proxy can answer: Python 2's httplib.responses. For any other
#: status its reply handler raises and the client never gets an answer (docs/deploy.md §7).
TORNADO_STATUSES = frozenset(
    {100, 101, *range(200, 207), *range(300, 308), *range(400, 418), *range(500, 506)}
)
#: The status of a response the app got wrong (a bad head, a session without one): the front
#: is a gateway and the app behind it failed.
BAD_GATEWAY = 502


class Flow(Protocol):
    """Back-pressure on the upstream connection of one session (see the module comment)."""

    paused: bool
    #: Called when another session starts on the paused connection: give way.
    on_shared: Callable[[], None] | None

    def pause(self) -> bool:
        """Stop reading the connection; False (nothing done) when other sessions share it."""

    def resume(self) -> None:
        """Read the connection again (idempotent)."""


class Upstream(Protocol):
    """Where the front sends requests: the cluster (proxy.upstream) or a dev engine."""

    #: Whether the app's body chunks are the bytes themselves (v0.12), not msgpack strings.
    raw_body: bool

    def send(self, service: str, event: str, frame: bytes | bytearray, reply: Reply) -> None:
        """Start one session; its reply (or its failure, `reply.fail`) goes to `reply`. The
        frame is the upstream's to keep (a bytearray is not changed by the front afterwards)."""

    def status_for_error(self, code: int, message: str) -> int:
        """The HTTP status of a session that failed with error(code, message) before the
        head."""

    async def close(self) -> None:
        """Close every upstream connection."""


@dataclass(frozen=True)
class ClientLimits:
    """What one client connection may cost the front, in time and memory (0: no limit).

    Attributes:
        header_timeout: seconds from a request's first byte until its headers are complete;
            past it the client gets 408 and the connection is closed (slow headers).
        keep_alive_timeout: seconds a connection may wait for its next request (or for its
            first one); past it the connection is closed quietly.
        idle_timeout: seconds the client may stay silent while sending a body (408), or leave
            the response unread (the connection is dropped). Keep it below the heartbeat
            timeout: a worker paused for a slow client cannot be heard either.
        max_response_buffer: bytes of response the front holds for a client that reads slower
            than the app writes; past it the upstream connection is paused if the session is
            its only one, else the session fails and the connection is dropped.
    """

    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    idle_timeout: float = 10.0
    max_response_buffer: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keep_alive_timeout", "idle_timeout",
                     "max_response_buffer"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


#: Rewrites a request's headers from the connection: (headers, peer address, scheme) -> headers.
HeaderRewrite = Callable[[list[tuple[bytes, bytes]], "str | None", str], list[tuple[bytes, bytes]]]


def request_frame(method: bytes, uri: bytes, version: bytes,
                  headers: list[tuple[bytes, bytes]], body: bytes | bytearray) -> bytes | bytearray:
    """The packed request frame `[method, uri, version, headers, body]`. A bytearray body
    becomes the frame itself, the head inserted in front of it (no second copy of the body
    exists at any time: a large body is the front's largest cost); bytes are joined once."""
    head = pack([method, uri, version, [list(h) for h in headers]])  # a fixarray of 4
    prefix = b"".join((b"\x95", memoryview(head)[1:], raw_header(len(body))))
    if type(body) is bytearray:
        body[:0] = prefix
        return body
    return prefix + body


class Front:
    """An HTTP front: a listening socket, its client connections and their upstream.

    Args:
        upstream: where requests go.
        host: bind address (loopback by default).
        port: TCP port; 0 picks a free one (read it back from `port`).
        router: routing options (health-check path, dev-mode default app).
        request_timeout: seconds the app may stay silent: until the response head, then between
            body chunks; past it the client gets 504 (or a closed connection after the head).
            0 means no limit. A response that keeps streaming is never cut.
        max_body_size: larger request bodies get 413.
        powered_by: add `X-Powered-By: Cocaine` to every response, as Cocaine's native proxy
            does (the tornado proxy does not).
        server_header, date_header: add `Server: cocaine-http/<version>` and `Date` to every
            response that lacks them.
        limits: client timeouts and the response buffer bound.
        access_log: one line per request (None: none).
        rewrite_headers: sets the forwarded headers from the connection (None: as sent);
            `ForwardedPolicy.rewrite` of proxy.forwarded.
        warn_tornado_statuses: log a warning for a status the v0.11 tornado proxy cannot send
            (dev: the app will run behind it).
        reuse_port: bind with SO_REUSEPORT, so several processes share the port.
        sock: listen on this socket instead of binding one.
    """

    def __init__(self, upstream: Upstream, *, host: str = "127.0.0.1", port: int = 8080,
                 router: Router | None = None, request_timeout: float = 30.0,
                 max_body_size: int = 16 * 1024 * 1024, powered_by: bool = True,
                 server_header: bool = True, date_header: bool = True,
                 limits: ClientLimits | None = None, access_log: AccessLog | None = None,
                 rewrite_headers: HeaderRewrite | None = None,
                 warn_tornado_statuses: bool = False, reuse_port: bool = False) -> None:
        self.upstream = upstream
        self.router = router or Router()
        self.limits = limits or ClientLimits()
        #: Headers the front adds to every response.
        self.extra_headers: list[tuple[bytes, bytes]] = [POWERED_BY] if powered_by else []
        self.server_header = server_header
        self.date_header = date_header
        self.host = host
        self.port = port
        self.request_timeout = request_timeout
        self.max_body_size = max_body_size
        self.access_log = access_log if access_log is not None and access_log.enabled else None
        self.rewrite_headers = rewrite_headers
        self.warn_tornado_statuses = warn_tornado_statuses
        self.reuse_port = reuse_port
        #: Set by `shutdown`: finish the responses in flight, then close their connections.
        self.draining = False
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[HTTPConnection] = set()
        self._idle = asyncio.Event()

    def own_headers(self, app_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """What the front adds to a response: X-Powered-By, and Server and Date unless the
        app sent its own (the front is the HTTP server here, so these are its to send)."""
        names = {name.lower() for name, _ in app_headers}
        added = list(self.extra_headers)
        if self.server_header and b"server" not in names:
            added.append(SERVER)
        if self.date_header and b"date" not in names:
            added.append((b"Date", http_date()))
        return added

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HTTPConnection(self), self.host, self.port,
            reuse_port=self.reuse_port or None)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop_accepting(self) -> None:
        """Refuse new connections; open ones carry on (their sessions may still finish)."""
        if self._server is not None:
            self._server.close()

    @property
    def busy(self) -> int:
        """Connections with a request in flight."""
        return sum(1 for c in self._connections if c.request is not None)

    async def shutdown(self, grace: float) -> None:
        """Graceful stop: refuse new connections, close idle ones, let requests in flight
        finish for up to `grace` seconds (each connection closes after its response), then
        close the rest."""
        self.draining = True
        self.stop_accepting()
        for connection in list(self._connections):
            if connection.request is None:
                connection.close()
        if self.busy:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), grace if grace > 0 else None)
            except asyncio.TimeoutError:
                log.warning("%d request(s) still in flight after %gs; closing them",
                            self.busy, grace)
        await self.close()

    def _request_done(self) -> None:
        if self.draining and not self.busy:
            self._idle.set()

    async def close(self) -> None:
        """Stop accepting and close every client connection."""
        self.stop_accepting()
        for connection in list(self._connections):
            if connection.request is not None:
                connection.abort()  # a response cut short must not look complete
            else:
                connection.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


class HTTPConnection(asyncio.Protocol):
    """One client connection: h11 in, Cocaine sessions out, one request at a time."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.conn = h11.Connection(h11.SERVER)
        self.guard = HeadGuard()  # the rules h11 does not keep (docs/proxy-parsing.md)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.reply: Reply | None = None
        self.closing = False
        self.started = 0.0
        #: keep-alive, head, body, reply or drain (a response still unread): what the connection
        #: waits for, and so what its timer means.
        self.phase = "keep-alive"
        self.write_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[Any] = []
        self._flush_scheduled = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        own: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = own
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else None
        self.front._connections.add(self)
        bound = self.front.limits.max_response_buffer
        if bound:
            own.set_write_buffer_limits(high=bound)
        self._wait_for_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.front._connections.discard(self)
        self._set_timer(0, None)
        if self.reply is not None:
            self.reply.cancel()
        self.transport = None
        if self.request is not None:
            self.request = None
            self.front._request_done()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.phase == "keep-alive":
            self._enter("head", self.front.limits.header_timeout, self._head_timed_out)
        elif self.phase == "body":
            self._set_timer(self.front.limits.idle_timeout, self._body_timed_out)
        try:
            data = self.guard.feed(data)
        except RequestRejected as exc:
            self._bad_request(exc.status, exc.reason)
            return
        self.conn.receive_data(data)
        self._process()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.phase == "reply":
            self._set_timer(self.front.limits.idle_timeout, self._unread_timed_out)
            if self.reply is not None and self.front.limits.max_response_buffer:
                self.reply.client_behind()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.phase == "reply":
            self._set_timer(0, None)
            if self.reply is not None:
                self.reply.client_caught_up()
        elif self.phase == "drain":
            self._next_request()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._process()
        return None

    # -- timers ----------------------------------------------------------------------------------

    def _set_timer(self, delay: float, callback: Callable[[], None] | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if callback is not None and delay > 0 and self.transport is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def _enter(self, phase: str, delay: float, callback: Callable[[], None] | None) -> None:
        self.phase = phase
        self._set_timer(delay, callback)

    def _wait_for_request(self) -> None:
        self._enter("keep-alive", self.front.limits.keep_alive_timeout, self._keep_alive_expired)

    def _keep_alive_expired(self) -> None:
        if self.transport is not None and self.transport.get_write_buffer_size():
            self.abort()  # the last response is still unread: close() would wait for it
        else:
            self.close()

    def _head_timed_out(self) -> None:
        log.info("a client did not send its request headers in %gs",
                 self.front.limits.header_timeout)
        self._timed_out()

    def _body_timed_out(self) -> None:
        log.info("a client stayed silent for %gs while sending a body",
                 self.front.limits.idle_timeout)
        self._timed_out()

    def _timed_out(self) -> None:
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.send_simple(408, "request timeout", close=True)
        else:
            self.close()

    def _unread_timed_out(self) -> None:
        log.info("a client left its response unread for %gs", self.front.limits.idle_timeout)
        if self.reply is not None:
            self.reply.cancel()
        self.abort()

    # -- requests --------------------------------------------------------------------------------

    def _process(self) -> None:
        while self.reply is None and self.transport is not None and not self.closing:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc.error_status_hint, str(exc))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > self.front.max_body_size:
                    self.send_simple(413, "request body too large", close=True)
            elif isinstance(event, h11.EndOfMessage):
                try:
                    check_trailers(list(event.headers.raw_items()))
                except RequestRejected as exc:
                    self._bad_request(exc.status, exc.reason)
                    return
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()

    def _on_request(self, request: h11.Request) -> None:
        self.request, self.body = request, bytearray()
        self.started = time.perf_counter()
        self._enter("body", self.front.limits.idle_timeout, self._body_timed_out)
        try:
            check_request(request.method, request.target, list(request.headers.raw_items()),
                          request.http_version)
        except RequestRejected as exc:
            self._bad_request(exc.status, exc.reason)
            return
        for name, value in request.headers:
            if name == b"content-length" and int(value) > self.front.max_body_size:
                self.send_simple(413, "request body too large", close=True)
                return
        if self.conn.they_are_waiting_for_100_continue:
            self.write(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))

    def _bad_request(self, status: int, reason: str) -> None:
        log.info("bad request from a client: %s", reason)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.send_simple(status, f"bad request: {reason}", close=True)
        else:
            self.close()

    def _dispatch(self) -> None:
        request = self.request
        assert request is not None and self.transport is not None
        headers = list(request.headers.raw_items())
        where = self.front.router.route(request.target, headers)
        if where is PING:
            self.send_simple(200, "ok")
            return
        if where is None:
            self.send_simple(404, "no such app")
            return
        service, event, uri = where
        rewrite = self.front.rewrite_headers
        if rewrite is not None:
            headers = rewrite(headers, self.peer, "http")
        frame = request_frame(request.method, uri, request.http_version, headers, self.body)
        self.body = bytearray()
        self.transport.pause_reading()
        self._enter("reply", 0, None)
        self.reply = Reply(self, head_only=request.method == b"HEAD",
                           raw_body=self.front.upstream.raw_body)
        self.front.upstream.send(service, event, frame, self.reply)

    # -- responses -------------------------------------------------------------------------------

    def write(self, data: bytes | None) -> None:
        """Queue bytes for the client; what one turn of the loop queues goes out in one write
        (a small response's head, body and end: one send instead of three)."""
        if self.transport is not None and data and not self.closing:
            self._out.append(data)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)

    def write_pieces(self, pieces: list[Any]) -> None:
        """Queue h11's pieces of one event (`send_with_data_passthrough`: a body is not
        copied into its chunk framing)."""
        for piece in pieces:
            self.write(piece)

    def flush(self) -> None:
        """Hand what is queued to the transport (whose buffer back-pressure watches)."""
        self._flush_scheduled = False
        out, self._out = self._out, []
        if self.transport is not None and out:
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)
                if _WRITELINES_SKIPS_PAUSE and not self.write_paused:  # see aio/channel.py
                    check = getattr(self.transport, "_maybe_pause_protocol", None)
                    if check is not None:
                        check()

    def send_simple(self, status: int, text: str, *, close: bool = False) -> None:
        """A short text/plain response made by the front itself."""
        body = (text + "\n").encode("utf-8")
        headers = [(b"Content-Type", b"text/plain; charset=utf-8"),
                   (b"Content-Length", str(len(body)).encode())]
        headers += self.front.own_headers(headers)
        if close or self.front.draining:
            headers.append((b"Connection", b"close"))
        head_only = self.request is not None and self.request.method == b"HEAD"
        try:
            self.write(self.conn.send(h11.Response(status_code=status, headers=headers,
                                                   reason=_reason(status))))
            if not head_only:
                self.write(self.conn.send(h11.Data(data=body)))
            self.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            log.exception("cannot send a %d response", status)
            self.close()
            return
        self.finish(status, 0 if head_only else len(body))

    def finish(self, status: int, size: int) -> None:
        """The response is complete: log it, start the next cycle (keep-alive) or close."""
        self.flush()  # now: whether the client keeps up decides when the next request is read
        self.reply = None
        self._log(status, size)
        if self.request is not None:
            self.request = None
            self.front._request_done()
        if (self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE
                or self.front.draining):
            self.close()
            return
        self.conn.start_next_cycle()
        try:
            self.guard.reset(self.conn.trailing_data[0])
        except RequestRejected as exc:
            self._bad_request(exc.status, exc.reason)
            return
        if self.write_paused:  # the next request waits until the client has read this response
            self._enter("drain", self.front.limits.idle_timeout, self._unread_timed_out)
        else:
            self._next_request()

    def _log(self, status: int, size: int) -> None:
        access = self.front.access_log
        request = self.request
        if access is None or request is None:
            return
        entry = Request()
        entry.method = request.method.decode("latin-1")
        entry.target = request.target
        entry.http_version = request.http_version.decode("latin-1")
        entry.headers = list(request.headers)  # lowercased names, as the log looks them up
        entry.client = (self.peer, 0) if self.peer else None
        access.log(entry, status, size, self.started)

    def _next_request(self) -> None:
        if self.transport is not None:
            self._wait_for_request()
            if self.conn.trailing_data[0]:  # part of a pipelined request is already here
                self._enter("head", self.front.limits.header_timeout, self._head_timed_out)
            self.transport.resume_reading()
            self._process()

    def close(self) -> None:
        """Close the connection after writing what is queued."""
        self.flush()
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection: the response cannot be finished correctly."""
        self.closing = True
        if self.request is not None:
            self._log(self.reply.status if self.reply is not None else 0,
                      self.reply.sent if self.reply is not None else 0)
        self.flush()  # what the kernel takes at once still reaches the client, as if unqueued
        if self.transport is not None:
            self.transport.abort()


class Reply:
    """The sink of one HTTP request's session (docs/protocol.md §6.2).

    The upstream calls `on_chunk`, `on_choke`, `on_error` (an error reply) or `fail` (a status
    of its own: unknown app, no connection), and `attach_flow` once the session has an
    upstream connection; `on_cancel`, when set, is called if the client goes away first.
    """

    def __init__(self, connection: HTTPConnection, *, head_only: bool,
                 raw_body: bool = False) -> None:
        self.connection = connection
        self.head_only = head_only
        self.raw_body = raw_body
        self.head_sent = False
        self.finished = False
        self.no_body = head_only
        self.status = 0
        self.sent = 0
        self.remaining: int | None = None
        self.excess = False
        self.flow: Flow | None = None
        self.on_cancel: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._timeout = connection.front.request_timeout
        self._deadline = 0.0
        self._arm()

    def _arm(self) -> None:
        """Push the silence deadline back: each chunk from the app shows it is still working.
        One timer serves many chunks: when it fires early it sleeps again until the deadline."""
        if self._timeout > 0:
            self._deadline = self._loop.time() + self._timeout
            if self._timer is None:
                self._timer = self._loop.call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.finished:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._expire)
            return
        self._timed_out()

    def cancel(self) -> None:
        """The session is over for the front: no more chunks are taken."""
        if self.finished:
            return
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.flow is not None:
            self.flow.resume()
        if self.on_cancel is not None:
            self.on_cancel()

    # -- back-pressure ---------------------------------------------------------------------------

    def attach_flow(self, flow: Flow) -> None:
        """The upstream's handle on this session's connection."""
        self.flow = flow
        flow.on_shared = self._shared

    def client_behind(self) -> None:
        """More than max_response_buffer is unread: pause the upstream, or fail the session."""
        if self.finished:
            return
        if self.flow is not None and self.flow.pause():
            return
        self._overflow()

    def client_caught_up(self) -> None:
        if self.flow is not None:
            self.flow.resume()

    def _shared(self) -> None:
        if not self.finished and self.flow is not None and self.flow.paused:
            self._overflow()

    def _overflow(self) -> None:
        log.warning("a client reads slower than the app writes: more than %d bytes of "
                    "response unread; dropping the connection",
                    self.connection.front.limits.max_response_buffer)
        self.fail(BAD_GATEWAY, "response buffer full")

    # -- the session's replies -------------------------------------------------------------------

    def on_chunk(self, data: bytes) -> None:
        if self.finished:
            return
        self._arm()
        try:
            if not self.head_sent:
                self._send_head(data)
            else:
                self._send_body(data)
        except (ValueError, TypeError, msgpack.UnpackException, h11.LocalProtocolError) as exc:
            log.error("bad response from the app: %s", exc)
            self.fail(BAD_GATEWAY, f"bad response from the app: {exc}")

    def on_error(self, code: int, message: str, category: int | None = None) -> None:
        """An error reply; `category` is v0.12's error category (None under v0.11)."""
        if self.finished:
            return
        log.info("session failed: [%d] %s", code, message)
        self.fail(self.connection.front.upstream.status_for_error(code, message), message)

    def on_choke(self) -> None:
        if self.finished:
            return
        if not self.head_sent:
            self.fail(BAD_GATEWAY, "the app ended the session without a response")
            return
        if self.remaining:
            log.warning("the app sent %d bytes less than its Content-Length", self.remaining)
            self.cancel()
            self.connection.abort()
            return
        self.cancel()
        if self.connection.conn.our_state is not h11.SWITCHED_PROTOCOL:
            self.connection.write(self.connection.conn.send(h11.EndOfMessage()))
        self.connection.finish(self.status, self.sent)  # switched (CONNECT): closes

    def fail(self, status: int, message: str) -> None:
        """End the session: `status` before the head, a dropped connection after it."""
        if self.finished:
            return
        self.cancel()
        if self.head_sent:
            self.connection.abort()
        else:
            self.connection.send_simple(status, message)

    # -- internals -------------------------------------------------------------------------------

    def _send_head(self, data: bytes) -> None:
        head = msgpack.unpackb(data, raw=True)
        if not isinstance(head, (list, tuple)) or len(head) != 2:
            raise ValueError("the first chunk must be [status, [[name, value], ...]]")
        status, pairs = head
        if type(status) is not int or not 200 <= status <= 999:
            raise ValueError(f"bad status {status!r}")
        if self.connection.front.warn_tornado_statuses and status not in TORNADO_STATUSES:
            log.warning("the app answered status %d, which the v0.11 tornado proxy cannot send: "
                        "behind it this request would hang (see docs/deploy.md §7)", status)
        headers = []
        for pair in pairs:
            name, value = (_bytes(part) for part in pair)
            if name.lower() == b"content-length":
                self.remaining = int(value)
            if not is_front_owned(name):  # framing and hop-by-hop: this front's own
                headers.append((name, value))
        self.no_body = self.head_only or status in (204, 304)
        if self.remaining is not None and status != 204:
            headers.append((b"Content-Length", str(self.remaining).encode()))
        if self.no_body:
            self.remaining = None  # h11 sends no body; nothing to count
        headers.extend(self.connection.front.own_headers(headers))
        if self.connection.front.draining:
            headers.append((b"Connection", b"close"))
        self.connection.write(self.connection.conn.send(
            h11.Response(status_code=status, headers=headers, reason=_reason(status))))
        self.head_sent = True
        self.status = status
        if self.connection.conn.our_state is h11.SWITCHED_PROTOCOL:
            self.no_body = True  # a 2xx to CONNECT: no tunnel here, so nothing follows the head
            self.remaining = None

    def _send_body(self, data: bytes) -> None:
        body = data if self.raw_body else msgpack.unpackb(data, raw=True)
        if not isinstance(body, bytes):
            raise TypeError("a body chunk must be a msgpack string")
        if not body or self.no_body:
            return
        if self.remaining is not None:
            if len(body) > self.remaining:
                if not self.excess:
                    log.warning("the app sent more than its Content-Length; dropping the rest")
                self.excess = True
                body = body[: self.remaining]
            self.remaining -= len(body)
            if not body:
                return
        self.sent += len(body)
        self.connection.write_pieces(self.connection.conn.send_with_data_passthrough(
            h11.Data(data=body)) or [])

    def _timed_out(self) -> None:
        if not self.finished:
            log.warning("request timed out after %gs", self.connection.front.request_timeout)
            self.fail(504, "the app did not answer in time")


_date: list[Any] = [None, b""]


def http_date() -> bytes:
    """The current time as an HTTP date (RFC 9110 IMF-fixdate), formatted once a second."""
    now = int(time.time())
    if _date[0] != now:
        _date[:] = [now, email.utils.formatdate(now, usegmt=True).encode()]
    return _date[1]  # type: ignore[no-any-return]


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1")
    raise TypeError(f"header parts must be strings, not {type(value).__name__}")


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
