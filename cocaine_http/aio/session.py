# Strategy: the asyncio Session, one per accepted invoke. It is the sans-IO SessionMachine plus
# delivery (request chunks to callbacks or to a buffer for `read()`) and the worker's writes.
# It is handed the one thing it needs, the Channel it writes to (whose dialect frames its
# messages). `RawSession` is the part of it the HTTP adapters use, as a Protocol, so they can
# be typed against it and tests can see which calls production makes.
#
# Hot path: the state checks read precomputed rows of the transition tables
# (protocol.session.ENGINE_NEXT / WORKER_NEXT: next state per current state, None where the
# table has no edge), so a write is a tuple index and an identity test; anything the rows refuse
# goes through the generic machine, which raises with the table's message. `write_chunks()`
# sends a whole response (head, body, choke) framed by the dialect as one Channel.send.
#
# Lifetime: a raw session's callbacks are usually bound methods of an adapter object that also
# holds the session, a reference cycle only the garbage collector could free (it cost about a
# third of the per-request CPU). Once the session is CLOSED and its last callback has run,
# `_release()` drops the callbacks, so the session and its adapter die by reference counting.
"""Session: one request/response exchange of a Cocaine worker."""

from __future__ import annotations

import asyncio
from collections import deque
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

from ..codec.hpack import Trace
from ..errors import LocalProtocolError, RemoteProtocolError, SessionClosedError, SessionError
from ..protocol.dialect import Buffer, Payload
from ..protocol.session import (
    ENGINE_NEXT,
    NOTABLE,
    WORKER_NEXT,
    Choke,
    Chunk,
    SessionEvent,
    SessionMachine,
    SessionState,
)
from .channel import Channel

__all__ = ["Payload", "RawSession", "Session", "delivery"]

log = logging.getLogger("cocaine_http.worker")

_OPEN = SessionState.OPEN
_CLOSED = SessionState.CLOSED
_ENGINE_CHUNK = ENGINE_NEXT[Chunk]
_ENGINE_CHOKE = ENGINE_NEXT[Choke]
_WORKER_CHUNK = WORKER_NEXT[Chunk]
_WORKER_CHOKE = WORKER_NEXT[Choke]
_BUFFERS = (bytes, bytearray, memoryview)


class RawSession(Protocol):
    """What a raw=True session factory (the HTTP adapters) gets and uses."""

    id: int
    event: str
    on_chunk: Callable[[bytes], Any]
    on_end: Callable[[], Any]
    on_fail: Callable[[int, str], Any]
    trace: Trace | None

    @property
    def closed(self) -> bool: ...

    def write(self, data: Payload) -> None: ...

    def write_chunks(self, chunks: Sequence[Payload], end: bool = False) -> None: ...

    def end(self) -> None: ...

    def error(self, code: int, message: str) -> None: ...

    async def drain(self) -> None: ...


def _noop(*args: Any) -> None:
    return None


