# Strategy: a Logger is fire-and-forget. emit() may be called from any thread and never blocks
# or raises: on the loop's thread it acts at once, elsewhere it hops over with
# call_soon_threadsafe. A background task on the client's loop resolves `logging`, asks
# verbosity() once per connection and then sends `emit` calls without waiting for their chokes
# (PY11 ignores them too). Messages above the verbosity are dropped locally (v0.11: emit when
# level <= verbosity, levels 0 ignore .. 4 debug, PROTOCOL.md §5). Until the verbosity is known,
# and whenever the connection is down, messages go to a bounded buffer (oldest dropped, the
# count kept and reported once the service is back) and are echoed to stderr so nothing is lost
# silently; the task reconnects with a capped, jittered backoff forever.
"""Logger: the Cocaine logging service as a non-blocking, never-failing logger."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ..config import split_runtime_args
from ..errors import CocaineError, ConfigError
from ..protocol.service import State

if TYPE_CHECKING:
    from .client import Client
    from .service import Service

log = logging.getLogger("cocaine_http.services.logger")

IGNORE, ERROR, WARNING, INFO, DEBUG = 0, 1, 2, 3, 4
LEVEL_NAMES = {IGNORE: "IGNORE", ERROR: "ERROR", WARNING: "WARNING", INFO: "INFO", DEBUG: "DEBUG"}


def default_source(argv: list[str] | None = None) -> str:
    """"app/<name>" from the worker's `--app`, else "app/standalone" (PY11, NODE-d)."""
    try:
        found, _ = split_runtime_args(sys.argv[1:] if argv is None else argv)
    except ConfigError:  # a trailing --app without a value names no app
        found = {}
    return f"app/{found['app']}" if "app" in found else "app/standalone"


class Logger:
    """Messages to the Cocaine logging service.

    Args:
        client: the Client whose loop and locator are used.
        source: the source field of every message (e.g. "app/echo").
        buffer_size: messages kept while the service is unavailable.
        echo: also write buffered messages to `stream` (stderr by default).
        retry_max: longest pause between reconnect attempts, in seconds.

    Attributes:
        verbosity: the service's level once known, else None.
        dropped: messages lost to the buffer limit so far.
    """

    def __init__(
        self,
        client: Client,
        source: str,
        *,
        buffer_size: int = 1000,
        echo: bool = True,
        stream: TextIO | None = None,
        retry_max: float = 5.0,
    ) -> None:
        self.client = client
        self.source = source
        self.verbosity: int | None = None
        self.dropped = 0
        self._unreported = 0
        self.echo = echo
        self._stream = stream
        self._retry_max = retry_max
        self._buffer: collections.deque[tuple[int, str, str]] = collections.deque()
        self._buffer_size = buffer_size
        self._svc: Service | None = None
        self._emit_id = 0
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._closed = False

    # -- public API (any thread, never raises) -------------------------------------------------

    def emit(self, level: int, source: str, message: str) -> None:
        """Send one message (or buffer it); safe from any thread."""
        try:
            loop = self.client.loop
            if loop is None or loop.is_closed():
                loop = _running_loop()
                if loop is None:
                    self._buffer_add(level, source, message)
                    return
            if _running_loop() is loop:
                self._emit(level, source, message)
            else:
                loop.call_soon_threadsafe(self._emit, level, source, message)
        except Exception:  # a closed loop, a broken stream: fall back, never raise
            self._echo(level, source, message)

    def error(self, message: str, *args: Any) -> None:
        self.emit(ERROR, self.source, _fmt(message, args))

    def warning(self, message: str, *args: Any) -> None:
        self.emit(WARNING, self.source, _fmt(message, args))

    warn = warning

    def info(self, message: str, *args: Any) -> None:
        self.emit(INFO, self.source, _fmt(message, args))

    def debug(self, message: str, *args: Any) -> None:
        self.emit(DEBUG, self.source, _fmt(message, args))

    def enabled(self, level: int) -> bool:
        """Whether a message at `level` would be sent (True while the verbosity is unknown)."""
        return self.verbosity is None or level <= self.verbosity

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until connected with a known verbosity; False on timeout."""
        self._start()
        assert self._ready is not None
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the background task and close the connection; buffered messages stay echoed."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._svc is not None:
            self._svc.close()
            self._svc = None

    # -- on the loop ---------------------------------------------------------------------------

    def _emit(self, level: int, source: str, message: str) -> None:
        svc = self._svc
        if svc is not None and self.verbosity is not None:
            if level <= self.verbosity and svc.notify(self._emit_id, [level, source, message]):
                return
            if level > self.verbosity:
                return
        self._buffer_add(level, source, message)
        if not self._closed:
            self._start()

    def _buffer_add(self, level: int, source: str, message: str) -> None:
        if self.verbosity is not None and level > self.verbosity:
            return
        if len(self._buffer) >= self._buffer_size:
            self._buffer.popleft()
            self.dropped += 1
            self._unreported += 1
        self._buffer.append((level, source, message))
        self._echo(level, source, message)

    def _echo(self, level: int, source: str, message: str) -> None:
        if not self.echo:
            return
        try:
            stream = self._stream or sys.stderr
            stream.write(f"[{LEVEL_NAMES.get(level, level)}] {source}: {message}\n")
        except Exception:
            pass

    def _start(self) -> None:
        if self._task is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._lost = asyncio.Event()
            self._ready = asyncio.Event()
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        attempt = 0
        rng = random.Random()
        while not self._closed:
            try:
                await self._connect()
                attempt = 0
                assert self._lost is not None
                await self._lost.wait()
            except CocaineError as exc:
                log.debug("logger %s: logging service unavailable: %s", self.source, exc)
            self._disconnected()
            delay = min(self._retry_max, 0.05 * 2**attempt) * (0.5 + 0.5 * rng.random())
            attempt += 1
            await asyncio.sleep(delay)

    async def _connect(self) -> None:
        assert self._lost is not None and self._ready is not None
        self._lost.clear()
        svc = await self.client.service("logging", {}, connect=True)  # own connection
        self._svc = svc
        svc.add_listener(self._on_state)
        self._emit_id = svc.method_id("emit")
        verbosity = await svc.verbosity()
        if svc.state is not State.CONNECTED:
            raise CocaineError("logging service disconnected")
        self.verbosity = int(verbosity)
        self._flush(svc)
        self._ready.set()

    def _on_state(self, old: State, new: State) -> None:
        if new is not State.CONNECTED and self._lost is not None:
            self._lost.set()

    def _disconnected(self) -> None:
        svc, self._svc = self._svc, None
        if self._ready is not None:
            self._ready.clear()
        if svc is not None:
            svc.remove_listener(self._on_state)
            svc.close()

    def _flush(self, svc: Service) -> None:
        verbosity = self.verbosity if self.verbosity is not None else DEBUG
        if self._unreported:
            note = f"{self._unreported} log messages were dropped while logging was unavailable"
            svc.notify(self._emit_id, [WARNING, self.source, note])
            self._unreported = 0
        while self._buffer:
            level, source, message = self._buffer.popleft()
            if level <= verbosity:
                svc.notify(self._emit_id, [level, source, message])


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _fmt(message: str, args: tuple[Any, ...]) -> str:
    if not args:
        return str(message)
    try:
        return str(message) % args
    except (TypeError, ValueError):
        return " ".join([str(message), *map(str, args)])


__all__ = ["DEBUG", "ERROR", "IGNORE", "INFO", "WARNING", "Logger", "default_source"]
