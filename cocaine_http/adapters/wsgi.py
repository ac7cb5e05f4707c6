# Strategy: a raw session factory, like the ASGI adapter, but the app is blocking code. At the
# end of the request the loop parses the frame, builds the environ and makes the request's only
# thread hop: one submit to a bounded ThreadPoolExecutor. The pool thread then runs the whole
# PEP 3333 cycle (start_response, write(), iteration, close()) and encodes every chunk itself
# through `http.Response`; the encoded chunks go back to the loop through a `_Pipe` that
# batches them: one call_soon_threadsafe wakes the loop for everything queued since the last
# wake-up. A response whose length is known (a declared Content-Length reached, or a list) is
# delivered in one batch with its end; a streamed one goes out item by item as it is produced.
# The pipe is bounded: above HIGH_WATER bytes not yet taken by the socket, the app's thread
# waits, so a slow consumer slows the app and a 50 MB download never sits in memory.
#
# `--threads 0` runs the app inline on the loop (one request at a time, as a gunicorn sync
# worker does): no hop at all, but the loop is blocked while the app runs.
"""WSGI (PEP 3333) adapter: HTTP sessions of a Cocaine worker -> a WSGI application."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import Config
from ..errors import BadRequestError, LocalProtocolError
from ..http import (
    Request,
    Response,
    access_log_line,
    error_response,
    parse_request,
    wsgi_environ,
)
from ..aio.session import RawSession
from .asgi import APP_ERROR, SessionGoneError, http_config
from .wsgi_io import ErrorStream, Pipe

log = logging.getLogger("cocaine_http.wsgi")
access_log = logging.getLogger("cocaine_http.access")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WSGIAdapter:
    """Session factory serving a WSGI app from a bounded thread pool (or inline).

    Args:
        app: the WSGI application.
        config: worker options; `threads` is the pool size (0: inline on the loop).
        worker: the Worker (its options give the protocol version and the app name).
    """

    def __init__(self, app: WSGIApp, config: Config, worker: Any = None) -> None:
        self.app = app
        self.config = config
        self.http = http_config(config)
        self.raw_body = worker is not None and worker.dialect.raw_body
        self.app_name = getattr(getattr(worker, "options", None), "app", None)
        self.errors = ErrorStream(logging.getLogger("cocaine_http.wsgi.errors"))
        self.access = config.access_log and access_log.isEnabledFor(logging.INFO)
        self.executor: ThreadPoolExecutor | None = None
        self.cond = threading.Condition(threading.Lock())
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.access = self.config.access_log and access_log.isEnabledFor(logging.INFO)
        if self.config.threads > 0:
            self.executor = ThreadPoolExecutor(
                self.config.threads, thread_name_prefix="cocaine-http-wsgi"
            )

    async def shutdown(self) -> None:
        executor, self.executor = self.executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)

    def __call__(self, session: RawSession) -> None:
        """Take one HTTP session (called by the worker at invoke time)."""
        _Cycle(self, session)


class _Cycle:
    """One request/response exchange; `run()` is the part that runs in the app's thread."""

    __slots__ = ("adapter", "session", "parts", "request", "pipe", "started", "wall")

    def __init__(self, adapter: WSGIAdapter, session: RawSession) -> None:
        self.adapter = adapter
        self.session = session
        self.parts: list[bytes] = []
        self.request: Request | None = None
        self.pipe: Pipe | None = None
        self.started = 0.0
        self.wall = 0.0
        session.on_chunk = self.parts.append
        session.on_end = self.on_end
        session.on_fail = self.on_fail

    # -- loop side -------------------------------------------------------------------------

    def on_end(self) -> None:
        adapter = self.adapter
        if adapter.access:
            self.started = time.perf_counter()
            self.wall = time.time()
        frame = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        try:
            request = parse_request(frame, adapter.http)
        except BadRequestError as exc:
            log.warning("bad request on session %s: %s", self.session.id, exc)
            for payload in error_response(exc.status, exc.reason, raw_body=adapter.raw_body):
                self.session.write(payload)
            self.session.end()
            self.log_access(exc.status, 0)
            return
        self.request = request
        environ = wsgi_environ(
            request, adapter.http, errors=adapter.errors,  # type: ignore[arg-type]
            session=self.session.id,
            app=adapter.app_name,
        )
        executor = adapter.executor
        if executor is None:
            self.pipe = Pipe(self.session, None, adapter.cond)
            self.run(environ)
        else:
            assert adapter.loop is not None
            self.pipe = Pipe(self.session, adapter.loop, adapter.cond)
            executor.submit(self.run, environ)

    def on_fail(self, code: int, message: str) -> None:
        log.info("session %s failed: [%s] %s", self.session.id, code, message)
        if self.pipe is not None:
            self.pipe.abort()

    # -- app thread ------------------------------------------------------------------------

    def run(self, environ: dict[str, Any]) -> None:
        """The whole WSGI call; every outcome ends the session exactly once."""
        pipe = self.pipe
        assert pipe is not None and self.request is not None
        response = Response(self.request.method, raw_body=self.adapter.raw_body)
        starter = _StartResponse(response, pipe)
        try:
            result = self.adapter.app(environ, starter)
            try:
                self.iterate(result, response, starter, pipe)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except SessionGoneError:
            pipe.close_failed()
        except Exception as exc:
            self.app_failed(exc, response, pipe)
        else:
            pipe.finish()
        self.log_access(response.status or 500, response.bytes_sent)

    def iterate(self, result: Iterable[bytes], response: Response, starter: _StartResponse,
                pipe: Pipe) -> None:
        materialized = isinstance(result, (list, tuple))
        for item in result:
            if item:
                payloads = response.body(item, True)
                if materialized or starter.length_reached():
                    pipe.hold(payloads)
                else:
                    pipe.put(payloads)
        if response.status is None:
            raise LocalProtocolError("WSGI app returned without calling start_response")
        pipe.hold(response.end())

    def app_failed(self, exc: Exception, response: Response, pipe: Pipe) -> None:
        log.error("exception in WSGI app", exc_info=exc)
        payloads = response.fail()
        if payloads:
            pipe.held = []
            pipe.hold(payloads)
            pipe.finish()
        else:
            pipe.fail(APP_ERROR, "application error")

    def log_access(self, status: int, size: int) -> None:
        if self.adapter.access:
            duration = time.perf_counter() - self.started
            access_log.info(access_log_line(
                self.request, status, size, started=self.wall, duration=duration,
                fmt=self.adapter.config.access_log_format,
            ))


