# Strategy: a thin logging.Handler over Logger. Python levels map onto the v0.11 Cocaine levels
# (ERROR and above -> 1 error, WARNING -> 2, INFO -> 3, anything lower -> 4 debug; docs/protocol.md
# §5), the record is formatted by the handler's formatter, and Logger.emit does the rest without
# blocking or raising. Records from the services client itself are skipped by default, and a
# thread-local guard stops a record logged while handling a record from looping back.
"""CocaineHandler: send Python `logging` records to the Cocaine logging service."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .logger import DEBUG, ERROR, INFO, WARNING

if TYPE_CHECKING:
    from .logger import Logger
    from .client import Client

#: Loggers whose records are not forwarded: the machinery that does the forwarding.
DEFAULT_EXCLUDE = ("cocaine_http.services", "cocaine_http.channel")


def cocaine_level(levelno: int) -> int:
    """The v0.11 Cocaine level for a Python logging level."""
    if levelno >= logging.ERROR:
        return ERROR
    if levelno >= logging.WARNING:
        return WARNING
    if levelno >= logging.INFO:
        return INFO
    return DEBUG


class CocaineHandler(logging.Handler):
    """A logging.Handler that emits through a Cocaine Logger.

    Args:
        logger: the Logger to use; default `client.logger(source)`.
        client: the Client for the default logger (default: a new `Client()`).
        source: message source for the default logger (default "app/<--app>").
        level: handler level, as for any logging.Handler.
        exclude: logger-name prefixes whose records are dropped.
    """

    def __init__(
        self,
        logger: Logger | None = None,
        *,
        client: Client | None = None,
        source: str | None = None,
        level: int = logging.NOTSET,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
    ) -> None:
        super().__init__(level)
        if logger is None:
            if client is None:
                from .client import Client

                client = Client()
            logger = client.logger(source)
        self.logger = logger
        self.exclude = tuple(exclude)
        self._guard = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(self.exclude) or getattr(self._guard, "active", False):
            return
        self._guard.active = True
        try:
            message = self.format(record)
            self.logger.emit(cocaine_level(record.levelno), self.logger.source, message)
        except Exception:
            self.handleError(record)
        finally:
            self._guard.active = False
