# Strategy: the access log is a real `logging` log (the `cocaine_http.access` logger at INFO),
# but a LogRecord, a Formatter pass and a flushed write per request cost more than the rest of a
# small request. So when the only thing that would print the line is the worker's own stderr
# handler (the one `cocaine-http` installs, recognised by its name, with its format, level and
# no filters anywhere on the way), the line is formatted here exactly as that handler would
# print it and queued for a background thread that writes whatever accumulated at most
# FLUSH_INTERVAL later, in one write under the handler's lock (so lines never interleave with
# other records). The loop and the WSGI pool threads only append to a deque (thread-safe, no
# lock); the thread sleeps while nothing is queued. Every queued line is written by the thread,
# by `flush()` at adapter shutdown and before a forced exit, or by the atexit hook.
#
# Anything custom (a handler on the access logger or an ancestor, a filter, another format, a
# level above INFO on the handler, a replaced sys.stderr) keeps the LogRecord path, so users
# who configure logging get records as before. The choice is made at adapter startup, after
# the app was imported and its lifespan started (where apps configure logging).
"""The access log: the `cocaine_http.access` logger, or its buffered stderr fast path."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from time import perf_counter, sleep, time
from typing import Any

from ..http import Request
from ..http import accesslog as formats
from ..http.accesslog import (
    ACCESS_LOG_FORMAT,
    RECORD_FORMAT,
    RecordPrefix,
    access_log_line,
    record_line,
)

#: The name of the worker's own stderr handler (set by `cocaine-http` on its `cocaine_http`
#: logger).
STDERR_HANDLER = "cocaine_http.stderr"
#: Longest a queued line waits before it is written, in seconds.
FLUSH_INTERVAL = 0.2
#: Most lines queued at once (about 15 MB): more while stderr blocks are dropped and counted.
MAX_QUEUED = 100_000

access_logger = logging.getLogger("cocaine_http.access")


class LineBuffer:
    """Lines for a text stream, written in batches by a daemon thread (see the module comment).

    Args:
        stream: returns the stream to write to (looked up at each flush).
        lock: held while writing (the logging handler's, so records and lines do not mix).
        interval: seconds between the first queued line and its write.
    """

    __slots__ = ("stream", "limit", "lock", "interval", "lines", "pending", "dropped", "_wake",
                 "_flushing", "_thread")

    def __init__(self, stream: Callable[[], Any], lock: Any = None,
                 interval: float = FLUSH_INTERVAL, limit: int = MAX_QUEUED) -> None:
        self.stream = stream
        self.limit = limit
        self.lock = lock if lock is not None else threading.RLock()
        self.interval = interval
        self.lines: deque[str] = deque()
        self.pending = False
        self.dropped = 0
        self._wake = threading.Event()
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None

    def write(self, line: str) -> None:
        """Queue one line (with its newline); never blocks, safe from any thread. Beyond
        `limit` queued lines (the stream is not taking them) the line is dropped and counted."""
        lines = self.lines
        if len(lines) >= self.limit:
            self.dropped += 1
            return
        lines.append(line)
        if not self.pending:
            self.pending = True
            self._wake.set()

    def start(self) -> None:
        """Start the writing thread (once) and flush at interpreter exit."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cocaine-http-access-log",
                                            daemon=True)
            self._thread.start()
            atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            sleep(self.interval)
            self._wake.clear()  # before `pending`: a line queued in between is flushed below
            self.pending = False
            self.flush()

    def flush(self) -> None:
        """Write every queued line now, in one write (from any thread)."""
        with self._flushing:
            lines = self.lines
            count = len(lines)
            if not count:
                return
            text = "".join([lines.popleft() for _ in range(count)])
            dropped, self.dropped = self.dropped, 0
            if dropped:
                text += f"{dropped} access log line(s) dropped: stderr was not taking them\n"
            with self.lock:
                try:
                    stream = self.stream()
                    stream.write(text)
                    stream.flush()
                except (OSError, ValueError):  # stderr closed or gone: nothing to tell it to
                    pass


_buffer: LineBuffer | None = None


def flush() -> None:
    """Write the queued access-log lines now (the worker calls this before it exits)."""
    if _buffer is not None:
        _buffer.flush()


def stderr_handler(logger: logging.Logger = access_logger) -> logging.StreamHandler[Any] | None:
    """The worker's own stderr handler, when it alone would print `logger`'s INFO records, with
    RECORD_FORMAT, to the current sys.stderr; None when anything custom is on the way."""
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return None
        for handler in node.handlers:
            if found is not None or handler.get_name() != STDERR_HANDLER:
                return None
            found = handler
        if not node.propagate:
            break
        node = node.parent
    if not isinstance(found, logging.StreamHandler) or found.filters:
        return None
    formatter = found.formatter
    if (found.level > logging.INFO or found.stream is not sys.stderr
            or type(formatter) is not logging.Formatter or formatter.datefmt is not None
            or formatter._fmt != RECORD_FORMAT):
        return None
    return found


class AccessLog:
    """One line per request: `log(request, status, size, started)` with `started` the
    perf_counter() at the start of the request; `enabled` says whether to call it at all.

    Args:
        enabled: --access-log (the line is also off when the logger is not enabled for INFO).
        fmt: --access-log-format; the fast path serves the default format only.
        logger: the logger the lines belong to.
    """

    __slots__ = ("enabled", "log", "fast", "fmt", "_logger", "_prefix", "_write")

    def __init__(self, enabled: bool, fmt: str = ACCESS_LOG_FORMAT,
                 logger: logging.Logger = access_logger) -> None:
        self._logger = logger
        self.fmt = fmt
        self.enabled = enabled and logger.isEnabledFor(logging.INFO)
        default = fmt == ACCESS_LOG_FORMAT
        handler = stderr_handler(logger) if self.enabled and default else None
        self.fast = handler is not None
        self.log: Callable[[Request | None, int, int, float], None] = self._record
        if handler is not None:
            self._prefix = RecordPrefix(os.getpid(), "INFO", logger.name)
            buffer = _stderr_buffer(handler)
            self._write = buffer.write
            self.log = self._line
            if formats.caccess is not None:  # _line in one C call, _line itself when it declines
                self.log = formats.caccess.Logger(self._line, self._prefix, buffer, formats)

    def flush(self) -> None:
        """Write the lines queued so far (the fast path buffers them)."""
        if self.fast:
            flush()

    def _line(self, request: Request | None, status: int, size: int, started: float) -> None:
        now = time()
        self._write(record_line(self._prefix, request, status, size, now, perf_counter() - started))

    def _record(self, request: Request | None, status: int, size: int, started: float) -> None:
        duration = perf_counter() - started
        self._logger.info(access_log_line(request, status, size, started=time() - duration,
                                          duration=duration, fmt=self.fmt))


def _stderr_buffer(handler: logging.Handler) -> LineBuffer:
    global _buffer
    if _buffer is None:
        _buffer = LineBuffer(lambda: sys.stderr, handler.lock, FLUSH_INTERVAL)
        _buffer.start()
    return _buffer
