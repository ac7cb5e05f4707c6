# Strategy: the two objects a WSGI app's thread shares with the event loop.
#
# `Pipe` carries one response's encoded chunks from the app's thread to the session. The thread
# appends under a lock and, only if the pipe is not already waiting, hands it to the adapter's
# `Outbox`, which schedules one call_soon_threadsafe only if no wake-up is pending: everything
# every thread queued before the loop runs goes out in that one callback (so a burst of chunks,
# or of whole responses from several threads, costs one wake-up). A response's last chunks and
# its end (or its error) skip the pipe's lock: they go to the outbox's queue as one entry,
# which is behind any earlier chunks of the pipe since a pipe with chunks is queued there too;
# a response known whole (most of them) thus costs the thread one deque append. Bytes handed
# over but not yet released count against HIGH_WATER: above it the thread waits on a condition.
# The loop releases them at once when little is in flight, otherwise after awaiting the
# session's drain(), so the socket's pace sets the app's pace.
#
# `ErrorStream` is wsgi.errors: a text stream whose complete lines become log records.
"""Thread-to-loop plumbing of the WSGI adapter: the bounded chunk pipe and wsgi.errors."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections import deque
from typing import Any

from ..errors import SessionClosedError
from .exchange import SessionGoneError

#: Bytes an app's thread may have handed over and not yet seen taken by the socket.
HIGH_WATER = 1024 * 1024
#: In-flight bytes below which the loop releases credit without awaiting drain().
LOW_WATER = 256 * 1024

class Outbox:
    """The pipes with chunks for the loop, shared by an adapter's threads: one
    call_soon_threadsafe (one wake-up of the loop) delivers every pipe that filled since the
    last one, however many responses the threads finished meanwhile."""

    __slots__ = ("loop", "pipes", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pipes: deque[Pipe | tuple[Pipe, list[Any], tuple[int, str] | None]] = deque()
        self.pending = False

    def add(self, pipe: Pipe) -> None:
        """A pipe has chunks (from any thread); appended before `pending` is read."""
        self.pipes.append(pipe)
        if not self.pending:
            self.pending = True
            self.loop.call_soon_threadsafe(self.deliver)

    def add_last(self, pipe: Pipe, items: list[Any], error: tuple[int, str] | None) -> None:
        """A pipe's last chunks and its end (or its error), queued here rather than in the
        pipe: no lock, as nothing can follow them, and after any of the pipe's earlier
        chunks, as the pipe itself is queued here while it holds chunks."""
        self.pipes.append((pipe, items, error))
        if not self.pending:
            self.pending = True
            self.loop.call_soon_threadsafe(self.deliver)

    def deliver(self) -> None:
        self.pending = False  # before the pipes are taken: a later add() schedules again
        pipes = self.pipes
        while pipes:
            entry = pipes.popleft()
            if isinstance(entry, Pipe):
                entry._deliver()
            else:
                pipe, items, error = entry
                if not pipe.aborted:
                    pipe._end(items, error)


class Pipe:
    """Chunks of one response, from the app's thread (or inline code) to the session.

    Args:
        session: the worker session the response goes to.
        outbox: the loop's outbox; None for inline mode (calls come from the loop itself).
        cond: the condition guarding the pipe, shared by the adapter's pipes (creating one per
            request costs more than the rare contention; waiters re-check their own pipe).
    """

    __slots__ = ("session", "loop", "cond", "queue", "held", "scheduled", "inflight",
                 "unreleased", "draining", "aborted")

    def __init__(self, session: Any, loop: Outbox | None,
                 cond: threading.Condition | None = None) -> None:
        self.session = session
        self.loop = loop
        self.cond = cond if cond is not None else threading.Condition(threading.Lock())
        self.queue: list[Any] = []
        self.held: list[Any] = []
        self.scheduled = False
        self.inflight = 0
        self.unreleased = 0
        self.draining = False
        self.aborted = False

    # -- producer side (the app's thread) --------------------------------------------------

    def hold(self, payloads: list[Any]) -> None:
        """Keep chunks back until the next put() or finish(): their end is near."""
        self.held.extend(payloads)

    def put(self, payloads: list[Any]) -> None:
        """Send what is held plus `payloads` now; wait while too much is in flight.

        Raises:
            SessionGoneError: the session failed; the app should stop producing.
        """
        if self.held:
            payloads = self.held + payloads
            self.held = []
        self._send(payloads)

    def finish(self) -> None:
        """Send what is held, then end the session (choke)."""
        self._send_last(None)

    def fail(self, code: int, message: str) -> None:
        """Send what is held, then fail the session with a Cocaine error."""
        self._send_last((code, message))

    def _send_last(self, error: tuple[int, str] | None) -> None:
        items, self.held = self.held, []
        if self.aborted:  # the session is gone: nobody to tell
            return
        if self.loop is None:
            self._end(items, error)
        else:
            self.loop.add_last(self, items, error)

    def close_failed(self) -> None:
        """The session already failed; drop whatever is held."""
        self.held = []

    def _send(self, items: list[Any]) -> None:
        if self.loop is None:
            if self.aborted:
                raise SessionGoneError("the session is closed")
            self._deliver_items(items)
            return
        with self.cond:
            if self.aborted:
                raise SessionGoneError("the session is closed")
            self.queue.extend(items)
            self.inflight += _size(items)
            if not self.scheduled:
                self.scheduled = True
                self.loop.add(self)
            while self.inflight > HIGH_WATER and not self.aborted:
                self.cond.wait()

    # -- consumer side (the loop) ----------------------------------------------------------

    def abort(self) -> None:
        """The session failed: stop delivering and wake a waiting producer."""
        with self.cond:
            self.aborted = True
            self.queue = []
            self.cond.notify_all()

    def _deliver(self) -> None:
        with self.cond:
            items, self.queue = self.queue, []
            self.scheduled = False
            if self.aborted:
                return
        size = self._deliver_items(items)
        if not size:
            return
        self.unreleased += size
        if self.unreleased <= LOW_WATER and not self.draining:
            self._release()
        elif not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())

    def _deliver_items(self, items: list[Any]) -> int:
        """Write a batch as one write_chunks(); returns its body bytes (the producer may be
        waiting to see them taken)."""
        try:
            self.session.write_chunks(items)
        except SessionClosedError:
            self.abort()
            return 0
        return _size(items)

    def _end(self, items: list[Any], error: tuple[int, str] | None) -> None:
        """The last chunks and the end, as one write; or the chunks, then the error."""
        session = self.session
        try:
            if error is None:
                session.write_chunks(items, end=True)
            else:
                if items:
                    session.write_chunks(items)
                session.error(error[0], error[1])
        except SessionClosedError:
            self.abort()

    async def _drain(self) -> None:
        try:
            while self.unreleased and not self.aborted:
                pending = self.unreleased
                await self.session.drain()
                self._release(pending)
        except Exception:  # the session failed while draining: the producer must stop
            self.abort()
        finally:
            self.draining = False

    def _release(self, amount: int | None = None) -> None:
        amount = self.unreleased if amount is None else amount
        self.unreleased -= amount
        with self.cond:
            self.inflight -= amount
            if self.inflight <= HIGH_WATER:
                self.cond.notify_all()


def _size(payloads: Any) -> int:
    """Bytes in a list of payloads (each bytes or a list of buffers)."""
    total = 0
    for payload in payloads:
        if type(payload) is list:
            for part in payload:
                total += len(part)
        else:
            total += len(payload)
    return total


class ErrorStream(io.TextIOBase):
    """wsgi.errors: text written here is logged one record per line (thread-safe)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._log = logger
        self._lock = threading.Lock()
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        for line in lines:
            if line:
                self._log.error("%s", line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            line, self._partial = self._partial, ""
        if line:
            self._log.error("%s", line)
