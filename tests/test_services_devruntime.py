"""Services with the real dev runtime: the app service in front of real worker processes, and a
Flask app whose views call storage through the sync facade."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cocaine_http.errors import ServiceError
from cocaine_http.services import Client


async def test_app_service_enqueue_reaches_a_real_worker(dev_runtime_factory, raw_worker_command):
    """enqueue through the app service runs on a worker; info reports the engine's state."""
    runtime = await dev_runtime_factory(raw_worker_command, app="raw", services=True)
    client = Client(runtime.locator)
    try:
        app = await client.service("raw")

        echoed = await app.enqueue("echo", b"\x00hello")
        info = await app.info()
        with pytest.raises(ServiceError) as failed:
            await app.enqueue("fail", b"")

        assert echoed == [b"\x00hello"]
        assert isinstance(info, dict) and info
        assert (failed.value.code, failed.value.message) == (5, "boom")
    finally:
        await client.close()


async def test_flask_view_uses_storage_through_sync_facade_concurrently(dev_app_runtime):
    """Concurrent HTTP requests to a Flask app under the dev runtime store and read objects
    through client.sync from the app's WSGI threads."""
    runtime = await dev_app_runtime("examples.services_demo:app")

    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as http:
        puts = await asyncio.gather(*(http.post(f"/put/k{i}", content=f"v{i}".encode())
                                      for i in range(24)))
        gets = await asyncio.gather(*(http.get(f"/get/k{i}") for i in range(24)))
        missing = await http.get("/get/nope")
        keys = await http.get("/keys")

    assert [r.status_code for r in puts] == [200] * 24
    assert [r.content for r in gets] == [f"v{i}".encode() for i in range(24)]
    assert missing.status_code == 404 and b"not been found" in missing.content
    assert sorted(keys.json()) == sorted(f"k{i}" for i in range(24))
    assert runtime.services.storage.read("demo", "k7") == b"v7"
