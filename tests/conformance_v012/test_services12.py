"""Our services client against the real v0.12 runtime: locator, storage, logging, errors."""

from __future__ import annotations

import pytest

from cocaine_http.errors import ServiceError, ServiceNotFoundError, ServiceUnavailableError
from cocaine_http.protocol.dialect import V0_11, V0_12
from cocaine_http.services import Client


class TestLocator:
    async def test_resolve_gives_endpoints_version_and_graphs(self, client12, runtime12):
        """resolve("storage") answers [[endpoints], version, graph]; the graph drives the
        method table and says each method answers with one value or an error."""
        found = await client12.resolve("storage")
        (host, port), version, table = found

        assert host == "127.0.0.1" and runtime12.shared[0] <= port <= runtime12.shared[1]
        assert version == 1
        assert {0: "read", 1: "write", 2: "remove", 3: "find"}.items() <= table.items()
        read = found.methods[0]
        assert read.downstream == {0: ("value", {}), 1: ("error", {})} and not read.streaming

    async def test_graphs_tell_streams_and_mute_methods(self, client12):
        """The node's enqueue streams both ways; logging's emit never answers."""
        node = await client12.resolve("node")
        logging = await client12.resolve("logging")
        enqueue = next(m for m in node.methods.values() if m.name == "enqueue")
        emit = next(m for m in logging.methods.values() if m.name == "emit")

        assert enqueue.streaming and enqueue.upstream_id("write") == 0
        assert emit.mute

    async def test_unknown_service_is_service_not_found(self, client12):
        """[10, 1] "service is not available" (locator category) becomes ServiceNotFoundError."""
        with pytest.raises(ServiceNotFoundError) as info:
            await client12.service("nosuch")

        assert info.value.name == "nosuch" and "not available" in str(info.value)

    async def test_v011_client_is_told_what_happened(self, runtime12):
        """A v0.11 client on a v0.12 locator: the runtime drops the connection, and the error
        says so and names the dialect instead of calling the locator unreachable."""
        async with Client(runtime12.locator, protocol=V0_11, timeout=5.0) as client:
            with pytest.raises(ServiceUnavailableError) as info:
                await client.resolve("storage")

        text = str(info.value)
        assert "closed the connection without answering resolve('storage')" in text
        assert "v0.11" in text and "unreachable" not in text

    async def test_locators_are_tried_in_order(self, runtime12, unused_tcp_port):
        """A comma list: a dead first locator is skipped, and the one that answered is
        asked first from then on."""
        dead = f"127.0.0.1:{unused_tcp_port}"
        async with Client(f"{dead},{runtime12.locator}", protocol=V0_12, timeout=5.0) as client:
            await client.resolve("storage")
            assert str(client.locator_endpoint) == runtime12.locator
            assert (await client.resolve("logging")).version == 2

    async def test_worker_arguments_choose_dialect_and_locators(self, runtime12, monkeypatch):
        """Inside a worker (argv `--protocol 1 --locator a,b`) Client() needs no arguments."""
        monkeypatch.setattr("sys.argv", ["slave", "--locator", f"[::1]:1,{runtime12.locator}",
                                         "--protocol", "1"])
        async with Client(timeout=5.0) as client:
            assert client.dialect is V0_12
            assert [str(e) for e in client.locator_endpoints] == ["[::1]:1", runtime12.locator]
            assert (await client.resolve("storage")).version == 1


class TestStorage:
    async def test_write_read_find_remove(self, client12):
        """The storage round trip: blobs come back as bytes, find lists keys by tag."""
        storage = await client12.service("storage")

        assert await storage.write("ns12", "k1", b"\x00\xffbinary", ["t1", "t2"]) is None
        await storage.write("ns12", "k2", b"two", ["t1"])
        assert await storage.read("ns12", "k1") == b"\x00\xffbinary"
        assert sorted(await storage.find("ns12", ["t1"])) == ["k1", "k2"]
        assert await storage.find("ns12", ["t1", "t2"]) == ["k1"]
        await storage.remove("ns12", "k1")
        assert await storage.find("ns12", ["t2"]) == []

    async def test_error_keeps_category_and_code(self, client12):
        """A missing key is [12, 2] (errno category, ENOENT): both numbers are kept."""
        storage = await client12.service("storage")

        with pytest.raises(ServiceError) as info:
            await storage.read("ns12", "missing")

        assert (info.value.category, info.value.code) == (12, 2)
        assert "No such file or directory" in info.value.message

    def test_sync_facade(self, runtime12):
        """The blocking facade works the same on v0.12 (private loop thread)."""
        client = Client(runtime12.locator, protocol=V0_12, timeout=10.0)
        try:
            storage = client.sync.service("storage")
            storage.write("ns12", "sync", b"blocking")
            assert storage.read("ns12", "sync") == b"blocking"
        finally:
            client.sync.close()


class TestLogging:
    async def test_verbosity_and_emit_with_attributes(self, client12, runtime12):
        """verbosity() answers a value; emit (mute: no reply) reaches the runtime's log with
        its source and attributes."""
        logger = client12.logger("app/conformance12")
        assert await logger.wait_ready(10)
        assert logger.verbosity == 0  # debug, the runtime's default

        logger.info("hello %s", "v0.12", attributes={"request": "r-1", "n": 7})
        logger.debug("debug line")

        log = await runtime12.wait_log("hello v0.12")
        line = next(l for l in log.splitlines() if "hello v0.12" in l)
        assert line.startswith("I,") and "source=app/conformance12" in line
        assert "request=r-1" in line and "n=7" in line
        assert await runtime12.wait_log("debug line")
