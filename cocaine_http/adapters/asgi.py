# Strategy: the ASGI adapter is a raw session factory: the worker calls it synchronously at
# invoke time, it gathers the request frame from the session's chunks and, at the end of the
# request (choke), parses it with the sans-IO core and starts exactly one Task that runs the app.
# Everything else is plain callbacks: receive() answers from the prepared http.request
# messages without suspending, send() validates order through `http.Response` and writes the
# chunks it returns straight to the session. Only a streaming response (more_body=True) awaits
# the session's drain(), so a slow consumer slows the app instead of filling memory.
#
# After the response is complete, or once the session failed, receive() returns
# http.disconnect; a failed session also cancels the app's Task (nobody is left to answer) and
# send() raises OSError, as ASGI spec 2.4 asks. The app failing before http.response.start gets
# a 500; after it, or returning without finishing, the session gets a Cocaine error.
"""ASGI 3 adapter: HTTP sessions of a Cocaine worker -> an ASGI application."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ..config import Config
from ..errors import BadRequestError, LocalProtocolError
from ..http import (
    HttpConfig,
    Request,
    Response,
    access_log_line,
    asgi_scope,
    error_response,
    parse_request,
    request_messages,
)
from ..http.scope import ASGI_VERSION
from .lifespan import Lifespan
from ..aio.session import RawSession

log = logging.getLogger("cocaine_http.asgi")
access_log = logging.getLogger("cocaine_http.access")

#: Largest body per http.request message. A body that arrived as bytes (a frame up to
#: http.request.LARGE_FRAME) goes as it is, in one message; a larger one is a view into the
#: frame and goes in slices of this size, each copied to bytes as the app asks for it. Small
#: slices come from reused heap memory: one 1 MiB copy per request cost about 400 µs more
#: (fresh pages from the kernel each time) than 16 slices of 64 KiB.
REQUEST_PIECE = 64 * 1024
#: Session error code for an app failure after the response head went out.
APP_ERROR = 1

ASGIApp = Callable[..., Awaitable[None]]


_NO_RESPONSE = Response()
_NO_PARTS: list[bytes] = []


class SessionGoneError(ConnectionResetError):
    """send() after the session ended or failed (ASGI asks for an OSError subclass)."""


def http_config(config: Config) -> HttpConfig:
    """The sans-IO core's limits and options, from the worker's Config."""
    return HttpConfig(
        max_body_size=config.max_body_size,
        max_header_size=config.max_header_size,
        max_headers=config.max_headers,
        root_path=config.root_path,
        proxy_headers=config.proxy_headers,
        body_chunk_size=REQUEST_PIECE,
    )


class ASGIAdapter:
    """Session factory serving an ASGI 3 app; also owns the app's lifespan.

    Args:
        app: the ASGI application.
        config: worker options (limits, root path, lifespan mode, access log).
        worker: the Worker (only its options are read: the protocol version).
    """

    def __init__(self, app: ASGIApp, config: Config, worker: Any = None) -> None:
        self.app = app
        self.config = config
        self.http = http_config(config)
        self.raw_body = worker is not None and worker.dialect.raw_body
        self.lifespan = Lifespan(app, config.lifespan)
        #: The lifespan state each scope gets a copy of (the dict is filled in at startup).
        self.scope_state = self.lifespan.state if self.lifespan.supported else None
        self.access = config.access_log and access_log.isEnabledFor(logging.INFO)
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self) -> None:
        """Lifespan startup (raises LifespanError on failure)."""
        self.loop = asyncio.get_running_loop()
        await self.lifespan.startup()
        self.access = self.config.access_log and access_log.isEnabledFor(logging.INFO)

    async def shutdown(self) -> None:
        """Lifespan shutdown, after the sessions drained."""
        await self.lifespan.shutdown()

    def state(self) -> dict[str, Any] | None:
        return self.lifespan.state if self.lifespan.supported else None

    def __call__(self, session: RawSession) -> None:
        """Take one HTTP session (called by the worker at invoke time)."""
        _Cycle(self, session)

    @property
    def session_factory(self) -> Callable[[Any], Any]:
        """What to register with the worker: the same as calling the adapter, one call less."""
        return partial(_Cycle, self)


class _Cycle:
    """One request/response exchange on one session."""

    __slots__ = (
        "adapter", "session", "parts", "request", "response", "messages", "task",
        "disconnected", "finished", "waiter", "started", "wall",
    )  # fmt: skip

    def __init__(self, adapter: ASGIAdapter, session: RawSession) -> None:
        self.adapter = adapter
        self.session = session
        self.parts: list[bytes] = []
        self.request: Request | None = None
        self.response: Response = _NO_RESPONSE
        self.messages: Any = None
        self.task: asyncio.Task[None] | None = None
        self.disconnected = False
        self.finished = False
        self.waiter: asyncio.Future[None] | None = None
        self.started = self.wall = 0.0
        session.on_chunk = self.parts.append
        session.on_end = self.on_end
        session.on_fail = self.on_fail

    # -- session callbacks -----------------------------------------------------------------

    def on_end(self) -> None:
        adapter = self.adapter
        if adapter.access:
            self.started = time.perf_counter()
            self.wall = time.time()
        parts = self.parts
        frame = parts[0] if len(parts) == 1 else b"".join(parts)
        self.parts = _NO_PARTS
        try:
            request = parse_request(frame, adapter.http)
        except BadRequestError as exc:
            log.warning("bad request on session %s: %s", self.session.id, exc)
            self.reply_error(exc.status, exc.reason)
            return
        self.request = request
        self.response = Response(request.method, adapter.raw_body)
        body = request.body
        if type(body) is bytes and len(body) <= REQUEST_PIECE:
            self.messages = {"type": "http.request", "body": body, "more_body": False}
        else:
            self.messages = request_messages(request, adapter.http.body_chunk_size)
        if adapter.http.root_path:
            scope = asgi_scope(request, adapter.http, adapter.scope_state, spec_version="2.4")
        else:  # asgi_scope() without a root path, inlined: this is the hot path
            scope = {
                "type": "http",
                "asgi": {"version": ASGI_VERSION, "spec_version": "2.4"},
                "http_version": request.http_version,
                "server": request.server,
                "client": request.client,
                "scheme": request.scheme,
                "method": request.method,
                "root_path": "",
                "path": request.path,
                "raw_path": request.raw_path,
                "query_string": request.query_string,
                "headers": request.headers,
            }
            if adapter.scope_state is not None:
                scope["state"] = adapter.scope_state.copy()
        # The loop holds tasks weakly: the adapter's set keeps this one until it is done.
        loop = adapter.loop
        if loop is None:  # Python 3.11 pays a getpid() syscall per get_running_loop()
            loop = adapter.loop = asyncio.get_running_loop()
        task = self.task = loop.create_task(self.run(scope))
        adapter.tasks.add(task)

    def on_fail(self, code: int, message: str) -> None:
        if self.finished:
            return
        log.info("session %s failed: [%s] %s", self.session.id, code, message)
        self.finished = True
        self.disconnect()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # -- the app ---------------------------------------------------------------------------

    async def run(self, scope: dict[str, Any]) -> None:
        try:
            await self.adapter.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.finished:
                self.fail_session("request cancelled")
            raise
        except Exception as exc:
            if not (self.disconnected and isinstance(exc, OSError)):
                log.error("exception in ASGI app", exc_info=exc)
            self.app_failed("application error")
        else:
            if not self.finished and not self.response.done:
                log.error("ASGI app returned without completing the response")
                self.app_failed("application returned without completing the response")
        finally:
            self.adapter.tasks.discard(self.task)

    async def receive(self) -> dict[str, Any]:
        messages = self.messages
        if type(messages) is dict:
            self.messages = None
            return messages
        if messages is not None:
            message = next(messages, None)
            if message is not None:
                if not message.get("more_body"):
                    self.messages = None
                return message  # type: ignore[no-any-return]
            self.messages = None
        if not self.disconnected:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.finished:
            raise SessionGoneError("the session is closed")
        kind = message["type"]
        response = self.response
        if kind == "http.response.body":
            if response.status is None:
                raise LocalProtocolError("http.response.body sent before http.response.start")
            if message.get("more_body", False):
                self.write(response.body(message.get("body", b""), True))
                await self.session.drain()
            else:
                self.complete(response.body(message.get("body", b""), False))
        elif kind == "http.response.start":
            if response.status is not None:
                raise LocalProtocolError("http.response.start sent twice")
            response.start(message["status"], message.get("headers", ()))
        else:
            raise LocalProtocolError(f"unexpected ASGI message {kind!r}")

    # -- writing ---------------------------------------------------------------------------

    def write(self, payloads: list[Any]) -> None:
        write = self.session.write
        for payload in payloads:
            write(payload)

    def write_last(self, payloads: list[Any]) -> None:
        """The last payloads and the end of the response: one write (head, body and choke
        leave as one buffer list)."""
        self.session.write_chunks(payloads, end=True)

    def complete(self, payloads: list[Any]) -> None:
        self.finished = self.disconnected = True
        self.session.write_chunks(payloads, end=True)  # write_last(), inlined: the hot path
        if self.adapter.access:
            self.log_access(self.response.status or 0, self.response.bytes_sent)
        if self.waiter is not None:
            self.disconnect()

    def disconnect(self) -> None:
        self.disconnected = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def app_failed(self, reason: str) -> None:
        if self.finished:
            return
        payloads = self.response.fail()
        if payloads:
            self.complete(payloads)
        else:
            self.fail_session(reason)

    def fail_session(self, reason: str) -> None:
        self.finished = True
        self.session.error(APP_ERROR, reason)
        self.log_access(self.response.status or 500, self.response.bytes_sent)
        self.disconnect()

    def reply_error(self, status: int, reason: str) -> None:
        self.finished = True
        self.write_last(error_response(status, reason, raw_body=self.adapter.raw_body))
        self.log_access(status, 0)

    def log_access(self, status: int, size: int) -> None:
        if self.adapter.access:
            duration = time.perf_counter() - self.started
            access_log.info(access_log_line(
                self.request, status, size, started=self.wall, duration=duration,
                fmt=self.adapter.config.access_log_format,
            ))
