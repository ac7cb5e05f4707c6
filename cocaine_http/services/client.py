# Strategy: the Client is the one object an app keeps. It owns a locator Service (fixed method
# table, never resolved), a resolve cache {name: reply} that a Service clears through `forget`
# when its connection breaks, a Service per name (shared by every caller, since one connection
# carries many calls), loggers, and the sync facade. It binds to the event loop it is first
# used on (or the one given), so code in other threads can submit calls to that loop.
#
# The locator address comes from `--locator` in sys.argv when the process is a worker spawned
# by the runtime (PROTOCOL.md §4.2, PY11 did the same), else 127.0.0.1:10053. A v0.12 runtime
# passes a comma list; the first entry is used.
"""Client: resolves services through the locator and hands out Service clients and loggers."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..aio.endpoint import Endpoint, parse_endpoint
from ..config import split_runtime_args
from ..errors import (
    ChannelError,
    ConfigError,
    ServiceError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from .base import DEFAULT_TIMEOUT
from .definitions import LOCATOR_TABLE, DefinitionLike
from .policy import NoReconnect, ReconnectPolicy
from .service import Resolved, Service

if TYPE_CHECKING:
    from .logger import Logger
    from .sync import SyncClient

log = logging.getLogger("cocaine_http.services")

DEFAULT_LOCATOR = "127.0.0.1:10053"


def locator_from_argv(argv: Sequence[str] | None = None) -> str:
    """The `--locator` value of a worker's argv (first of a comma list), else the default."""
    try:
        found, _ = split_runtime_args(sys.argv[1:] if argv is None else argv)
    except ConfigError:  # a trailing --locator without a value names no locator
        found = {}
    return found["locator"].split(",")[0] if "locator" in found else DEFAULT_LOCATOR


class Client:
    """Entry point to Cocaine services.

    Args:
        locator: "host:port" of the locator; default from `--locator`, else 127.0.0.1:10053.
        definitions: {service name: definition} applied over the shipped defaults.
        policy: reconnect policy for services (None: exponential backoff).
        timeout: default per-call timeout in seconds.
        loop: the loop calls run on (default: the one the client is first used on); the sync
            facade submits calls to it. A Client made inside a coroutine binds to its loop.
    """

    def __init__(
        self,
        locator: str | tuple[str, int] | None = None,
        *,
        definitions: Mapping[str, DefinitionLike] | None = None,
        policy: ReconnectPolicy | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.locator_endpoint: Endpoint = parse_endpoint(locator or locator_from_argv())
        self.definitions = dict(definitions or {})
        self.policy = policy
        self.timeout = timeout
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self.loop = loop
        self._cache: dict[str, Resolved] = {}
        self._services: dict[str, Service] = {}
        self._loggers: dict[str, Logger] = {}
        self._sync: SyncClient | None = None
        self.locator = Service(
            "locator", endpoint=self.locator_endpoint, table=LOCATOR_TABLE,
            definition=self.definitions.get("locator"), policy=NoReconnect(), timeout=timeout,
        )

    def _bind(self) -> asyncio.AbstractEventLoop:
        running = asyncio.get_running_loop()
        if self.loop is None or self.loop.is_closed():
            self.loop = running
        return running

    # -- resolving ----------------------------------------------------------------------------

    async def resolve(self, name: str, *, timeout: float | None = None) -> Resolved:
        """((host, port), version, {id: method}) for `name`, from the cache or the locator.

        Raises:
            ServiceNotFoundError: the locator does not know the service.
            ServiceUnavailableError: the locator cannot be reached.
        """
        self._bind()
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        for attempt in (1, 2):  # a locator connection that broke is reopened once (PY11)
            try:
                result: Resolved = await self.locator.resolve(name, timeout=timeout)
                break
            except ServiceError as exc:
                raise ServiceNotFoundError(name, exc.message) from exc
            except (ChannelError, ServiceUnavailableError) as exc:
                self.locator.close()
                if attempt == 2 or isinstance(exc, ServiceUnavailableError):
                    raise ServiceUnavailableError(
                        f"locator at {self.locator_endpoint} is unreachable: {exc}"
                    ) from exc
        self._cache[name] = result
        return result

    def forget(self, name: str) -> None:
        """Drop a cached resolve result (a Service calls this when its connection breaks)."""
        self._cache.pop(name, None)

    # -- services -----------------------------------------------------------------------------

    async def service(
        self, name: str, definition: DefinitionLike = None, *, connect: bool = True
    ) -> Service:
        """A connected Service for `name`; one shared instance per name unless a definition is
        given.

        Raises:
            ServiceNotFoundError, ServiceUnavailableError: see `resolve`.
        """
        self._bind()
        svc = self._services.get(name) if definition is None else None
        if svc is None:
            svc = Service(
                name, resolver=self.resolve, forget=self.forget,
                definition=definition if definition is not None else self.definitions.get(name),
                policy=self.policy, timeout=self.timeout,
            )
            if definition is None:
                self._services[name] = svc
        if connect:
            await svc.connect()
        return svc

    def logger(self, prefix: str | None = None, **options: Any) -> Logger:
        """A Logger whose messages carry source `prefix` (default "app/<--app>").

        Never blocks: it connects to the logging service in the background on this client's
        loop. See `cocaine_http.services.logger.Logger` for options.
        """
        from .logger import Logger, default_source

        source = prefix or default_source()
        logger = self._loggers.get(source)
        if logger is None or options:
            logger = Logger(self, source, **options)
            self._loggers.setdefault(source, logger)
        return logger

    @property
    def sync(self) -> SyncClient:
        """Blocking facade for code in other threads (WSGI views)."""
        from .sync import SyncClient

        if self._sync is None:
            self._sync = SyncClient(self)
        return self._sync

    async def close(self) -> None:
        """Close every service, logger and the locator connection."""
        for logger in list(self._loggers.values()):
            await logger.close()
        for svc in list(self._services.values()):
            svc.close()
        self.locator.close()
        self._services.clear()
        self._loggers.clear()
        self._cache.clear()

    async def __aenter__(self) -> Client:
        self._bind()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Client locator={self.locator_endpoint}>"
