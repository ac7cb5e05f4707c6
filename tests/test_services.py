"""Service client against the dev runtime's real TCP services (and tiny in-test servers)."""

from __future__ import annotations

import asyncio
import errno

import pytest

from cocaine_http.dev.services import DevServices
from cocaine_http.errors import (
    ConnectionLostError,
    ServiceError,
    ServiceNotFoundError,
    ServiceTimeoutError,
    ServiceUnavailableError,
    UnknownMethodError,
)
from cocaine_http.protocol.dialect import V0_11, pack
from cocaine_http.services import Client, NoReconnect, Service, State, method, unpack_none


class TestResolveAndCall:
    async def test_resolve_returns_endpoint_version_and_method_table(self, services_client,
                                                                     dev_services):
        """resolve answers the v0.11 layout: [[host, port], 1, {id: method}]."""
        (host, port), version, table = await services_client.resolve("storage")

        assert (host, port) == dev_services.endpoints["storage"]
        assert version == 1
        assert table == {0: "read", 1: "write", 2: "remove", 3: "find"}

    async def test_storage_round_trip_returns_bytes_and_lists(self, services_client):
        """write then read gives the blob back as bytes; find returns a list of keys."""
        storage = await services_client.service("storage")

        await storage.write("ns", "k1", b"\x00\xffbinary", ["t1", "t2"])
        await storage.write("ns", "k2", b"two", ["t1"])
        value = await storage.read("ns", "k1")
        found = await storage.find("ns", ["t1"])
        both = await storage.find("ns", ["t1", "t2"])

        assert value == b"\x00\xffbinary"
        assert found == ["k1", "k2"]
        assert both == ["k1"]

    async def test_many_calls_in_flight_share_one_connection(self, services_client, dev_services):
        """Concurrent calls on one Service use one connection and distinct sessions."""
        storage = await services_client.service("storage")
        for i in range(50):
            dev_services.storage.write("ns", f"k{i}", f"v{i}".encode(), [])

        values = await asyncio.gather(*(storage.read("ns", f"k{i}") for i in range(50)))

        assert values == [f"v{i}".encode() for i in range(50)]
        assert len(dev_services._servers["storage"]._channels) == 1

    async def test_error_reply_becomes_service_error(self, services_client):
        """An error reply raises ServiceError with service, method, code and message."""
        storage = await services_client.service("storage")

        with pytest.raises(ServiceError) as info:
            await storage.read("ns", "missing")

        assert (info.value.service, info.value.method, info.value.code) == ("storage", "read", 1)
        assert "not been found" in info.value.message

    async def test_unknown_service_raises_service_not_found(self, services_client):
        """The locator's "not available" error becomes ServiceNotFoundError(name)."""
        with pytest.raises(ServiceNotFoundError) as info:
            await services_client.service("nosuch")

        assert info.value.name == "nosuch"
        assert "service nosuch is not available" in str(info.value)

    async def test_unknown_method_raises_at_once_listing_known_methods(self, services_client):
        """A name the method table lacks raises UnknownMethodError naming the known ones."""
        storage = await services_client.service("storage")

        with pytest.raises(UnknownMethodError) as info:
            storage.fetch("ns", "k")

        assert "read, remove, write" in str(info.value)

    async def test_services_are_shared_per_name(self, services_client):
        """Two service() calls for one name return the same connected Service."""
        first = await services_client.service("logging")
        second = await services_client.service("logging")

        assert first is second and first.state is State.CONNECTED


class TestDefinitions:
    async def test_definition_renames_overrides_and_adds_methods(self, dev_services,
                                                                  services_client):
        """A mapping definition can rename, hide, re-unpack and add methods."""
        dev_services.storage.write("ns", "k", b"\x81\xa1a\x01", [])

        async def read_map(svc, ns, key):
            return await svc.get(ns, key)

        storage = await services_client.service("storage", {
            "get": method(wire="read"),     # rename ...
            "read": None,                   # ... hiding the old name
            "raw": {"wire": "read", "unpack": unpack_none},
            "read_map": read_map,
        })

        assert await storage.get("ns", "k") == b"\x81\xa1a\x01"
        assert await storage.raw("ns", "k") == pack(b"\x81\xa1a\x01")
        assert await storage.read_map("ns", "k") == b"\x81\xa1a\x01"
        with pytest.raises(UnknownMethodError):
            storage.read

    async def test_client_definitions_apply_by_service_name(self, dev_services):
        """Client(definitions=...) applies a class definition to the named service."""
        from cocaine_http.services import Definition

        class Storage(Definition):
            read = method(result=lambda values: len(values[0]))

        dev_services.storage.write("ns", "k", b"12345", [])
        client = Client("%s:%d" % dev_services.locator_endpoint, definitions={"storage": Storage})

        try:
            storage = await client.service("storage")
            assert await storage.read("ns", "k") == 5
        finally:
            await client.close()


