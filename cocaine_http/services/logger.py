# Strategy: a Logger is fire-and-forget. emit() may be called from any thread and never blocks
# or raises: on the loop's thread it acts at once, elsewhere it hops over with
# call_soon_threadsafe. A background task on the client's loop resolves `logging`, asks
# verbosity() once per connection and then sends `emit` calls without waiting for their chokes
# (PY11 ignores them too). Messages the verbosity excludes are dropped locally; the rule and the
# wire levels are the dialect's (v0.11: emit when level <= verbosity, levels 0 ignore .. 4
# debug, docs/protocol.md §5; v0.12: wire levels 0 debug .. 3 error, emit when level >= verbosity,
# and messages carry attributes). The library's levels are v0.11's in both. Until the verbosity is known,
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
from collections.abc import Mapping
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
        self._buffer: collections.deque[_Message] = collections.deque()
        self._buffer_size = buffer_size
        self._svc: Service | None = None
        self._emit_id = 0
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._closed = False
        # the dialect's logging rules, looked up once (emit is a hot path)
        self._enabled = client.dialect.log_enabled
        self._emit_args = client.dialect.emit_args

    # -- public API (any thread, never raises) -------------------------------------------------

    def emit(
        self, level: int, source: str, message: str,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Send one message at library `level` (ERROR .. DEBUG), or buffer it; safe from any
        thread. `attributes` go with it where the protocol has them (v0.12)."""
        try:
            item = (level, source, message, _attributes(attributes) if attributes else ())
            loop = self.client.loop
            if loop is None or loop.is_closed():
                loop = _running_loop()
                if loop is None:
                    self._buffer_add(item)
                    return
            if _running_loop() is loop:
                self._emit(item)
            else:
                loop.call_soon_threadsafe(self._emit, item)
        except Exception:  # a closed loop, a broken stream: fall back, never raise
            self._echo((level, source, message, ()))

    def error(self, message: str, *args: Any, attributes: Mapping[str, Any] | None = None
              ) -> None:
        self.emit(ERROR, self.source, _fmt(message, args), attributes)

    def warning(self, message: str, *args: Any, attributes: Mapping[str, Any] | None = None
                ) -> None:
        self.emit(WARNING, self.source, _fmt(message, args), attributes)

    warn = warning

    def info(self, message: str, *args: Any, attributes: Mapping[str, Any] | None = None
             ) -> None:
        self.emit(INFO, self.source, _fmt(message, args), attributes)

    def debug(self, message: str, *args: Any, attributes: Mapping[str, Any] | None = None
              ) -> None:
        self.emit(DEBUG, self.source, _fmt(message, args), attributes)

    def enabled(self, level: int) -> bool:
        """Whether a message at `level` would be sent (True while the verbosity is unknown)."""
        return self.verbosity is None or self.client.dialect.log_enabled(level, self.verbosity)

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

    def _emit(self, item: _Message) -> None:
        svc, verbosity = self._svc, self.verbosity
        if verbosity is not None:
            if not self._enabled(item[0], verbosity):
                return
            if svc is not None and svc.notify(self._emit_id, self._emit_args(*item)):
                return
        self._buffer_add(item)
        if not self._closed:
            self._start()

    def _send(self, svc: Service, item: _Message) -> bool:
        return svc.notify(self._emit_id, self._emit_args(*item))

    def _buffer_add(self, item: _Message) -> None:
        if not self.enabled(item[0]):
            return
        if len(self._buffer) >= self._buffer_size:
            self._buffer.popleft()
            self.dropped += 1
            self._unreported += 1
        self._buffer.append(item)
        self._echo(item)

    def _echo(self, item: _Message) -> None:
        if not self.echo:
            return
        level, source, message, _ = item
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
        if self._unreported:
            note = f"{self._unreported} log messages were dropped while logging was unavailable"
            self._send(svc, (WARNING, self.source, note, ()))
            self._unreported = 0
        while self._buffer:
            item = self._buffer.popleft()
            if self.enabled(item[0]):
                self._send(svc, item)


#: One message: (library level, source, text, attributes as (name, value) pairs).
_Message = tuple[int, str, str, tuple[tuple[str, Any], ...]]
_ATTRIBUTE_TYPES = (str, int, float, bool)


def _attributes(attributes: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """(name, value) pairs; values the logging service cannot carry become text."""
    if not attributes:
        return ()
    return tuple(
        (str(k), v if isinstance(v, _ATTRIBUTE_TYPES) else str(v)) for k, v in attributes.items()
    )


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
