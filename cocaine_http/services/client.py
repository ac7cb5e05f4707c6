# Strategy: the Client is the one object an app keeps. It owns a locator Service (fixed method
# table, never resolved), a resolve cache {name: reply} that a Service clears through `forget`
# when its connection breaks, a Service per name (shared by every caller, since one connection
# carries many calls), loggers, and the sync facade. It binds to the event loop it is first
# used on (or the one given), so code in other threads can submit calls to that loop.
#
# The locator address comes from `--locator` in sys.argv when the process is a worker spawned
# by the runtime (docs/protocol.md §4.2, PY11 did the same), else 127.0.0.1:10053. A v0.12 runtime
# passes a comma list (IPv6 hosts in brackets): the locators are tried in that order, and the
# one that answered is asked first next time. The dialect is the worker's `--protocol` unless
# given; every version difference (framing, the locator's methods, the resolve answer's layout,
# how replies end) is the dialect's, so the Client, Service and Logger code is the same for
# both.
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
    ConnectionLostError,
    RemoteProtocolError,
    ServiceError,
    ServiceNotFoundError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)
from ..protocol.dialect import SERVICE_NOT_AVAILABLE, Dialect, get_dialect
from .base import DEFAULT_TIMEOUT
from .definitions import DefinitionLike
from .policy import NoReconnect, ReconnectPolicy
from .service import Resolved, Service

if TYPE_CHECKING:
    from .logger import Logger
    from .sync import SyncClient

log = logging.getLogger("cocaine_http.services")

DEFAULT_LOCATOR = "127.0.0.1:10053"


def _option(name: str, argv: Sequence[str] | None) -> str | None:
    """One of the runtime's arguments (`locator`, `protocol`) of a worker's argv, else None."""
    try:
        found, _ = split_runtime_args(sys.argv[1:] if argv is None else argv)
    except ConfigError:  # a trailing option without a value names nothing
        return None
    return found.get(name)


def locators_from_argv(argv: Sequence[str] | None = None) -> list[str]:
    """Every entry of a worker's `--locator` (a comma list under protocol 1), else the
    default."""
    value = _option("locator", argv)
    found = [entry.strip() for entry in (value or "").split(",") if entry.strip()]
    return found or [DEFAULT_LOCATOR]


def locator_from_argv(argv: Sequence[str] | None = None) -> str:
    """The first `--locator` entry of a worker's argv, else the default."""
    return locators_from_argv(argv)[0]


def dialect_from_argv(argv: Sequence[str] | None = None) -> Dialect:
    """The dialect of a worker's `--protocol` (absent: v0.11)."""
    return get_dialect(_option("protocol", argv))


def _locators(value: str | tuple[str, int] | Sequence[str] | None) -> list[Endpoint]:
    if value is None:
        return [parse_endpoint(e) for e in locators_from_argv()]
    if isinstance(value, tuple):
        return [parse_endpoint(value)]
    if isinstance(value, str):
        return [parse_endpoint(e.strip()) for e in value.split(",") if e.strip()]
    return [parse_endpoint(e) for e in value]


