# Strategy: an HTTP/1.1 server on h11 and asyncio that behaves like Cocaine's HTTP proxies
# (docs/protocol.md §6). One asyncio.Protocol per client connection owns an h11.Connection; a
# request is read whole (the envelope carries the full body), routed, packed into the request frame
# `[method, uri, "1.1", [[name, value], ...], body]` and enqueued on the engine with a Reply as the
# sink. The Reply turns the worker's chunks into HTTP as they arrive: the first chunk is the head
# `[status, [[name, value], ...]]`, later ones are msgpack strings of body bytes (empty skipped).
# Content-Length from the app is honoured (excess dropped, shortfall closes the connection),
# otherwise h11 frames the body (chunked for HTTP/1.1). Errors before the head become a status
# (500 app error, 502 no worker, 503 queue full / engine not active, 504 timeout); after the head
# the connection is closed. Reading is paused while a request is in flight, so pipelined requests
# wait in the kernel, and resumed when the response is complete (keep-alive).
#
# Bounds (docs/dev-runtime.md "Client limits"): one timer per connection, its meaning set by the
# phase: keep-alive (waiting for a request: close quietly), head (from the first byte of a
# request: 408), body (client silence: 408), reply (the client leaves the response unread:
# abort). What the front holds for a response is the transport's write buffer, whose high-water
# mark is `max_response_buffer`. Past it the session's worker channel is paused (engine.Flow) when
# the session is that worker's only one, and resumed once the client drains; a shared worker is
# never paused (the protocol has no per-session flow control: every other session would stall),
# so there the session is failed instead (connection aborted, the rest of its chunks dropped), as
# it is when another session arrives at a paused worker.
"""The dev runtime's HTTP front: HTTP requests in, Cocaine sessions out."""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import re
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

import h11
import msgpack

from .. import __version__
from ..http.response import is_front_owned
from ..protocol.dialect import pack, raw_header
from ..proxy.checks import HeadGuard, RequestRejected, check_request, check_trailers
from .engine import (BROKEN_QUEUE, NOT_ACTIVE, QUEUE_FULL, SHUTTING_DOWN, SPAWN_FAILED, Engine,
                     Flow)
from .slave import DISCONNECTED, TIMED_OUT

log = logging.getLogger("cocaine_http.dev.front")

_ROUTE = re.compile(rb"^/([^/]*)/([^/?]*)(.*)$", re.S)
POWERED_BY = (b"X-Powered-By", b"Cocaine")
SERVER = (b"Server", f"cocaine-http/{__version__}".encode())
#: The statuses the v0.11 tornado proxy can answer: Python 2's httplib.responses. For any other
#: status its reply handler raises and the client never gets an answer (docs/deploy.md).
TORNADO_STATUSES = frozenset(
    {100, 101, *range(200, 207), *range(300, 308), *range(400, 418), *range(500, 506)}
)


def status_for_error(message: str) -> int:
    """The HTTP status for a session that failed before the app sent its head."""
    if message == QUEUE_FULL:
        return 503
    if message in (NOT_ACTIVE, SHUTTING_DOWN, BROKEN_QUEUE):
        return 503
    if message.startswith(SPAWN_FAILED) or message == DISCONNECTED:
        return 502
    if message == TIMED_OUT:
        return 504
    return 500


def route(target: bytes, headers: list[tuple[bytes, bytes]], app: str,
          root_route: bool, others: Container[str] = ()) -> tuple[str, str, bytes] | None:
    """(service, event, uri) for a request, as Cocaine's proxy routes it, or None (404).

    `X-Cocaine-Service` and `X-Cocaine-Event` together win, with the full target as uri; else
    `/<app>/<event><rest>` with `<rest>` as uri (a `/` prepended when missing, as the tornado
    and v0.12 proxies do), `<app>` being the front's app or one of `others` (apps started
    through the node service); else, in dev mode, any path goes to the app's `http` event
    unchanged.
    """
    lowered = {name.lower(): value for name, value in headers}
    service = lowered.get(b"x-cocaine-service")
    event = lowered.get(b"x-cocaine-event")
    if service and event:
        return service.decode("latin-1"), event.decode("latin-1"), target
    match = _ROUTE.match(target)
    name = match.group(1).decode("latin-1") if match is not None else ""
    if match is not None and (name == app or name in others) and match.group(2):
        rest = match.group(3)
        if not rest.startswith(b"/"):
            rest = b"/" + rest
        return name, match.group(2).decode("latin-1"), rest
    if root_route:
        return app, "http", target
    return None


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
            than the app writes; past it the worker is paused if the session is its only one,
            else the session fails and the connection is dropped.
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


def request_frame(method: bytes, uri: bytes, version: bytes,
                  headers: list[tuple[bytes, bytes]], body: bytes | bytearray) -> bytes:
    """The packed request frame `[method, uri, version, headers, body]`, copying the body once
    (packing it as an element would copy it twice: a large body is the front's largest cost)."""
    head = pack([method, uri, version, [list(h) for h in headers]])  # a fixarray of 4
    return b"".join((b"\x95", memoryview(head)[1:], raw_header(len(body)), body))


