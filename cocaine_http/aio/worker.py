# Strategy: the asyncio shell around protocol.worker.WorkerConnection. The Channel decodes and
# calls back; each callback looks the session up in the connection's table and advances its
# machine, so every decision (refuse, drain, disown, deadlines) is made in the sans-IO layer and
# this module only moves bytes, runs handlers and keeps one timer armed at `get_timer()`
# (loop.call_at, never polling).
#
# Sessions: invoke -> Session -> handler, request chunks and choke delivered, engine errors and
# worker aborts told to the app side, handler failures answered with error+choke. Two handler
# forms share one Session class (aio/session.py, which also holds the write path):
#   - default: `async def handler(session)` runs as a Task; request chunks are buffered for
#     `read()` / `async for`; returning ends the response (choke) if the handler did not.
#   - raw=True: `factory(session)` is called synchronously at invoke, sets session.on_chunk /
#     on_end / on_fail, and nothing is buffered and no Task is made (the HTTP layer's fast path).
#
# The common invoke (worker ACTIVE, a handler for the event, a new id, no session timeout) is
# accepted inline, with the same effect as WorkerConnection.receive_invoke + open_session (a
# test checks the two agree in every state); everything else goes through the connection,
# which decides. Every path that closes a session (engine error, abort, the last end) releases
# its callbacks once they have run, so no reference cycle outlives a request.
#
# A well-framed engine message whose arguments do not fit (Channel.on_bad_message) fails only
# its session: an open one is aborted with BAD_MESSAGE and the reason, a bad invoke is answered
# with an error; messages for no session (control, orphans) are logged and dropped.
#
# Exits (serve()'s return value): 0 after a terminate (engine's or ours) was drained and
# answered, and also when a v0.12 engine closed the socket (its way to stop: no terminate on
# SIGTERM, `Dialect.eof_is_stop`); EXIT_CONNECTION_LOST when the engine socket failed, or a
# v0.11 engine closed it; EXIT_DISOWNED when no heartbeat echo came within disown_timeout.
"""Worker and Session: a Cocaine worker process on asyncio."""

from __future__ import annotations

import asyncio
import errno as errnos
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .. import codec
from ..errors import RemoteProtocolError
from ..protocol.dialect import Dialect, Kind
from ..protocol.session import Error, SessionMachine, SessionState
from ..protocol.worker import (
    BAD_MESSAGE,
    HANDLER_FAILED,
    SESSION_TIMEOUT,
    SHUTTING_DOWN,
    Disown,
    GraceExpired,
    Heartbeat,
    WorkerConnection,
    WorkerState,
    parse_options,
)
from .channel import Channel
from .events import EventEmitter
from .loop import loop_name, new_event_loop
from .session import Session, delivery

__all__ = ["EXIT_CONNECTION_LOST", "EXIT_DISOWNED", "EXIT_GAVE_UP", "EXIT_OK", "Handler",
           "Session", "Worker"]

log = logging.getLogger("cocaine_http.worker")

EXIT_OK = 0
EXIT_CONNECTION_LOST = 1
EXIT_DISOWNED = 2
#: serve()'s return value after give_up(): the worker could not serve any more.
EXIT_GAVE_UP = 3

Hook = Callable[[], Awaitable[Any]]
Handler = Callable[[Session], Any]

#: Room a request frame needs besides its body: request line, headers and msgpack framing (the
#: request line and headers are also bounded by `max_header_size`).
FRAME_ROOM = 1024 * 1024
#: The decoders' largest message (a raw32 length).
MAX_MESSAGE_SIZE = 2**31 - 1


#: Send buffer asked for on a unix engine socket (the kernel caps it at net.core.wmem_max).
SEND_BUFFER = 4 * 1024 * 1024


