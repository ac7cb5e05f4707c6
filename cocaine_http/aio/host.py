# Strategy: the session side of the Worker, as a mixin so that worker.py keeps the connection's
# life (connect, heartbeats, drain, exits) and this module keeps one request's: invoke -> Session
# -> handler, request chunks and choke delivered, engine errors and worker aborts told to the
# app side, handler failures answered with error+choke.
#
# The common invoke (worker ACTIVE, a handler for the event, a new id, no session timeout) is
# accepted inline, with the same effect as WorkerConnection.receive_invoke + open_session;
# everything else goes through the connection, which decides. Every path that closes a session
# (engine error, abort, the last end) releases its callbacks once they have run, so no
# reference cycle outlives a request.
"""SessionHost: how a Worker runs sessions (mixed into Worker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import RemoteProtocolError
from ..protocol.dialect import Dialect
from ..protocol.session import NOTABLE, Error, SessionMachine, SessionState, error_bytes
from ..protocol.worker import HANDLER_FAILED, SESSION_TIMEOUT, WorkerConnection, WorkerState
from .session import _CLOSED, _ENGINE_CHOKE, _ENGINE_CHUNK, Session

if TYPE_CHECKING:
    from .channel import Channel

log = logging.getLogger("cocaine_http.worker")

EXIT_OK = 0
EXIT_CONNECTION_LOST = 1
EXIT_DISOWNED = 2

Handler = Callable[[Session], Any]

#: A module constant: an enum member looked up on its class costs about 60 ns.
_ACTIVE = WorkerState.ACTIVE


class SessionHost:
    """The session half of Worker (see the module comment); not used on its own."""

    _conn: WorkerConnection
    _dialect: Dialect
    _channel: Channel
    _handlers: dict[str, tuple[Handler, bool]]
    _sessions: dict[int, SessionMachine]
    _conn_changed: Callable[[SessionMachine, SessionState, SessionState], None]
    _tasks: set[asyncio.Task[None]]
    _draining: bool
    loop: asyncio.AbstractEventLoop | None

    def _now(self) -> float:
        raise NotImplementedError

    def _complete(self, code: int) -> None:
        raise NotImplementedError

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
        session = Session(self, sid, event, raw)
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
        session = Session(self, sid, event, raw)
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

    def _on_chunk(self, sid: int, data: bytes) -> None:
        session: Any = self._sessions.get(sid)
        if session is None:
            return  # orphan: a session we already finished or refused (the engine does the same)
        try:
            state = session.state
            if _ENGINE_CHUNK[state] is state and session._chunks is None:
                session.on_chunk(data)  # a raw session's _deliver_chunk(), inlined
            else:
                session._deliver_chunk(data)
        except RemoteProtocolError as exc:
            log.warning("%s", exc)
        except Exception as exc:
            self._handler_failed(session, exc)

    def _on_choke(self, sid: int) -> None:
        session: Any = self._sessions.get(sid)
        if session is None:
            return
        try:
            old = session.state
            new = _ENGINE_CHOKE[old]
            if new is not None and not NOTABLE[old][new] and session._chunks is None:
                session.state = new  # a raw session's _deliver_end(), inlined
                session.on_end()
                if session.state is _CLOSED:
                    session._release()
            else:
                session._deliver_end()
        except RemoteProtocolError as exc:
            log.warning("%s", exc)
        except Exception as exc:
            self._handler_failed(session, exc)

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
        if old <= SessionState.REQUEST_DONE < new:
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
            self._channel.send(session.id, error_bytes(self._dialect, session.id, code, message))
        self._notify_fail(session, code, message)
        session._release()
        if cancel and session._task is not None:
            session._task.cancel()

    def _notify_fail(self, session: Session, code: int, message: str) -> None:
        try:
            session._deliver_fail(code, message)
        except Exception:
            log.exception("on_fail of session %d raised", session.id)