class Client:
    """Entry point to Cocaine services.

    Args:
        locator: "host:port" of the locator, a comma list of them (tried in order; IPv6 as
            "[::1]:10053"), or a list; default from `--locator`, else 127.0.0.1:10053.
        protocol: the dialect: a Dialect, or a `--protocol` value (0 / "v0.11", 1 / "v0.12");
            default the worker's `--protocol`, else v0.11.
        definitions: {service name: definition} applied over the shipped defaults.
        policy: reconnect policy for services (None: exponential backoff).
        timeout: default per-call timeout in seconds.
        loop: the loop calls run on (default: the one the client is first used on); the sync
            facade submits calls to it. A Client made inside a coroutine binds to its loop.
    """

    def __init__(
        self,
        locator: str | tuple[str, int] | Sequence[str] | None = None,
        *,
        protocol: Dialect | str | int | None = None,
        definitions: Mapping[str, DefinitionLike] | None = None,
        policy: ReconnectPolicy | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.locator_endpoints: list[Endpoint] = _locators(locator or None)
        if not self.locator_endpoints:
            raise ValueError(f"no locator endpoint in {locator!r}")
        self.dialect: Dialect = (
            protocol if isinstance(protocol, Dialect)
            else dialect_from_argv() if protocol is None else get_dialect(protocol)
        )
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
        self._locators = [
            Service(
                "locator", endpoint=ep, table=self.dialect.locator, dialect=self.dialect,
                definition=self.definitions.get("locator"), policy=NoReconnect(),
                timeout=timeout,
            )
            for ep in self.locator_endpoints
        ]
        self.locator = self._locators[0]

    @property
    def locator_endpoint(self) -> Endpoint:
        """The locator asked first (the one that answered last)."""
        return self.locator.endpoint or self.locator_endpoints[0]

    def _bind(self) -> asyncio.AbstractEventLoop:
        running = asyncio.get_running_loop()
        if self.loop is None or self.loop.is_closed():
            self.loop = running
        return running

    # -- resolving ----------------------------------------------------------------------------

    async def resolve(self, name: str, *, timeout: float | None = None) -> Resolved:
        """What the locator says about `name`, from the cache or the locators in order: a
        Resolution, which unpacks as ((host, port), version, {id: method}).

        Raises:
            ServiceNotFoundError: the locator does not know the service.
            ServiceUnavailableError: no locator answered; the text says what each one did.
        """
        self._bind()
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        failures: list[str] = []
        for locator in self._ordered_locators():
            try:
                result = await self._resolve_at(locator, name, timeout)
            except (ChannelError, ServiceUnavailableError, ServiceTimeoutError,
                    RemoteProtocolError) as exc:
                failures.append(self._explain(locator, name, exc))
                continue
            self.locator = locator
            self._cache[name] = result
            return result
        raise ServiceUnavailableError("; ".join(failures))

    def _ordered_locators(self) -> list[Service]:
        first = self.locator
        return [first] + [svc for svc in self._locators if svc is not first]

    async def _resolve_at(self, locator: Service, name: str, timeout: float | None) -> Resolved:
        for attempt in (1, 2):  # a locator connection that broke is reopened once (PY11)
            try:
                value = await locator.resolve(name, timeout=timeout)
                return self.dialect.resolution(value)
            except ServiceError as exc:
                if exc.category is None or (exc.category, exc.code) == SERVICE_NOT_AVAILABLE:
                    raise ServiceNotFoundError(name, exc.message) from exc
                raise
            except ConnectionLostError:
                locator.close()
                if attempt == 2:
                    raise
            except (ChannelError, ServiceUnavailableError, ServiceTimeoutError):
                locator.close()
                raise
        raise AssertionError("unreachable")

    def _explain(self, locator: Service, name: str, exc: BaseException) -> str:
        """One failure in words: refused, closed without an answer (a dialect mismatch, most
        likely), silent, or an answer of the wrong layout."""
        where = f"locator at {locator.endpoint}"
        speaks = f"this client speaks {self.dialect.name} (protocol {self.dialect.protocol})"
        if isinstance(exc, ConnectionLostError):
            return (f"{where} closed the connection without answering resolve({name!r}): "
                    f"{exc}; a runtime of another version does that, and {speaks}")
        if isinstance(exc, ServiceTimeoutError):
            return (f"{where} did not answer resolve({name!r}) in time: {exc}; a runtime of "
                    f"another version drops requests it cannot read (v0.11 does so silently), "
                    f"and {speaks}")
        if isinstance(exc, RemoteProtocolError):
            return f"{where} answered resolve({name!r}) in another layout ({speaks}): {exc}"
        return f"{where} is unreachable: {exc}"

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
                policy=self.policy, timeout=self.timeout, dialect=self.dialect,
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
        for locator in self._locators:
            locator.close()
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