def widen_send_buffer(channel: Channel, size: int = SEND_BUFFER) -> None:
    """Let the kernel queue up to `size` bytes of responses on a unix engine socket.

    A unix socket's default (about 208 KiB) makes a 1 MiB response cost several partial
    writes, each waiting for the engine to read; loopback TCP grows its buffer by itself, so
    a TCP endpoint is left alone. Back-pressure is unchanged: the transport still pauses the
    writers once the kernel's buffer is full and its own goes over the high-water mark.
    """
    transport = channel._transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < size:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError as exc:  # a sandbox may refuse it: the default buffer works, only slower
        log.debug("cannot widen the engine socket's send buffer: %s", exc)


def message_limit(max_body_size: int, max_header_size: int) -> int:
    """The engine channel's message limit for a worker that takes bodies of `max_body_size`:
    a request frame with the largest body and headers must fit, or the channel fails (EPROTO)."""
    return min(MAX_MESSAGE_SIZE, max_body_size + max_header_size + FRAME_ROOM)


def body_limit(max_body_size: int, max_header_size: int) -> int:
    """The largest body a front may forward to such a worker: `max_body_size`, unless a frame
    that large would not fit in one message."""
    room = message_limit(max_body_size, max_header_size) - max_header_size - FRAME_ROOM
    return max(0, min(max_body_size, room))


#: Module constants: an enum member looked up on its class costs about 60 ns.
_ACTIVE = WorkerState.ACTIVE
_REQUEST_DONE = SessionState.REQUEST_DONE


