# Strategy: a raw session factory, like the ASGI adapter, but the app is blocking code. At the
# end of the request the loop parses the frame, builds the environ and makes the request's only
# thread hop: one job on the adapter's `Pool` (wsgi_pool.py: one queue, a thread woken only when
# none is awake to take the job). The pool thread then runs the whole PEP 3333 cycle
# (start_response, write(), iteration, close()) and encodes every chunk itself through
# `http.Response`; the encoded chunks go back to the loop through a `Pipe`, and the pipes of all
# threads through one `Outbox`: one call_soon_threadsafe wakes the loop for everything queued
# since the last wake-up. A response whose length is known (a declared Content-Length reached,
# or a list) is delivered in one batch with its end; a streamed one goes out item by item as it
# is produced. The pipe is bounded: above HIGH_WATER bytes not yet taken by the socket, the
# app's thread waits, so a slow consumer slows the app and a 50 MB download never sits in memory.
#
# No fault wedges the worker: a session that fails before its job started never calls the app,
# shutdown drops the queued jobs and waits at most the termination grace for running ones, and
# when every thread is stuck in a request that timed out (--timeout) the worker gives up (stops
# taking invokes, fails what it holds, exits) so that the runtime starts a fresh one.
#
# `--threads 0` runs the app inline on the loop (one request at a time, as a gunicorn sync
# worker does): no hop at all, but the loop is blocked while the app runs.
"""WSGI (PEP 3333) adapter: HTTP sessions of a Cocaine worker -> a WSGI application."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from ..config import Config
from ..errors import LocalProtocolError
from ..aio.session import RawSession
from ..http import Response
from ..http.response import remembered_head
from ..http.environ import EnvironBuilder
from ..protocol.worker import SESSION_TIMEOUT
from .accesslog import AccessLog
from .exchange import APP_ERROR, Exchange, SessionGoneError, http_config
from .wsgi_io import ErrorStream, Outbox, Pipe
from .wsgi_pool import Pool

log = logging.getLogger("cocaine_http.wsgi")

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
        self.environ = EnvironBuilder(self.http.root_path, errors=self.errors, app=self.app_name)
        self.access = AccessLog(config.access_log, config.access_log_format)
        self.pool: Pool | None = None
        self.outbox: Outbox | None = None
        self.cond = threading.Condition(threading.Lock())
        self.loop: asyncio.AbstractEventLoop | None = None
        self.worker = worker
        #: Seconds shutdown waits for requests still running in the pool's threads.
        self.grace = float(getattr(worker, "termination_grace", 5.0))

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.access = AccessLog(self.config.access_log, self.config.access_log_format)
        if self.config.threads > 0:
            self.pool = Pool(self.config.threads, self.loop, batch=self.config.wsgi_batch)
            self.outbox = Outbox(self.loop)

    async def shutdown(self) -> None:
        """After the sessions ended or were aborted: drop the jobs no thread has started, wait
        up to the termination grace for the running ones, flush the access log."""
        pool = self.pool
        if pool is not None:
            dropped = await asyncio.get_running_loop().run_in_executor(
                None, pool.close, self.grace)
            if dropped:
                log.warning("dropped %d queued request(s) at shutdown", dropped)
            if pool.running:
                log.error("%d WSGI thread(s) still running a request at exit", len(pool.running))
        self.access.flush()

    def thread_stuck(self) -> None:
        """A request timed out while its thread runs on: when every thread is stuck so, the
        worker cannot serve any more and gives up (the runtime starts a fresh one)."""
        pool = self.pool
        if pool is not None and pool.exhausted:
            reason = (f"all {pool.size} WSGI threads are stuck in requests that timed out "
                      f"after {self.config.timeout} s")
            give_up = getattr(self.worker, "give_up", None)
            if give_up is not None:
                give_up(reason)
            else:
                log.error("%s", reason)

    def __call__(self, session: RawSession) -> None:
        """Take one HTTP session (called by the worker at invoke time)."""
        _Cycle(self, session)

    @property
    def session_factory(self) -> Callable[[Any], Any]:
        """What to register with the worker: the same as calling the adapter, one call less."""
        return partial(_Cycle, self)


class _Cycle(Exchange):
    """One request/response exchange; `run()` is the part that runs in the app's thread."""

    __slots__ = ("pipe", "job", "environ", "response")

    def __init__(self, adapter: WSGIAdapter, session: RawSession) -> None:
        Exchange.__init__(self, adapter, session)  # not super(): about 0.3 µs less per request
        self.pipe: Pipe | None = None
        self.job: Callable[[], None] | None = None
        self.environ: dict[str, Any] | None = None
        self.response: Response | None = None

    # -- loop side -------------------------------------------------------------------------

    def on_end(self) -> None:
        request = self.read_request()
        if request is None:
            return
        adapter = self.adapter
        environ = adapter.environ(request, self.session.id)
        if self.session.trace is not None:  # v0.12: the invoke's trace (docs/http.md)
            environ["cocaine.trace"] = self.session.trace
        pool = adapter.pool
        if pool is None:
            self.pipe = Pipe(self.session, None, adapter.cond)
            self.run(environ)
        else:
            self.pipe = Pipe(self.session, adapter.outbox, adapter.cond)
            self.environ = environ
            self.job = self  # the cycle is its own job: no partial per request
            pool.submit(self)

    def __call__(self) -> None:
        """The pool's job: the WSGI call with the environ on_end() built."""
        environ, self.environ = self.environ, None
        assert environ is not None
        self.run(environ)

    def on_fail(self, code: int, message: str) -> None:
        log.info("session %s failed: [%s] %s", self.session.id, code, message)
        if self.pipe is not None:
            self.pipe.abort()
        pool = self.adapter.pool
        if (code == SESSION_TIMEOUT and pool is not None and self.job is not None
                and pool.mark_stuck(self.job)):
            self.adapter.thread_stuck()

    # -- app thread ------------------------------------------------------------------------

    def run(self, environ: dict[str, Any]) -> None:
        """The whole WSGI call; every outcome ends the session exactly once."""
        pipe = self.pipe
        assert pipe is not None and self.request is not None
        try:
            if pipe.aborted:  # the session failed while the job was queued: no app call
                return
            adapter = self.adapter
            response = self.response = Response(self.request.method, adapter.raw_body)
            try:
                result = adapter.app(environ, self.start_response)
                if type(result) is list:  # the usual answer: whole, no close(), one write
                    self.send_list(result, response, pipe)
                else:
                    try:
                        self.iterate(result, response, pipe)
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
            if adapter.access.enabled:
                self.log_access(response.status or 500, response.bytes_sent)
        finally:
            self.job = None  # the job holds this cycle: drop the cycle for reference counting

    @staticmethod
    def send_list(result: list[bytes], response: Response, pipe: Pipe) -> None:
        """A list body: every item and the end held for one finish() (the last item ends
        the body in the same Response call)."""
        if response.status is None:
            raise LocalProtocolError("WSGI app returned without calling start_response")
        if len(result) == 1 and result[0]:
            pipe.hold(response.body(result[0], False))
            return
        for item in result:
            if item:
                pipe.hold(response.body(item, True))
        pipe.hold(response.end())

    def iterate(self, result: Iterable[bytes], response: Response, pipe: Pipe) -> None:
        """Any other iterable: items go out as they come, unless the whole body is known (a
        tuple). An item that reaches the declared Content-Length ends the body and the
        iteration (PEP 3333: the server should stop iterating once enough data was sent), so
        the response leaves in one batch with its end, without asking for the next item."""
        materialized = isinstance(result, tuple)
        for item in result:
            if item:
                declared = response.declared
                if declared is not None and response.bytes_sent + len(item) >= declared:
                    pipe.hold(response.body(item, False))  # raises if the item goes past it
                    return
                if materialized:
                    pipe.hold(response.body(item, True))  # the whole body is there
                else:
                    pipe.put(response.body(item, True))
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

    # -- PEP 3333 callables, given to the app ----------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        """PEP 3333 start_response; returns the legacy write()."""
        response = self.response
        assert response is not None
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
        key: tuple[object, ...] | None = None
        if type(headers) is list:
            try:
                key = (status, *headers)
                hit = _STARTS.get(key)
            except TypeError:  # a list pair or an unhashable status: the long way
                key = hit = None
            if hit is not None:
                response.start_encoded(hit[0], hit[1], hit[2], replace)
                return self.write
        code = _CODES.get(status) if type(status) is str else None
        if code is None:
            code = _status_code(status)
        if _padded(headers):  # Django's WSGIHandler sends Set-Cookie values with a leading space
            headers = [(pair[0], pair[1].strip(" \t")) if _is_padded(pair) else pair
                       for pair in headers]
        response.start(code, headers, replace=replace)
        if key is not None and (head := remembered_head(code, headers)) is not None:
            if len(_STARTS) >= _CACHE_SIZE:
                _STARTS.clear()
            _STARTS[key] = (code, head[0], head[1])
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333 write(): the data goes out now (the app's thread may wait for the socket)."""
        response = self.response
        assert response is not None and self.pipe is not None
        if response.status is None:
            raise LocalProtocolError("write() called before start_response")
        if data:
            self.pipe.put(response.body(data, True))


#: (status line, *header pairs) -> (code, head, declared) for a start_response() met before
#: whose head the Response layer remembers as valid (bounded): the usual call is one lookup.
_STARTS: dict[tuple[object, ...], tuple[int, bytes, int | None]] = {}
#: WSGI status lines seen, with their code (bounded: cleared when full).
_CODES: dict[str, int] = {}
#: Header lists (as tuples) already scanned for padding, with the answer (bounded).
_SCANNED: dict[tuple[object, ...], bool] = {}
_CACHE_SIZE = 1024
#: Header lists with more bytes of values than this are scanned every time, not remembered.
_SCAN_BYTES = 2048


def _status_code(status: object) -> int:
    """The code of a WSGI status line ("200 OK"); LocalProtocolError for anything else."""
    if type(status) is not str or len(status) < 4 or status[3] != " ":
        raise LocalProtocolError(f"bad WSGI status {status!r}")
    try:
        code = int(status[:3])
    except ValueError:
        raise LocalProtocolError(f"bad WSGI status {status!r}") from None
    if len(_CODES) >= _CACHE_SIZE:
        _CODES.clear()
    _CODES[status] = code
    return code


def _padded(headers: list[tuple[str, str]]) -> bool:
    """Whether a header value has surrounding whitespace to strip, as gunicorn does (HTTP
    forbids it and the proxy's parser rejects it); remembered per header list."""
    try:
        key = tuple(headers)
        hit = _SCANNED.get(key)
    except TypeError:  # list pairs: unhashable, scanned every time
        key, hit = None, None
    if hit is not None:
        return hit
    padded = False
    size = 0
    for pair in headers:  # a malformed pair is left to Response.start() to refuse
        if _is_padded(pair):
            padded = True
        value = pair[1] if type(pair) is tuple and len(pair) == 2 else None
        size += len(value) if type(value) is str else _SCAN_BYTES + 1
    if key is not None and size <= _SCAN_BYTES:  # long values (a nonce, a cookie) churn
        if len(_SCANNED) >= _CACHE_SIZE:
            _SCANNED.clear()
        _SCANNED[key] = padded
    return padded


def _is_padded(pair: object) -> bool:
    value = pair[1] if type(pair) is tuple and len(pair) == 2 else None
    return type(value) is str and bool(value) and (value[0] in _BLANK or value[-1] in _BLANK)


_BLANK = " \t"