class TestAppService:
    async def test_enqueue_streams_worker_chunks_verbatim(self, dev_services, services_client,
                                                          fake_engine):
        """enqueue is streaming: each worker chunk arrives untouched, then the stream ends."""
        def ping(data, sink):
            sink.on_chunk(b"\xa2hi")
            sink.on_chunk(data)
            sink.on_choke()

        engine = fake_engine("echo", {"ping": ping})
        dev_services.register_app(engine)
        app = await services_client.service("echo")

        chunks = [chunk async for chunk in app.enqueue("ping", b"\x01\x02")]
        info = await app.info()

        assert chunks == [b"\xa2hi", b"\x01\x02"]
        assert engine.calls == [("ping", b"\x01\x02", None)]
        assert info["state"] == "running"

    async def test_enqueue_error_without_choke_ends_the_stream(self, dev_services,
                                                               services_client, fake_engine):
        """An engine error (no choke follows, as in the runtime) raises ServiceError."""
        engine = fake_engine("broken", {"x": lambda data, sink: sink.on_error(2, "queue full")})
        dev_services.register_app(engine)
        app = await services_client.service("broken")

        with pytest.raises(ServiceError) as info:
            await app.enqueue("x", b"")

        assert (info.value.code, info.value.message) == (2, "queue full")


class TestFailures:
    async def test_call_to_silent_service_times_out(self, raw_server):
        """A service that never answers makes the call fail with ServiceTimeoutError."""
        server = await raw_server(lambda ch, mid, s, args: None)
        svc = Service("silent", endpoint=("127.0.0.1", server.port), table={0: "read"})

        with pytest.raises(ServiceTimeoutError):
            await svc.read("ns", "k", timeout=0.2)

        assert len(svc._calls) == 0 and svc.state is State.CONNECTED
        svc.close()

    async def test_bad_reply_fails_its_call_and_the_connection_goes_on(self, raw_server):
        """A well-framed reply whose arguments do not fit (a chunk of an int) fails only the
        call it answers, with ServiceError(1, what was wrong); the connection serves the next
        call."""
        def on_call(ch, mid, session, args):
            if session == 1:
                ch.send(session, [pack([4, session, [5]]), V0_11.choke(session)])
            else:
                ch.send(session, [V0_11.chunk(session, pack("ok")), V0_11.choke(session)])

        server = await raw_server(on_call)
        svc = Service("odd", endpoint=("127.0.0.1", server.port), table={0: "get"})

        with pytest.raises(ServiceError) as info:
            await svc.get()
        again = await svc.get()

        assert info.value.code == 1
        assert info.value.message == "bad chunk message: chunk takes one raw string, got [5]"
        assert again == "ok" and server.connections == 1 and svc.state is State.CONNECTED
        svc.close()

    async def test_reply_with_an_unusable_session_is_dropped(self, raw_server):
        """A reply whose session is no non-negative integer (a string, a negative number)
        answers no call: the channel logs and drops it, and the call gets its real reply on
        the same connection."""
        def on_call(ch, mid, session, args):
            ch.send(session, [pack([4, "abc", [pack("lost")]]), pack([6, -1, []]),
                              V0_11.chunk(session, pack("ok")), V0_11.choke(session)])

        server = await raw_server(on_call)
        svc = Service("odd", endpoint=("127.0.0.1", server.port), table={0: "get"})

        assert await svc.get() == "ok" and await svc.get() == "ok"
        assert server.connections == 1 and svc.state is State.CONNECTED
        svc.close()

    async def test_reset_mid_call_fails_pending_then_next_call_reconnects(self, raw_server):
        """Pending calls get ConnectionLostError(errno); the next call reconnects (backoff)."""
        def on_call(ch, mid, session, args):
            if server.connections == 1:
                ch.abort()
            else:
                ch.send(session, [V0_11.chunk(session, pack("ok")), V0_11.choke(session)])

        server = await raw_server(on_call)
        svc = Service("flaky", endpoint=("127.0.0.1", server.port), table={0: "get"})
        states = []
        svc.add_listener(lambda old, new: states.append(new))

        results = await asyncio.gather(svc.get(), svc.get(), return_exceptions=True)
        again = await svc.get()

        assert all(isinstance(r, ConnectionLostError) for r in results)
        assert results[0].errno in (errno.ESHUTDOWN, errno.ECONNRESET)
        assert again == "ok" and server.connections == 2
        assert states[:3] == [State.CONNECTING, State.CONNECTED, State.ERROR]
        svc.close()

    async def test_no_reconnect_policy_keeps_error_until_closed(self, raw_server):
        """With NoReconnect a failed service stays in error; close() lets it connect again."""
        def on_call(ch, mid, session, args):
            if server.connections == 1:
                ch.abort()
            else:
                ch.send(session, [V0_11.chunk(session, pack(1)), V0_11.choke(session)])

        server = await raw_server(on_call)
        svc = Service("flaky", endpoint=("127.0.0.1", server.port), table={0: "get"},
                      policy=NoReconnect())

        with pytest.raises(ConnectionLostError):
            await svc.get()
        with pytest.raises(ConnectionLostError):
            await svc.get()
        svc.close()
        value = await svc.get()

        assert value == 1 and server.connections == 2
        svc.close()

    async def test_resolved_service_reresolves_after_connection_loss(self, dev_services,
                                                                     services_client,
                                                                     fake_engine):
        """A lost connection drops the resolve cache; the next call asks the locator again."""
        engine = fake_engine("hold", {"ok": lambda d, sink: (sink.on_chunk(b"y"), sink.on_choke())})
        dev_services.register_app(engine)
        app = await services_client.service("hold")
        held = asyncio.ensure_future(app.enqueue("wait", b"").collect())
        while not engine.held:
            await asyncio.sleep(0.01)

        for channel in list(dev_services._servers["hold"]._channels):
            channel.abort()
        with pytest.raises(ConnectionLostError):
            await held
        cached_after_loss = "hold" in services_client._cache
        chunks = await app.enqueue("ok", b"")

        assert not cached_after_loss
        assert chunks == [b"y"]
        assert "hold" in services_client._cache

    async def test_locator_down_raises_service_unavailable_naming_address(self):
        """An unreachable locator raises ServiceUnavailableError with its address."""
        services = DevServices(locator_port=0)
        await services.start()
        host, port = services.locator_endpoint
        await services.close()
        client = Client(f"{host}:{port}")

        with pytest.raises(ServiceUnavailableError) as info:
            await client.service("storage")

        assert f"{host}:{port}" in str(info.value)
        await client.close()

    async def test_close_is_idempotent_from_every_state(self, services_client):
        """close() works when connected, closed and again closed, failing pending calls."""
        svc = await services_client.service("storage")
        pending = asyncio.ensure_future(svc.find("ns", []))
        await asyncio.sleep(0)

        svc.close()
        svc.close()

        assert svc.state is State.CLOSED
        with pytest.raises(ConnectionLostError):
            await pending


