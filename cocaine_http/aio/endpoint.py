# Strategy: one parser for every endpoint spelling the runtime and users write, so the worker's
# --endpoint, the client's --locator and the dev runtime's addresses mean the same thing.
"""Endpoint strings: unix socket paths and host:port pairs."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EndpointError


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed endpoint: `path` for unix sockets, else `host` and `port`."""

    path: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(value: str | tuple[str, int] | Endpoint) -> Endpoint:
    """Parse `"host:port"`, `"[v6]:port"`, `(host, port)` or a unix socket path.

    A string with a `/`, or one that is not `host:port` with a numeric port, is a unix path,
    which is what cocaine-runtime passes as `--endpoint`.

    Raises:
        EndpointError: an empty string or a port outside 0..65535.
    """
    if isinstance(value, Endpoint):
        return value
    if isinstance(value, tuple):
        host, port = value
        return _tcp(host, port, repr(value))
    if not value:
        raise EndpointError("empty endpoint")
    if "/" in value:
        return Endpoint(path=value)
    host, sep, digits = value.rpartition(":")
    if not sep or not digits.isdigit() or not host:
        return Endpoint(path=value)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return _tcp(host, int(digits), value)


def _tcp(host: str, port: int, text: str) -> Endpoint:
    if not 0 <= port <= 65535:
        raise EndpointError(f"port out of range in endpoint {text}")
    return Endpoint(host=host, port=port)