class Front:
    """The HTTP front of one engine.

    Args:
        engine: where requests are enqueued (None: only the apps of `apps`).
        host: bind address (loopback by default).
        port: TCP port; 0 picks a free one (read it back from `port`).
        request_timeout: seconds the app may stay silent: until the response head, then between
            body chunks; past it the client gets 504 (or a closed connection after the head).
            0 means no limit. A response that keeps streaming is never cut.
        max_body_size: larger request bodies get 413.
        root_route: route paths that do not name the app to its `http` event (dev mode).
        powered_by: add `X-Powered-By: Cocaine` to every response, as Cocaine's native proxy
            does (the tornado proxy does not).
        server_header, date_header: add `Server: cocaine-http/<version>` and `Date` to every
            response that lacks them.
    """

    def __init__(self, engine: Engine | None, *, host: str = "127.0.0.1", port: int = 8080,
                 request_timeout: float = 30.0, max_body_size: int = 16 * 1024 * 1024,
                 root_route: bool = True, apps: dict[str, Engine] | None = None,
                 powered_by: bool = True, server_header: bool = True,
                 date_header: bool = True, limits: ClientLimits | None = None) -> None:
        self.engine = engine
        self.limits = limits or ClientLimits()
        #: Headers the front adds to every response.
        self.extra_headers: list[tuple[bytes, bytes]] = [POWERED_BY] if powered_by else []
        self.server_header = server_header
        self.date_header = date_header
        #: The other apps the front routes to by name (started through the node service); the
        #: runtime adds and removes them in this dict.
        self.apps: dict[str, Engine] = {} if apps is None else apps
        self.host = host
        self.port = port
        self.request_timeout = request_timeout
        self.max_body_size = max_body_size
        self.root_route = root_route
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[HTTPConnection] = set()

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
        self._server = await loop.create_server(lambda: HTTPConnection(self), self.host,
                                                self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop_accepting(self) -> None:
        """Refuse new connections; open ones carry on (their sessions may still finish)."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Stop accepting and close every client connection."""
        self.stop_accepting()
        for connection in list(self._connections):
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
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.reply: Reply | None = None
        self.closing = False
        #: keep-alive, head, body, reply or drain (a response still unread): what the connection
        #: waits for, and so what its timer means.
        self.phase = "keep-alive"
        self.write_paused = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.front._connections.add(self)
        bound = self.front.limits.max_response_buffer
        if bound:
            transport.set_write_buffer_limits(high=bound)
        self._wait_for_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.front._connections.discard(self)
        self._set_timer(0, None)
        if self.reply is not None:
            self.reply.cancel()
        self.transport = None

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
            self._reject(exc)
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

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._process()
        return None

    # -- requests --------------------------------------------------------------------------------

    def _process(self) -> None:
        while self.reply is None and self.transport is not None and not self.closing:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                try:
                    check_request(event.method, event.target, list(event.headers.raw_items()),
                                  event.http_version)
                except RequestRejected as exc:
                    self._reject(exc)
                    return
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > self.front.max_body_size:
                    self.send_simple(413, "request body too large", close=True)
            elif isinstance(event, h11.EndOfMessage):
                try:
                    check_trailers(list(event.headers.raw_items()))
                except RequestRejected as exc:
                    self._reject(exc)
                    return
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()

    def _on_request(self, request: h11.Request) -> None:
        self.request, self.body = request, bytearray()
        self._enter("body", self.front.limits.idle_timeout, self._body_timed_out)
        for name, value in request.headers:
            if name == b"content-length" and int(value) > self.front.max_body_size:
                self.send_simple(413, "request body too large", close=True)
                return
        if self.conn.they_are_waiting_for_100_continue:
            self.write(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        log.info("bad request from a client: %s", exc)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.send_simple(exc.error_status_hint, f"bad request: {exc}", close=True)
        else:
            self.close()

    def _reject(self, exc: RequestRejected) -> None:
        log.info("refused a request from a client: %s", exc)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.send_simple(exc.status, f"bad request: {exc.reason}", close=True)
        else:
            self.close()

    def _dispatch(self) -> None:
        request = self.request
        assert request is not None and self.transport is not None
        headers = list(request.headers.raw_items())
        front, own = self.front, self.front.engine
        where = route(request.target, headers, own.name if own else "",
                      front.root_route and own is not None, front.apps)
        engine = None
        if where is not None:
            engine = own if own is not None and where[0] == own.name else front.apps.get(where[0])
        if where is None or engine is None:
            self.send_simple(404, "no such app")
            return
        _, event, uri = where
        frame = request_frame(request.method, uri, request.http_version, headers, self.body)
        self.body = bytearray()
        self.transport.pause_reading()
        self._enter("reply", 0, None)
        self.reply = Reply(self, head_only=request.method == b"HEAD")
        engine.enqueue(event, frame, self.reply)

    # -- responses -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and data and not self.closing:
            self.transport.write(data)

    def send_simple(self, status: int, text: str, *, close: bool = False) -> None:
        """A short text/plain response made by the front itself."""
        body = (text + "\n").encode("utf-8")
        headers = [(b"Content-Type", b"text/plain; charset=utf-8"),
                   (b"Content-Length", str(len(body)).encode())]
        headers += self.front.own_headers(headers)
        if close:
            headers.append((b"Connection", b"close"))
        try:
            self.write(self.conn.send(h11.Response(status_code=status, headers=headers,
                                                   reason=_reason(status))))
            if self.request is None or self.request.method != b"HEAD":
                self.write(self.conn.send(h11.Data(data=body)))
            self.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            log.exception("cannot send a %d response", status)
            self.close()
            return
        self.finish()

    def finish(self) -> None:
        """The response is complete: start the next cycle (keep-alive) or close."""
        self.reply = None
        if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is not h11.DONE:
            self.close()
            return
        if self.conn.our_state is not h11.DONE:
            self.close()
            return
        self.conn.start_next_cycle()
        self.request = None
        try:
            self.guard.reset(self.conn.trailing_data[0])
        except RequestRejected as exc:
            self._reject(exc)
            return
        if self.write_paused:  # the next request waits until the client has read this response
            self._enter("drain", self.front.limits.idle_timeout, self._unread_timed_out)
        else:
            self._next_request()

    def _next_request(self) -> None:
        if self.transport is not None:
            self._wait_for_request()
            if self.conn.trailing_data[0]:  # part of a pipelined request is already here
                self._enter("head", self.front.limits.header_timeout, self._head_timed_out)
            self.transport.resume_reading()
            self._process()

    def close(self) -> None:
        """Close the connection after writing what is queued."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection: the response cannot be finished correctly."""
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


class Reply:
    """The sink of one HTTP request's session (docs/protocol.md §6.2)."""

    def __init__(self, connection: HTTPConnection, *, head_only: bool) -> None:
        self.connection = connection
        self.head_only = head_only
        self.head_sent = False
        self.finished = False
        self.no_body = head_only
        self.remaining: int | None = None
        self.excess = False
        self.flow: Flow | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        """(Re)start the silence timer: each chunk from the app shows it is still working."""
        if self._timer is not None:
            self._timer.cancel()
        timeout = self.connection.front.request_timeout
        if timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def cancel(self) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
        if self.flow is not None:
            self.flow.resume()

    # -- back-pressure ---------------------------------------------------------------------------

    def attach_flow(self, flow: Flow) -> None:
        """The engine's handle on this session's worker channel."""
        self.flow = flow
        flow.on_shared = self._shared

    def client_behind(self) -> None:
        """More than max_response_buffer is unread: pause the worker, or fail the session."""
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
        self._fail_response(500, "response buffer full")

    # -- ReplySink -------------------------------------------------------------------------------

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
            self._fail_response(500, f"bad response from the app: {exc}")

    def on_error(self, code: int, message: str) -> None:
        if self.finished:
            return
        log.info("session failed: [%d] %s", code, message)
        self._fail_response(status_for_error(message), message)

    def on_choke(self) -> None:
        if self.finished:
            return
        if not self.head_sent:
            self._fail_response(500, "the app ended the session without a response")
            return
        if self.remaining:
            log.warning("the app sent %d bytes less than its Content-Length", self.remaining)
            self.cancel()
            self.connection.abort()
            return
        self.cancel()
        self.connection.write(self.connection.conn.send(h11.EndOfMessage()))
        self.connection.finish()

    # -- internals -------------------------------------------------------------------------------

    def _send_head(self, data: bytes) -> None:
        head = msgpack.unpackb(data, raw=True)
        if not isinstance(head, (list, tuple)) or len(head) != 2:
            raise ValueError("the first chunk must be [status, [[name, value], ...]]")
        status, pairs = head
        if type(status) is not int or not 200 <= status <= 999:
            raise ValueError(f"bad status {status!r}")
        if status not in TORNADO_STATUSES:
            log.warning("the app answered status %d, which the v0.11 tornado proxy cannot send: "
                        "behind it this request would hang (see docs/deploy.md)", status)
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
        self.connection.write(self.connection.conn.send(
            h11.Response(status_code=status, headers=headers, reason=_reason(status))))
        self.head_sent = True

    def _send_body(self, data: bytes) -> None:
        body = msgpack.unpackb(data, raw=True)
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
        self.connection.write(self.connection.conn.send(h11.Data(data=body)))

    def _fail_response(self, status: int, message: str) -> None:
        self.cancel()
        if self.head_sent:
            self.connection.abort()
        else:
            self.connection.send_simple(status, message)

    def _timed_out(self) -> None:
        if not self.finished:
            log.warning("request timed out after %gs", self.connection.front.request_timeout)
            self._fail_response(504, "the app did not answer in time")


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