class TestWireVectors:
    """docs/protocol.md §11.3: the calls the client sends are byte-exact."""

    async def test_calls_match_protocol_vectors(self):
        """resolve, read, write, emit and verbosity calls encode exactly as the vectors."""
        received = bytearray()
        got_all = asyncio.Event()
        vectors = {
            "resolve": "93000191a773746f72616765",
            "read": "93000492a96d616e696665737473a46563686f",
            "write": "93010594a26e73a16ba17691a27431",
            "emit": "9300029303a86170702f6563686fa568656c6c6f",
            "verbosity": "93010390",
        }
        padding = b"".join(V0_11.call(s, 3, []) for s in (1, 2, 3)) + V0_11.call(1, 1, [])
        expected = b"".join(bytes.fromhex(v) for v in vectors.values()) + padding

        finished: list[bool] = []

        async def handle(reader, writer):
            try:
                while data := await reader.read(65536):
                    received.extend(data)
                    if len(received) >= len(expected):
                        got_all.set()
            finally:
                writer.close()
                await writer.wait_closed()
                finished.append(True)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        locator = Service("locator", endpoint=("127.0.0.1", port), table={0: "resolve"})
        storage = Service("storage", endpoint=("127.0.0.1", port),
                          table={0: "read", 1: "write", 2: "remove", 3: "find"})
        logging_ = Service("logging", endpoint=("127.0.0.1", port), table={0: "emit", 1: "v"})
        await locator.connect()
        await storage.connect()
        await logging_.connect()
        tasks = [asyncio.ensure_future(locator.resolve("storage", timeout=5))]
        for _ in range(3):
            storage.notify(3, [])  # sessions 1..3, so read gets session 4 as in the vector
        tasks.append(asyncio.ensure_future(storage.read("manifests", "echo", timeout=5)))
        await asyncio.sleep(0)
        tasks.append(asyncio.ensure_future(storage.write("ns", "k", "v", ["t1"], timeout=5)))
        logging_.notify(1, [])
        logging_.notify(0, [3, "app/echo", "hello"])
        logging_.notify(1, [])
        await asyncio.wait_for(got_all.wait(), 5)

        stream = bytes(received)
        for name, hexed in vectors.items():
            assert bytes.fromhex(hexed) in stream, name
        assert len(stream) == len(expected)
        for task in tasks:
            task.cancel()
        for svc in (locator, storage, logging_):
            svc.close()
        while len(finished) < 3:  # every server-side connection saw EOF and closed
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
