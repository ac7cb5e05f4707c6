# Strategy: Service = BaseService + a resolver + generated methods. Before each connect attempt
# it resolves its endpoint and method table through the locator unless it already has them
# ("resolving" is a flag over the closed state, as in the seed design); a socket error drops the
# resolved endpoint (and the client's cache entry) so the next connect asks the locator again.
# Methods are built from the table with definitions.build_methods and looked up in a dict by
# __getattr__, so an unknown name fails at once with the list of known ones.
"""Service: a resolved Cocaine service with methods generated from its method table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from functools import partial
from typing import Any

from ..aio.endpoint import Endpoint
from ..errors import UnknownMethodError
from ..protocol.service import MethodProtocol, Resolution, table_methods
from .base import BaseService
from .definitions import DefinitionLike, MethodSpec, build_methods, default_for

log = logging.getLogger("cocaine_http.services")

#: What a resolver returns: a Resolution, which unpacks as ((host, port), version, table).
Resolved = Resolution
Resolver = Callable[[str], Awaitable[Resolution]]


class ServiceStream:
    """The reply of a streaming method: `async for chunk in stream`, or `await stream` for the
    list of all chunks. The call is sent when iteration starts."""

    def __init__(self, service: Service, spec: MethodSpec, name: str, args: list[Any],
                 timeout: float | None, upstream: list[list[Any]] | None = None,
                 trace: tuple[int, int, int] | None = None) -> None:
        self._trace = trace
        self._service = service
        self._spec = spec
        self._name = name
        self._args = args
        self._upstream = upstream or []
        self._timeout = timeout
        self._session: int | None = None
        self._stream: Any = None
        self._done = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        svc = self._service
        if self._session is None:
            method_id = svc.method_id(self._spec.wire or self._name)
            self._session, self._stream = await svc.open_stream(
                method_id, self._args, method=self._name, timeout=self._timeout,
                upstream=self._upstream, trace=self._trace,
            )
        try:
            data = await svc.next_chunk(
                self._session, self._stream, method=self._name, timeout=self._timeout
            )
        except BaseException:
            self._done = True
            raise
        if data is None:
            self._done = True
            raise StopAsyncIteration
        return self._spec.unpack(data)

    async def collect(self) -> list[Any]:
        return [item async for item in self]

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.collect().__await__()

    async def aclose(self) -> None:
        """Stop reading; later replies of the call are ignored."""
        if self._session is not None and not self._done:
            self._service.cancel_stream(self._session)
        self._done = True


class Service(BaseService):
    """A Cocaine service client; methods come from the locator's table.

    Args:
        name: the service name to resolve.
        resolver: async `resolver(name) -> Resolution` (which unpacks as ((host, port),
            version, {id: method})); None when `endpoint` and `table` are given (the locator).
        endpoint, table: skip resolving; the table is {id: name} or {id: MethodProtocol}.
        definition: a project definition applied over the shipped default.
        forget: called with the name after a socket error (drops a resolve cache entry).
        policy, timeout, dialect: see BaseService.
    """

    def __init__(
        self,
        name: str,
        *,
        resolver: Resolver | None = None,
        endpoint: str | tuple[str, int] | Endpoint | None = None,
        table: Mapping[int, str] | Mapping[int, MethodProtocol] | None = None,
        definition: DefinitionLike = None,
        forget: Callable[[str], Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, endpoint, **options)
        self.resolving = False
        self.version: int | None = None
        self._resolver = resolver
        self._definition = definition
        self._forget = forget
        self._ids: dict[str, int] = {}
        self._specs: dict[str, MethodSpec] = {}
        self._bound: dict[str, Callable[..., Any]] = {}
        self.table: dict[int, str] = {}
        if table is not None:
            self._set_table(table)

    # -- resolving ----------------------------------------------------------------------------

    async def _prepare(self) -> None:
        if self.endpoint is not None and self.table:
            return
        if self._resolver is None:
            return
        self.resolving = True
        log.debug("service %s: resolving", self.name)
        try:
            found = await self._resolver(self.name)
        finally:
            self.resolving = False
        self.version = found.version
        host, port = found.endpoint
        self.endpoint = Endpoint(host=host, port=port)
        self._set_table(found.methods)

    def _lost(self, errno: int) -> None:
        if self._resolver is not None:
            self.endpoint = None
            if self._forget is not None:
                self._forget(self.name)

    def _set_table(self, table: Mapping[int, str] | Mapping[int, MethodProtocol]) -> None:
        self.protocols = table_methods(table)
        self.table = {mid: m.name for mid, m in self.protocols.items()}
        self._ids = {v: k for k, v in self.table.items()}
        methods = self.protocols.values()
        streams = frozenset(m.name for m in methods if m.streaming)
        upstream = frozenset(m.name for m in methods if m.upstream_id("write") is not None)
        specs, extras = build_methods(
            self.table, default_for(self.name, self.table, upstream), self._definition,
            streams=streams,
        )
        self._specs = specs
        bound: dict[str, Callable[..., Any]] = {n: self._make(n, s) for n, s in specs.items()}
        bound.update({n: partial(fn, self) for n, fn in extras.items()})
        self._bound = bound

    def method_id(self, wire: str) -> int:
        return self._ids[wire]

    @property
    def methods(self) -> list[str]:
        """Python names of the methods this service has (after resolving)."""
        return sorted(self._bound)

    # -- generated methods --------------------------------------------------------------------

    def _make(self, name: str, spec: MethodSpec) -> Callable[..., Any]:
        build, build_upstream = spec.args, spec.upstream
        if spec.streaming:
            def stream(*args: Any, timeout: float | None = None,
                       trace: tuple[int, int, int] | None = None,
                       **kwargs: Any) -> ServiceStream:
                wire_args = build(*args, **kwargs) if build else _plain(name, args, kwargs)
                upstream = build_upstream(*args, **kwargs) if build_upstream else None
                return ServiceStream(self, spec, name, wire_args,
                                     spec.timeout if timeout is None else timeout, upstream,
                                     trace)
            stream.__name__ = name
            return stream

        method_id = self._ids[spec.wire or name]
        unpack, result = spec.unpack, spec.result

        async def call(*args: Any, timeout: float | None = None,
                       trace: tuple[int, int, int] | None = None, **kwargs: Any) -> Any:
            wire_args = build(*args, **kwargs) if build else _plain(name, args, kwargs)
            chunks = await self.call(method_id, wire_args, method=name,
                                     timeout=spec.timeout if timeout is None else timeout,
                                     trace=trace)
            return result([unpack(c) for c in chunks])

        call.__name__ = name
        return call

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        bound = self.__dict__.get("_bound", {})
        if name in bound:
            return bound[name]
        known = ", ".join(sorted(bound)) or "none (not resolved yet)"
        raise UnknownMethodError(
            f"service {self.name} has no method {name!r}; known methods: {known}"
        )


def _plain(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    if kwargs:
        raise TypeError(f"{name}() takes positional arguments only, got {sorted(kwargs)}")
    return list(args)
