"""Cocaine service clients: Client, Service, BaseService, definitions, reconnect policies.

Typical use (inside a worker or under asyncio.run)::

    client = Client()                       # locator from --locator, else 127.0.0.1:10053
    storage = await client.service("storage")
    await storage.write("ns", "key", b"value", ["tag"])
    value = await storage.read("ns", "key")  # bytes
    log = client.logger()                    # never blocks, never raises

See docs/services.md.
"""

from __future__ import annotations

from ..protocol.service import State
from .base import DEFAULT_TIMEOUT, BaseService
from .client import Client, dialect_from_argv, locator_from_argv, locators_from_argv
from .definitions import Definition, MethodSpec, method, unpack_none, unpack_raw, unpack_value
from .policy import ExponentialBackoff, NoReconnect, ReconnectPolicy
from .service import Service, ServiceStream

__all__ = [
    "BaseService",
    "Client",
    "DEFAULT_TIMEOUT",
    "Definition",
    "ExponentialBackoff",
    "MethodSpec",
    "NoReconnect",
    "ReconnectPolicy",
    "Service",
    "ServiceStream",
    "State",
    "dialect_from_argv",
    "locator_from_argv",
    "locators_from_argv",
    "method",
    "unpack_none",
    "unpack_raw",
    "unpack_value",
]
