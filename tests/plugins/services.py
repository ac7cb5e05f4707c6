"""Shared pytest fixtures: services (dev services on loopback, a client bound to them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cocaine_http.aio.channel import Channel, serve
from cocaine_http.dev.services import DevServices
from cocaine_http.services import Client


@pytest.fixture
async def dev_services() -> AsyncIterator[DevServices]:
    """DevServices started in-process, locator on an OS-assigned port, storage in memory."""
    services = DevServices(locator_port=0)
    await services.start()
    yield services
    await services.close()


@pytest.fixture
async def services_client(dev_services: DevServices) -> AsyncIterator[Client]:
    """A Client whose locator is the `dev_services` fixture's."""
    host, port = dev_services.locator_endpoint
    client = Client(f"{host}:{port}", timeout=10.0)
    yield client
    await client.close()


class FakeEngine:
    """A dev-engine stand-in for app-service tests: answers events from a dict of callables
    `handler(data, sink)`; events not in the dict are held (never answered)."""

    def __init__(self, name: str, handlers: dict[str, Callable[[bytes, Any], None]]) -> None:
        self.name = name
        self.handlers = handlers
        self.held: list[Any] = []
        self.calls: list[tuple[str, bytes, str | None]] = []

    def enqueue(self, event: str, data: bytes, sink: Any, tag: str | None = None) -> None:
        self.calls.append((event, data, tag))
        handler = self.handlers.get(event)
        if handler is None:
            self.held.append(sink)
        else:
            handler(data, sink)

    def info(self) -> dict[str, Any]:
        return {"state": "running", "queue": {"capacity": 100, "depth": 0}}


@pytest.fixture
def fake_engine() -> Callable[..., FakeEngine]:
    return FakeEngine


class RawServer:
    """A tiny v0.11 server for failure tests: `on_call(channel, mid, session, args)` decides.

    Attributes:
        connections: how many connections were accepted.
        channels: the accepted channels (tests abort them to reset connections).
    """

    def __init__(self, on_call: Callable[[Channel, int, int, list[Any]], None]) -> None:
        self.on_call = on_call
        self.connections = 0
        self.channels: list[Channel] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> RawServer:
        self.server = await serve(("127.0.0.1", 0), self._accept, raw=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def _accept(self, channel: Channel) -> None:
        self.connections += 1
        self.channels.append(channel)
        channel.on_message = lambda mid, s, args: self.on_call(channel, mid, s, args)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for channel in self.channels:
            channel.abort()
        await self.server.wait_closed()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await raw_server(on_call)` starts a RawServer, closed after the test."""
    started: list[RawServer] = []

    async def make(on_call: Callable[[Channel, int, int, list[Any]], None]) -> RawServer:
        server = await RawServer(on_call).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()