class _StartResponse:
    """PEP 3333 start_response, bound to one response; `write` is the legacy write()."""

    __slots__ = ("response", "pipe", "length")

    def __init__(self, response: Response, pipe: Pipe) -> None:
        self.response = response
        self.pipe = pipe
        self.length = -1

    def __call__(self, status: str, headers: list[tuple[str, str]],
                 exc_info: Any = None) -> Callable[[bytes], None]:
        response = self.response
        if exc_info is not None:
            try:
                if response.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
            replace = True
        elif response.status is not None:
            raise LocalProtocolError("start_response called twice without exc_info")
        else:
            replace = False
        if type(status) is not str or len(status) < 4 or status[3] != " ":
            raise LocalProtocolError(f"bad WSGI status {status!r}")
        try:
            code = int(status[:3])
        except ValueError:
            raise LocalProtocolError(f"bad WSGI status {status!r}") from None
        self.length, padded = _scan(headers)
        if padded:  # Django's WSGIHandler sends Set-Cookie values with a leading space
            headers = [(name, value.strip(" \t")) for name, value in headers]
        response.start(code, headers, replace=replace)
        return self.write

    def write(self, data: bytes) -> None:
        if self.response.status is None:
            raise LocalProtocolError("write() called before start_response")
        if data:
            self.pipe.put(self.response.body(data, True))

    def length_reached(self) -> bool:
        return 0 <= self.length <= self.response.bytes_sent


def _scan(headers: list[tuple[str, str]]) -> tuple[int, bool]:
    """(declared Content-Length or -1, whether a value has surrounding whitespace to strip,
    as gunicorn does: HTTP forbids it and the proxy's parser rejects it)."""
    length = -1
    padded = False
    for name, value in headers:
        if type(value) is str and value and (value[0] in " \t" or value[-1] in " \t"):
            padded = True
        if len(name) == 14 and name.lower() == "content-length":
            try:
                length = int(value)
            except (TypeError, ValueError):
                length = -1
    return length, padded
