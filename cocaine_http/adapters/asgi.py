# Strategy: the ASGI adapter is a raw session factory: the worker calls it synchronously at
# invoke time, it gathers the request frame from the session's chunks and, at the end of the
# request (choke), parses it with the sans-IO core and starts exactly one Task that runs the app,
# scheduled through the loop: the apps of one read then run one after the other in the next
# iteration, after every request of the read was parsed, which measured cheaper on the socket
# than starting each Task eagerly inside the read (docs/http.md). The request frame, a bad
# request's answer and the access log are `Exchange`'s.
# Everything else is plain callbacks: receive() answers from the prepared http.request
# messages without suspending, send() validates order through `http.Response` and writes the
# chunks it returns straight to the session. Only a streaming response (more_body=True) awaits
# the session's drain(), so a slow consumer slows the app instead of filling memory.
#
# After the response is complete, or once the session failed, receive() returns
# http.disconnect; a failed session also cancels the app's Task (nobody is left to answer)
# unless the app is waiting in receive(), which then returns http.disconnect, and send()
# raises OSError, as ASGI spec 2.4 asks. The app failing before http.response.start gets
# a 500; after it, or returning without finishing, the session gets a Cocaine error.
"""ASGI 3 adapter: HTTP sessions of a Cocaine worker -> an ASGI application."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ..config import Config
from ..errors import LocalProtocolError
from ..http import Response, asgi_scope, request_messages
from .accesslog import AccessLog
from .exchange import (
    APP_ERROR,
    REQUEST_PIECE,
    Exchange,
    SessionGoneError,
    http_config,
)
from .lifespan import Lifespan
from ..aio.session import RawSession

__all__ = ["ASGIAdapter", "SessionGoneError"]

log = logging.getLogger("cocaine_http.asgi")

ASGIApp = Callable[..., Awaitable[None]]

#: Start each app's Task eagerly (Python 3.12+ only: its first step runs inside on_end). Off:
#: on the socket bench it saved nothing on a bare app and cost Starlette about 4 µs per request
#: (Python 3.13), as parsing and running apps interleave instead of running in batches.
EAGER_TASKS = False

_NO_RESPONSE = Response()


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
        self.access = AccessLog(config.access_log, config.access_log_format)
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self) -> None:
        """Lifespan startup (raises LifespanError on failure); then the access log is set up
        (the app may have configured logging by then)."""
        self.loop = asyncio.get_running_loop()
        await self.lifespan.startup()
        self.access = AccessLog(self.config.access_log, self.config.access_log_format)

    async def shutdown(self) -> None:
        """Lifespan shutdown, after the sessions drained; the access log is flushed."""
        await self.lifespan.shutdown()
        self.access.flush()

    def state(self) -> dict[str, Any] | None:
        return self.lifespan.state if self.lifespan.supported else None

    def __call__(self, session: RawSession) -> None:
        """Take one HTTP session (called by the worker at invoke time)."""
        _Cycle(self, session)

    @property
    def session_factory(self) -> Callable[[Any], Any]:
        """What to register with the worker: the same as calling the adapter, one call less."""
        return partial(_Cycle, self)


class _Cycle(Exchange):
    """One request/response exchange on one session."""

    __slots__ = ("response", "messages", "task", "disconnected", "finished", "waiter")

    def __init__(self, adapter: ASGIAdapter, session: RawSession) -> None:
        Exchange.__init__(self, adapter, session)  # not super(): about 0.3 µs less per request
        self.response: Response = _NO_RESPONSE
        self.messages: Any = None
        self.task: asyncio.Task[None] | None = None
        self.disconnected = False
        self.finished = False
        self.waiter: asyncio.Future[None] | None = None

    # -- session callbacks -----------------------------------------------------------------

    def on_end(self) -> None:
        request = self.read_request()
        if request is None:
            self.finished = True
            return
        adapter = self.adapter
        self.response = Response(request.method, adapter.raw_body)
        body = request.body
        if type(body) is bytes and len(body) <= REQUEST_PIECE:
            self.messages = {"type": "http.request", "body": body, "more_body": False}
        else:
            self.messages = request_messages(request, adapter.http.body_chunk_size)
        scope = asgi_scope(request, adapter.http, adapter.scope_state, "2.4")
        if self.session.trace is not None:  # v0.12: the invoke's trace (docs/http.md)
            scope.setdefault("extensions", {})["cocaine.trace"] = self.session.trace
        loop = adapter.loop
        if loop is None:  # Python 3.11 pays a getpid() syscall per get_running_loop()
            loop = adapter.loop = asyncio.get_running_loop()
        if EAGER_TASKS and sys.version_info >= (3, 12):
            task = asyncio.Task(self.run(scope), loop=loop, eager_start=True)  # type: ignore[call-arg]
        else:
            task = loop.create_task(self.run(scope))
        if not task.done():  # the loop holds tasks weakly: the adapter's set keeps this one
            self.task = task
            adapter.tasks.add(task)

    def on_fail(self, code: int, message: str) -> None:
        if self.finished:
            return
        log.info("session %s failed: [%s] %s", self.session.id, code, message)
        self.finished = True
        # an app waiting in receive() is told (http.disconnect) and left to end; one busy
        # elsewhere is cancelled, since nobody is left to answer
        listening = self.waiter is not None and not self.waiter.done()
        self.disconnect()
        if not listening and self.task is not None and not self.task.done():
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
            if self.task is not None:
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
                self.session.write_chunks(response.body(message.get("body", b""), True))
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

    def complete(self, payloads: list[Any]) -> None:
        self.finished = self.disconnected = True
        self.session.write_chunks(payloads, True)
        if self.adapter.access.enabled:
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
