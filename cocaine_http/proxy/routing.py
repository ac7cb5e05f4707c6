# Strategy: routing is a pure function of the request target and headers, as in Cocaine's HTTP
# proxies (docs/protocol.md §6.1): the `X-Cocaine-Service` + `X-Cocaine-Event` headers together
# win and carry the full target as uri; else the path `/<app>/<event><rest>` names them, with
# `<rest>` as uri (a `/` prepended when missing, as the tornado and v0.12 proxies do). The two
# conveniences are options of the Router, not of the function: a health-check path answered by
# the front itself (production), and a default app whose `http` event takes every other path
# (`cocaine-http dev`, where there is one app and its own URLs should just work).
"""Which app, event and uri an HTTP request goes to."""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

_ROUTE = re.compile(rb"^/([^/]*)/([^/?]*)(.*)$", re.S)

#: What `Router.route` answers for the health-check path.
PING = ("", "", b"")


def route(target: bytes, headers: list[tuple[bytes, bytes]], *,
          known: Container[str] | None = None,
          default_app: str | None = None) -> tuple[str, str, bytes] | None:
    """(service, event, uri) for a request, or None (404).

    Args:
        known: the app names a path may name (None: any name; the cluster says if it exists).
        default_app: where any other path goes, to its `http` event, unchanged (dev mode).
    """
    service = event = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-cocaine-service":
            service = value
        elif lowered == b"x-cocaine-event":
            event = value
    if service and event:
        return service.decode("latin-1"), event.decode("latin-1"), target
    match = _ROUTE.match(target)
    if match is not None and match.group(1) and match.group(2):
        app = match.group(1).decode("latin-1")
        if known is None or app in known:
            rest = match.group(3)
            if not rest.startswith(b"/"):
                rest = b"/" + rest
            return app, match.group(2).decode("latin-1"), rest
    if default_app is not None:
        return default_app, "http", target
    return None


@dataclass(frozen=True)
class Router:
    """The front's routing options.

    Attributes:
        ping: a path the front answers 200 itself, for health checks (None: none); matched
            on the path alone, whatever the query.
        default_app: the app whose `http` event takes paths that name no app (dev mode).
        known: the app names paths may name (None: any).
    """

    ping: bytes | None = b"/ping"
    default_app: str | None = None
    known: Container[str] | None = None

    def route(self, target: bytes,
              headers: list[tuple[bytes, bytes]]) -> tuple[str, str, bytes] | None:
        """(service, event, uri), PING for the health-check path, or None (404)."""
        if self.ping is not None and target.split(b"?", 1)[0] == self.ping:
            return PING
        return route(target, headers, known=self.known, default_app=self.default_app)
