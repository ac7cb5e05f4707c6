# Strategy: the dev runtime's HTTP front is the proxy's front (cocaine_http/proxy, docs/proxy.md)
# with the dev conveniences switched on: any path that names no app goes to the app's `http`
# event (root routing), there is no health-check path (the app's own /ping is the app's), and a
# status the v0.11 tornado proxy cannot send is warned about. With the runtime's services on,
# requests take the proxy's path (DevUpstream: the ClusterUpstream on the runtime's locator,
# then the app service's enqueue, in the runtime's dialect); a request with a big body, and every request of a runtime
# without services, is handed straight to the app's Engine (EngineUpstream; its own app, or one
# started through the node service) with the front's Reply as the session's sink, so the
# engine's Flow is the back-pressure handle and its refusals map to statuses here
# (`status_for_error`); the engine's dialect says whether body chunks are msgpack strings
# (v0.11) or the bytes themselves (v0.12).
"""The dev runtime's HTTP front: the proxy's front on the dev engine."""

from __future__ import annotations

from collections.abc import Container

from ..protocol.dialect import V0_11
from ..proxy.connection import (TORNADO_STATUSES, ClientLimits, HTTPConnection, Reply,
                                http_date, request_frame)
from ..proxy.connection import Front as ProxyFront
from ..proxy.connection import Upstream
from ..proxy.routing import Router
from ..proxy.routing import route as _route
from .engine import (BROKEN_QUEUE, NOT_ACTIVE, QUEUE_FULL, SHUTTING_DOWN, SPAWN_FAILED, Engine)
from .slave import DISCONNECTED, TIMED_OUT

__all__ = ["ClientLimits", "DevUpstream", "EngineUpstream", "Front", "HTTPConnection", "Reply",
           "TORNADO_STATUSES", "http_date", "request_frame", "route", "status_for_error"]


def status_for_error(message: str) -> int:
    """The HTTP status for a session that failed before the app sent its head: 503 when the
    engine refuses it, 504 for a worker that missed its heartbeats, else 502 (the app failed,
    or no worker could be started or kept), as the proxy answers."""
    if message in (QUEUE_FULL, NOT_ACTIVE, SHUTTING_DOWN, BROKEN_QUEUE):
        return 503
    if message == TIMED_OUT:
        return 504
    if message.startswith(SPAWN_FAILED) or message == DISCONNECTED:
        return 502
    return 502


def route(target: bytes, headers: list[tuple[bytes, bytes]], app: str,
          root_route: bool, others: Container[str] = ()) -> tuple[str, str, bytes] | None:
    """(service, event, uri) for a request, or None (404): `/<app>/<event><rest>` for the
    front's app or one of `others`, the X-Cocaine-* headers for any, and in dev mode
    (`root_route`) any other path to the app's `http` event."""
    return _route(target, headers, known=_Names(app, others),
                  default_app=app if root_route else None)


class _Names:
    """The app names a path may name: the own app's and those started through the node."""

    __slots__ = ("own", "others")

    def __init__(self, own: str, others: Container[str]) -> None:
        self.own = own
        self.others = others

    def __contains__(self, name: object) -> bool:
        return name == self.own or name in self.others


def _raw_body(engine: Engine) -> bool:
    """Whether `engine`'s body chunks are the bytes themselves (its dialect says; an engine
    without one speaks v0.11)."""
    return getattr(engine, "dialect", V0_11).raw_body


class EngineUpstream:
    """The front's upstream in the dev runtime: the apps' engines, in-process.

    How body chunks come (msgpack strings under v0.11, the bytes under v0.12) is the engine's
    dialect's to say, so each Reply takes it from the engine its request goes to."""

    def __init__(self, engine: Engine | None, apps: dict[str, Engine]) -> None:
        self.engine = engine
        self.apps = apps
        self.raw_body = _raw_body(engine) if engine is not None else False

    def send(self, service: str, event: str, frame: bytes | bytearray, reply: Reply) -> None:
        own = self.engine
        engine = own if own is not None and service == own.name else self.apps.get(service)
        if engine is None:
            reply.fail(404, "no such app")
            return
        reply.raw_body = _raw_body(engine)
        engine.enqueue(event, frame, reply)

    def status_for_error(self, code: int, message: str) -> int:
        return status_for_error(message)

    async def close(self) -> None:
        """The engines belong to the runtime, which closes them."""


#: Request frames larger than this go from the dev front to the engine directly, not through the
#: app service: both ends of that connection are in this process, so a big body would exist in
#: it twice or more (the front's frame and its send buffer, the app service's read), and a big
#: POST is meant to exist once in the dev runtime (bench/bench_big_post.py).
DIRECT_FRAME = 1024 * 1024


class DevUpstream:
    """The dev front's upstream with the services on: the proxy's path (locator, app service,
    enqueue) for every request whose frame is at most DIRECT_FRAME bytes, the engine directly
    for larger ones. Failures map to statuses alike either way."""

    def __init__(self, cluster: Upstream, engines: EngineUpstream) -> None:
        self.cluster = cluster
        self.engines = engines
        #: The cluster path's; a request sent to an engine directly takes that engine's.
        self.raw_body = cluster.raw_body

    def send(self, service: str, event: str, frame: bytes | bytearray, reply: Reply) -> None:
        if len(frame) > DIRECT_FRAME:
            self.engines.send(service, event, frame, reply)
        else:
            self.cluster.send(service, event, frame, reply)

    def status_for_error(self, code: int, message: str) -> int:
        return status_for_error(message)

    async def close(self) -> None:
        await self.cluster.close()


class Front(ProxyFront):
    """The HTTP front of one engine.

    Args:
        engine: where requests are enqueued (None: only the apps of `apps`).
        root_route: route paths that do not name the app to its `http` event (dev mode).
        apps: the other apps the front routes to by name (started through the node service);
            the runtime adds and removes them in this dict.
        cluster: the proxy's ClusterUpstream on the runtime's own locator: requests then take
            the production path (locator, app service, enqueue), big bodies aside (DevUpstream);
            None: the engines directly.
        Others: see cocaine_http.proxy.connection.Front.
    """

    def __init__(self, engine: Engine | None, *, host: str = "127.0.0.1", port: int = 8080,
                 request_timeout: float = 30.0, max_body_size: int = 16 * 1024 * 1024,
                 root_route: bool = True, apps: dict[str, Engine] | None = None,
                 powered_by: bool = True, server_header: bool = True,
                 date_header: bool = True, limits: ClientLimits | None = None,
                 cluster: Upstream | None = None) -> None:
        self.engine = engine
        self.apps: dict[str, Engine] = {} if apps is None else apps
        own = engine.name if engine is not None else ""
        router = Router(ping=None, known=_Names(own, self.apps),
                        default_app=own if root_route and engine is not None else None)
        engines = EngineUpstream(engine, self.apps)
        upstream: Upstream = engines if cluster is None else DevUpstream(cluster, engines)
        super().__init__(upstream, host=host, port=port,
                         router=router, request_timeout=request_timeout,
                         max_body_size=max_body_size, powered_by=powered_by,
                         server_header=server_header, date_header=date_header, limits=limits,
                         warn_tornado_statuses=True)