class Session(SessionMachine):
    """One session: the engine's request stream in, the worker's response stream out.

    Attributes:
        id: session id from the invoke.
        event: event name from the invoke.
        raw: True for raw=True handlers; chunks then go to the callbacks below.
        on_chunk: raw sessions: called with each request chunk (bytes).
        on_end: raw sessions: called when the engine ends the request (choke).
        on_fail: raw sessions: called with (code, message) when the engine fails the session
            or the worker aborts it (disown, timeout, shutdown, connection lost).
        trace: the trace the invoke carried (v0.12, `codec.hpack.Trace`), None without one.
    """

    __slots__ = (
        "raw", "on_chunk", "on_end", "on_fail", "_channel", "_chunks", "_eof",
        "_failure", "_waiter", "_task", "_timer", "_failed", "trace",
    )  # fmt: skip

    def __init__(self, channel: Channel, session: int, event: str, raw: bool) -> None:
        # SessionMachine.__init__ inlined: this runs once per request on the hot path.
        self.id = session
        self.event = event
        self.dialect = channel.dialect
        self.state = _OPEN
        self.deadline = None
        self._on_change = None
        self.raw = raw
        self._channel = channel
        self._chunks: deque[bytes] | None = None if raw else deque()
        self._eof = False
        self._failure: tuple[int, str] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False
        self.trace = channel.trace  # v0.12: the invoke's trace, if it carried one
        self.on_chunk: Callable[[bytes], Any]
        self.on_end: Callable[[], Any]
        self.on_fail: Callable[[int, str], Any]
        self.on_chunk = self.on_end = self.on_fail = _noop  # buffered sessions: see delivery()

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.event!r} {self.state.name}>"

    # -- response -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the response is over (ended, failed or aborted): writes would raise."""
        return not self.response_open

    def write(self, data: Payload) -> None:
        """Send one chunk; a list of buffers becomes one chunk whose payload is the parts back
        to back, framed without joining them.

        Buffers must not be mutated after the call (they are queued, not copied), and
        memoryviews must have one-byte items (their len() is the byte count).

        Raises:
            SessionClosedError: the response was already ended, failed or aborted.
        """
        if _WORKER_CHUNK[self.state] is not self.state:
            self._refuse(Chunk)
        sid = self.id
        if isinstance(data, _BUFFERS):
            self._channel.send(sid, (self.dialect.chunk_header(sid, len(data)), data))
            return
        parts: list[Buffer] = [b"", *data]
        parts[0] = self.dialect.chunk_header(sid, sum(map(len, parts)))
        self._channel.send(sid, parts)

    def write_chunks(self, chunks: Sequence[Payload], end: bool = False) -> None:
        """Send several chunks and, with end=True, the choke after them, as one write: the
        usual way to send a response that is known whole (head, body, end).

        Raises:
            SessionClosedError: the response was already ended, failed or aborted.
        """
        state = self.state
        new = _WORKER_CHOKE[state] if end else state
        if new is None:
            self._refuse(Choke)
        if chunks and _WORKER_CHUNK[state] is not state:
            self._refuse(Chunk)
        data = self.dialect.response(self.id, chunks, end)
        if end:
            if new is not state:  # _enter(), inlined
                self.state = new
                if self._on_change is not None and NOTABLE[state][new]:
                    self._on_change(self, state, new)
        self._channel.send(self.id, data)
        if end and self.state is _CLOSED:  # _release(), inlined
            self.on_chunk = self.on_end = self.on_fail = _noop

    def end(self) -> None:
        """End the response (choke).

        Raises:
            SessionClosedError: the response was already ended, failed or aborted.
        """
        new = _WORKER_CHOKE[self.state]
        if new is None:
            self._refuse(Choke)
        self._enter(new)
        self._channel.send(self.id, self.dialect.choke(self.id))
        if new is _CLOSED:
            self._release()

    def error(self, code: int, message: str) -> None:
        """Fail the response: the error, framed by the dialect (`Dialect.failure`: in v0.11
        the choke follows, which the runtime waits for).

        Raises:
            SessionClosedError: the response was already ended, failed or aborted.
        """
        try:
            data = self.send_error(code, message)
        except LocalProtocolError as exc:
            raise SessionClosedError(f"session {self.id} is closed: {exc}") from exc
        self._channel.send(self.id, data)
        if self.state is _CLOSED:
            self._release()

    def _refuse(self, event_type: SessionEvent) -> NoReturn:
        """The rows have no edge for a worker `event_type` here: raise the table's error."""
        try:
            self.local(event_type)
        except LocalProtocolError as exc:
            raise SessionClosedError(f"session {self.id} is closed: {exc}") from exc
        raise AssertionError("the transition rows disagree with the WORKER table")

    async def drain(self) -> None:
        """Wait until the connection's write buffer is below its high-water mark again."""
        await self._channel.drain()

    # -- request --------------------------------------------------------------------------------

    async def read(self) -> bytes | None:
        """The next request chunk, or None once the engine has ended the request.

        Raises:
            SessionError: the engine failed the session, or the worker aborted it.
            LocalProtocolError: called on a raw session (its chunks go to on_chunk).
        """
        chunks = self._chunks
        if chunks is None:
            raise LocalProtocolError("a raw session delivers chunks through on_chunk")
        while True:
            if chunks:
                return chunks.popleft()
            if self._failure is not None:
                raise SessionError(*self._failure)
            if self._eof:
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while (chunk := await self.read()) is not None:
            yield chunk

    # -- delivery (see `delivery()`) ------------------------------------------------------------

    def _deliver_fail(self, code: int, message: str) -> None:
        if self._chunks is None:
            self.on_fail(code, message)
        else:
            self._failure = (code, message)
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _release(self) -> None:
        """Closed and done with: drop the callbacks (and the cycles they may close)."""
        self.on_chunk = self.on_end = self.on_fail = _noop


Failed = Callable[[Session, BaseException], Any]


def delivery(
    sessions: Mapping[int, SessionMachine], failed: Failed
) -> tuple[Callable[[int, bytes], None], Callable[[int], None]]:
    """The engine's chunk and choke, delivered to the sessions in `sessions`: the Channel's
    on_chunk(session, data) and on_choke(session) for a worker.

    Each advances the session by the ENGINE table (its rows; a move the table lacks is logged
    as the engine's RemoteProtocolError), then hands the chunk or the end to a raw session's
    callback or to a buffered session's reader. A callback that raises goes to
    `failed(session, exc)`. Messages for a session not in `sessions` (one already finished or
    refused) are dropped, as the engine does. Closures rather than methods: this is the one
    copy of the rule and it runs twice per request, so it costs no call beyond the Channel's.
    """

    def on_chunk(sid: int, data: bytes) -> None:
        session: Any = sessions.get(sid)
        if session is None:
            return
        try:
            state = session.state
            if _ENGINE_CHUNK[state] is not state:
                session.receive(Chunk)  # raises: no chunk edge from here
            chunks = session._chunks
            if chunks is None:
                session.on_chunk(data)
            else:
                chunks.append(data)
                session._wake()
        except RemoteProtocolError as exc:
            log.warning("%s", exc)
        except Exception as exc:
            failed(session, exc)

    def on_choke(sid: int) -> None:
        session: Any = sessions.get(sid)
        if session is None:
            return
        try:
            old = session.state
            new = _ENGINE_CHOKE[old]
            if new is None or NOTABLE[old][new]:
                session.receive(Choke)  # raises, or runs the owner's hook
            else:
                session.state = new
            if session._chunks is None:
                session.on_end()
            else:
                session._eof = True
                session._wake()
            if session.state is _CLOSED:
                session._release()
        except RemoteProtocolError as exc:
            log.warning("%s", exc)
        except Exception as exc:
            failed(session, exc)

    return on_chunk, on_choke