class Worker:
    """A Cocaine worker: connects to its engine, heartbeats, and runs sessions.

    Args:
        argv: the command line (default `sys.argv[1:]`); the runtime's `--app --endpoint
            --locator --uuid [--protocol]` are picked out, anything else is ignored.
        heartbeat_interval: seconds between heartbeats (the engine's timeout is 30 s).
        disown_timeout: seconds without a heartbeat echo before the worker gives up (disown).
        termination_grace: seconds open sessions get to finish after a terminate.
        session_timeout: seconds a session may stay open before it is aborted (None: no limit).
        max_message_size: the engine channel's message limit (see `message_limit`; None: the
            decoder's default).

    Raises:
        ConfigError: a bad `--protocol`, an option without a value, or bad timer values.
    """

    def __init__(
        self,
        argv: list[str] | None = None,
        *,
        heartbeat_interval: float = 5.0,
        disown_timeout: float = 30.0,
        termination_grace: float = 5.0,
        session_timeout: float | None = None,
        max_message_size: int | None = None,
    ) -> None:
        self.options = parse_options(sys.argv[1:] if argv is None else argv)
        self._dialect = self.options.dialect
        self._conn = WorkerConnection(
            self.options.uuid or "",
            self._dialect,
            heartbeat_interval=heartbeat_interval,
            disown_timeout=disown_timeout,
            termination_grace=termination_grace,
            session_timeout=session_timeout,
        )
        self.events = EventEmitter()
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_errno: int | None = None
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        self._channel = Channel(self._dialect, max_message_size=max_message_size)
        self._sessions = self._conn.sessions
        self._conn_changed = self._conn._session_changed  # bound once, shared by sessions
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._done: asyncio.Future[int] | None = None
        self._draining = False

    # -- registration ---------------------------------------------------------------------------

    def on(self, event: str, handler: Handler | None = None, *, raw: bool = False) -> Any:
        """Handle `event`: `worker.on("ping", handler)` or `@worker.on("ping")`.

        A default handler is `async def handler(session)`, run as a Task per session. With
        raw=True, `handler(session)` is called synchronously at invoke and must set the
        session's on_chunk/on_end/on_fail; no Task, no buffering.
        """
        if handler is None:

            def decorator(fn: Handler) -> Handler:
                self.on(event, fn, raw=raw)
                return fn

            return decorator
        if not callable(handler):
            raise TypeError(f"handler for {event!r} is not callable")
        self._handlers[event] = (handler, raw)
        return handler

    @property
    def state(self) -> WorkerState:
        return self._conn.state

    @property
    def termination_grace(self) -> float:
        """Seconds open sessions get to finish after a terminate (also the bound on exiting)."""
        return self._conn.termination_grace

    @property
    def dialect(self) -> Dialect:
        """The wire rules this worker speaks (from `--protocol`)."""
        return self._dialect

    @property
    def sessions(self) -> dict[int, SessionMachine]:
        """Open sessions by id (read-only view of the connection's table)."""
        return self._conn.sessions

    # -- running --------------------------------------------------------------------------------

    def run(self, loop: str = "auto") -> int:
        """Run `serve()` on a new event loop (uvloop when installed); returns the exit code.

        SIGTERM and SIGINT start a graceful stop (drain, shutdown hooks, terminate).
        """
        ev = new_event_loop(loop)
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    ev.add_signal_handler(signum, self.stop, f"signal {signum.name}")
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
            return ev.run_until_complete(self.serve())
        finally:
            try:
                ev.run_until_complete(ev.shutdown_asyncgens())
            finally:
                ev.close()

    async def serve(self) -> int:
        """Run startup hooks, connect, serve sessions until terminate, disown or a socket
        failure, run shutdown hooks; returns the exit code (0 only after a terminate).

        Raises:
            ConfigError: --endpoint or --uuid is missing.
            Exception: whatever a startup hook raised (nothing is connected then).
        """
        self.options.require()
        loop = self.loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        log.info(
            "worker %s of app %s: codec %s, loop %s, protocol %s, endpoint %s",
            self.options.uuid, self.options.app, codec.IMPLEMENTATION, loop_name(loop),
            self._dialect.name, self.options.endpoint,
        )  # fmt: skip
        for hook in self.startup_hooks:
            await hook()
        self._attach()
        assert self.options.endpoint is not None
        if await self._channel.connect(self.options.endpoint) and not self._done.done():
            widen_send_buffer(self._channel)
            self._channel.send(self._dialect.control, self._conn.start(loop.time()))
            self._arm()
            self.events.emit("connect")
        code = await self._done
        await self._wind_down(code)
        return code

    def stop(self, reason: str = "worker shut down") -> None:
        """Stop gracefully: refuse new invokes, drain, then answer like a terminate."""
        conn = self._conn
        if self._done is None or self._done.done():
            return
        if conn.state is WorkerState.CONNECTING:
            self._complete(EXIT_OK)
        elif conn.state is WorkerState.ACTIVE:
            conn.shutdown(reason, self._now())
            self._begin_drain()

    def give_up(self, reason: str) -> None:
        """Stop for good when the worker can no longer serve (every WSGI thread stuck in a
        request that timed out, say): refuse new invokes, fail every open session with
        `reason`, and exit with EXIT_GAVE_UP, so that the runtime starts a fresh worker."""
        conn = self._conn
        if self._done is None or self._done.done():
            return
        log.error("giving up: %s", reason)
        if conn.state is WorkerState.ACTIVE:
            conn.shutdown(reason, self._now())
        for session in conn.open_sessions():
            self._abort(session, SHUTTING_DOWN, reason, True)  # type: ignore[arg-type]
        self._complete(EXIT_GAVE_UP)

    # -- channel callbacks ------------------------------------------------------------------------

    def _attach(self) -> None:
        ch = self._channel
        ch.on_invoke = self._on_invoke
        ch.on_chunk, ch.on_choke = delivery(self._sessions, self._handler_failed)
        ch.on_error = self._on_error
        ch.on_heartbeat = self._on_heartbeat
        ch.on_terminate = self._on_terminate
        ch.on_bad_message = self._on_bad_message
        ch.on_socket_error = self._on_socket_error

    def _on_heartbeat(self) -> None:
        self._conn.receive_heartbeat(self._now())

    def _on_terminate(self, sid: int, code: int, reason: str) -> None:
        log.info("engine asks to terminate (%d): %s", code, reason)
        self._conn.receive_terminate(code, reason, self._now())
        self.events.emit("terminate", code, reason)
        self._begin_drain()

    def _on_socket_error(self, errno: int) -> None:
        self.last_errno = errno
        stopped = errno == errnos.ESHUTDOWN and self._dialect.eof_is_stop
        if stopped:
            log.info("engine closed the connection: the runtime is stopping")
        else:
            log.error(
                "engine connection %s: [%s] %s",
                self.options.endpoint, errnos.errorcode.get(errno, errno),
                self._channel.last_error,
            )  # fmt: skip
        for session in self._conn.connection_closed(errno):
            self._abort(session, errno, "connection to the engine lost", False, False)  # type: ignore[arg-type]
        self.events.emit("error", errno)
        self._complete(EXIT_OK if stopped else EXIT_CONNECTION_LOST)

    # -- sessions -------------------------------------------------------------------------------

    def _on_invoke(self, sid: int, event: str) -> None:
        conn = self._conn
        entry = self._handlers.get(event)
        # The common case inlines WorkerConnection.receive_invoke/open_session: ACTIVE, a
        # handler, a new id, no session timeout. Anything else takes the connection's own path.
        if (entry is None or conn.state is not _ACTIVE or sid in self._sessions
                or conn.session_timeout is not None):
            self._invoke_slow(sid, event)
            return
        handler, raw = entry
        session = Session(self._channel, sid, event, raw)
        session._on_change = self._conn_changed
        self._sessions[sid] = session
        conn.open_responses += 1
        if raw:
            try:
                handler(session)
            except Exception as exc:
                self._handler_failed(session, exc)
        else:
            self._start(session, handler, raw)

    def _invoke_slow(self, sid: int, event: str) -> None:
        conn = self._conn
        refusal = conn.receive_invoke(sid, event, self._handlers)
        if refusal is not None:
            log.warning("session %d (%s) refused: %s", sid, event, refusal.message)
            self._channel.send(sid, conn.refuse(sid, refusal))
            return
        handler, raw = self._handlers[event]
        session = Session(self._channel, sid, event, raw)
        if conn.session_timeout is None:
            conn.open_session(session)  # the connection's own hook keeps the table
        else:
            conn.open_session(session, self._now())
            assert session.deadline is not None and self.loop is not None
            session._timer = self.loop.call_at(session.deadline, self._expired, session)
            session._on_change = self._session_changed
        self._start(session, handler, raw)

    def _start(self, session: Session, handler: Handler, raw: bool) -> None:
        if raw:
            try:
                handler(session)
            except Exception as exc:
                self._handler_failed(session, exc)
            return
        task = (self.loop or asyncio.get_running_loop()).create_task(self._run(handler, session))
        session._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_error(self, sid: int, code: int, message: str) -> None:
        session = self._sessions.get(sid)
        if session is None:
            return
        assert isinstance(session, Session)
        try:
            session.receive(Error)
        except RemoteProtocolError as exc:
            log.warning("%s", exc)
            return
        session._failed = True
        self._notify_fail(session, code, message)
        session._release()

    def _on_bad_message(self, kind: Kind, sid: int, reason: str) -> None:
        """A well-framed message with arguments that do not fit: fail its session only."""
        message = f"bad {kind.name.lower()} message: {reason}"
        session = self._sessions.get(sid)
        if isinstance(session, Session):
            log.error("session %d (%s) failed: %s", sid, session.event, message)
            self._abort(session, BAD_MESSAGE, message, True)
        elif kind is Kind.INVOKE:
            log.error("invoke on session %d refused: %s", sid, message)
            self._channel.send(sid, self._dialect.failure(sid, BAD_MESSAGE, message))
        else:
            log.error("dropped: %s on session %d, which is not open", message, sid)

    async def _run(self, handler: Handler, session: Session) -> None:
        try:
            result = handler(session)
            if result is not None:
                await result
        except asyncio.CancelledError:
            if not session._failed:
                raise
            return
        except Exception as exc:
            self._handler_failed(session, exc)
            return
        if session.response_open:
            session.end()

    def _handler_failed(self, session: Session, exc: BaseException) -> None:
        if session._failed:
            log.debug("handler of failed session %d raised %r", session.id, exc)
            return
        log.error(
            "handler for event %r failed on session %d", session.event, session.id, exc_info=exc
        )
        if session.response_open:
            session.error(HANDLER_FAILED, f"error in event '{session.event}' handler: {exc}")

    def _session_changed(
        self, machine: SessionMachine, old: SessionState, new: SessionState
    ) -> None:
        self._conn._session_changed(machine, old, new)
        if old <= _REQUEST_DONE < new:
            timer = machine._timer  # type: ignore[attr-defined]
            if timer is not None:
                timer.cancel()
            if self._draining and self._conn.open_responses == 0:
                self._complete(EXIT_OK)

    def _expired(self, session: Session) -> None:
        session._timer = None
        timeout = self._conn.session_timeout
        log.warning("session %d (%s) timed out after %s s", session.id, session.event, timeout)
        self._abort(session, SESSION_TIMEOUT, f"session timed out after {timeout} s", True)

    def _abort(
        self, session: Session, code: int, message: str, tell_engine: bool, cancel: bool = True
    ) -> None:
        """The worker gives a session up: tell the engine (if it can still hear), fail the
        app side, and cancel the handler (or, with cancel=False, let it see SessionError;
        wind-down cancels it after the grace)."""
        session._failed = True
        if session.abort() and tell_engine:
            self._channel.send(session.id, self._dialect.failure(session.id, code, message))
        self._notify_fail(session, code, message)
        session._release()
        if cancel and session._task is not None:
            session._task.cancel()

    def _notify_fail(self, session: Session, code: int, message: str) -> None:
        try:
            session._deliver_fail(code, message)
        except Exception:
            log.exception("on_fail of session %d raised", session.id)

    # -- lifecycle ------------------------------------------------------------------------------

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self._conn.get_timer()
        if when is not None and self.loop is not None:
            self._timer_when = when
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        # A loop may fire a timer a hair early (clock resolution); it fired for _timer_when.
        now = max(self._now(), self._timer_when)
        for event in self._conn.handle_timer(now):
            if isinstance(event, Disown):
                self._disowned()
                return
            if isinstance(event, GraceExpired):
                self._grace_expired()
            elif isinstance(event, Heartbeat):
                self._channel.send(self._dialect.control, self._dialect.heartbeat())
        self._arm()

    def _begin_drain(self) -> None:
        self._draining = True
        for session in self._conn.sessions.values():  # from now on each end checks the drain
            session._on_change = self._session_changed
        if self._conn.drained:
            self._complete(EXIT_OK)
        else:
            self._arm()

    def _grace_expired(self) -> None:
        sessions = self._conn.open_sessions()
        log.warning("termination grace over: aborting %d open session(s)", len(sessions))
        for session in sessions:
            self._abort(session, SHUTTING_DOWN, "the worker is shutting down", True)  # type: ignore[arg-type]
        self._complete(EXIT_OK)

    def _disowned(self) -> None:
        log.error("no heartbeat echo for %s s: disowned", self._conn.disown_timeout)
        self.events.emit("disown")
        for session in list(self._conn.sessions.values()):
            self._abort(session, SHUTTING_DOWN, "the worker was disowned", False, False)  # type: ignore[arg-type]
        self._channel.abort()
        self._complete(EXIT_DISOWNED)

    def _complete(self, code: int) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(code)

    async def _wind_down(self, code: int) -> None:
        """After the exit decision: let handlers settle, run shutdown hooks, then (graceful
        exits only) answer terminate and close."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._conn.termination_grace)
            for task in pending:
                task.cancel()
        for hook in self.shutdown_hooks:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook %r failed", hook)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if code == EXIT_OK and self._conn.state in (WorkerState.ACTIVE, WorkerState.DRAINING):
            self._channel.send(self._dialect.control, self._conn.finish())
            log.info("terminated: %s", self._conn.terminate_reason)
        self._channel.close()
