"""The sync facade: blocking service calls from threads, run on the client's loop."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from cocaine_http.errors import ServiceError, ServiceTimeoutError
from cocaine_http.services import Client


class TestSyncFacade:
    async def test_threads_call_storage_concurrently(self, dev_services, services_client):
        """Many threads write and read through client.sync at once; each sees its own value."""
        loop = asyncio.get_running_loop()
        storage = services_client.sync.service("storage")

        def work(i: int) -> bytes:
            storage.write("ns", f"k{i}", f"value-{i}".encode(), ["sync"])
            return storage.read("ns", f"k{i}")

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = await asyncio.gather(*(loop.run_in_executor(pool, work, i)
                                             for i in range(64)))
        keys = await loop.run_in_executor(None, storage.find, "ns", ["sync"])

        assert results == [f"value-{i}".encode() for i in range(64)]
        assert sorted(keys) == sorted(f"k{i}" for i in range(64))

    async def test_errors_and_timeouts_cross_the_thread_boundary(self, dev_services,
                                                                  services_client, fake_engine):
        """ServiceError and ServiceTimeoutError reach the calling thread unchanged."""
        dev_services.register_app(fake_engine("slow", {}))
        loop = asyncio.get_running_loop()
        storage = services_client.sync.service("storage")
        slow = services_client.sync.service("slow")

        with pytest.raises(ServiceError):
            await loop.run_in_executor(None, storage.read, "ns", "missing")
        with pytest.raises(ServiceTimeoutError):
            await loop.run_in_executor(None, lambda: slow.enqueue("never", b"", timeout=0.2))

    async def test_calling_from_the_loop_thread_raises_instead_of_deadlocking(
            self, services_client):
        """A sync call on the loop's own thread raises RuntimeError at once."""
        await services_client.resolve("storage")

        with pytest.raises(RuntimeError, match="deadlock"):
            services_client.sync.service("storage").read("ns", "k")

    async def test_unbound_client_runs_calls_on_a_private_loop_thread(self, dev_services):
        """A Client made outside any loop (as in a WSGI module) gets its own loop thread."""
        dev_services.storage.write("ns", "k", b"v", [])
        locator = "%s:%d" % dev_services.locator_endpoint

        def script() -> tuple[bool, bytes, bool]:
            client = Client(locator)
            unbound = client.loop is None
            value = client.sync.service("storage").read("ns", "k")
            private = client.sync.private_loop
            client.sync.close()
            return unbound, value, private

        result = await asyncio.get_running_loop().run_in_executor(None, script)

        assert result == (True, b"v", True)

    async def test_streaming_method_iterates_from_a_thread(self, dev_services, services_client,
                                                           fake_engine):
        """SyncService.stream yields an app's chunks one by one in the calling thread."""
        def chunks(data, sink):
            for part in (b"a", b"b", b"c"):
                sink.on_chunk(part)
            sink.on_choke()

        dev_services.register_app(fake_engine("chunky", {"go": chunks}))
        app = services_client.sync.service("chunky")

        got = await asyncio.get_running_loop().run_in_executor(
            None, lambda: list(app.stream("enqueue", "go", b"")))

        assert got == [b"a", b"b", b"c"]
