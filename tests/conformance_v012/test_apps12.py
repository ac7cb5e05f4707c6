"""The example apps as workers of the real v0.12 runtime, driven through its app service by
our own Client with the HTTP envelope the v0.12 proxies send: `[method, uri, "1.1", headers,
body]`, answered with a head `[status, [[name, value], ...]]`, then the body's bytes."""

from __future__ import annotations

import json

import msgpack
import pytest

from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.services import Client


APPS = {
    "flask12": "examples.flask_app.app:app",
    "fastapi12": "examples.fastapi_app:app",
    "django12": "examples.django_project.wsgi:application",
    # a Flask app whose views call storage through Client() and its sync facade: inside the
    # worker the client takes its dialect and locators from --protocol 1 and --locator
    "demo12": "examples.services_demo:app",
}


def envelope(method: str, uri: str, headers: list[list[str]] | None = None, body: bytes = b""
             ) -> bytes:
    return pack([method, uri, "1.1", headers or [], body])


async def http(client, app: str, method: str, uri: str, **kw) -> tuple[int, dict[str, str], bytes]:
    """One request through the app service: (status, headers, body)."""
    svc = await client.service(app)
    chunks = await svc.enqueue("http", envelope(method, uri, **kw))
    status, headers = msgpack.unpackb(chunks[0], raw=False)
    return status, {k.lower(): v for k, v in headers}, b"".join(chunks[1:])


@pytest.fixture(scope="module")
def deployed(runtime12):
    """Both example apps deployed (once per module) with our worker as the slave."""
    runtime12.deploy_ours(APPS)
    return runtime12


class TestFlask:
    async def test_index_and_json(self, deployed, client12):
        """GET / and POST /json through enqueue: status, headers and body."""
        status, headers, body = await http(client12, "flask12", "GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert body

        payload = json.dumps({"a": [1, 2]}).encode()
        status, headers, body = await http(
            client12, "flask12", "POST", "/json",
            headers=[["Content-Type", "application/json"]], body=payload,
        )
        assert status == 200 and json.loads(body)["received"] == {"a": [1, 2]}

    async def test_not_found_is_an_http_answer(self, deployed, client12):
        """An unknown path is the app's 404, not a protocol error."""
        status, _, _ = await http(client12, "flask12", "GET", "/nosuch")
        assert status == 404


class TestFastAPI:
    async def test_lifespan_state_and_path_parameters(self, deployed, client12):
        """The lifespan ran in the worker; path and query parameters arrive."""
        status, _, body = await http(client12, "fastapi12", "GET", "/")
        assert status == 200 and json.loads(body) == {"greeting": "hello", "started": True}

        status, _, body = await http(client12, "fastapi12", "GET", "/items/7?q=x&limit=3")
        assert json.loads(body) == {"item_id": 7, "q": "x", "limit": 3}

    async def test_unknown_event_is_an_error_with_category(self, deployed, client12):
        """An event the worker has no handler for fails the call; the error keeps both
        numbers of the worker's [category, code]."""
        from cocaine_http.errors import ServiceError

        svc = await client12.service("fastapi12")
        with pytest.raises(ServiceError) as info:
            await svc.enqueue("nosuch", b"")

        assert info.value.category == 42


class TestDjango:
    async def test_json_view_and_streaming(self, deployed, client12):
        """A Django view with a path parameter, and a streamed response gathered whole."""
        status, _, body = await http(client12, "django12", "GET", "/api/items/5/?q=z",
                                     headers=[["Host", "localhost"]])
        assert status == 200 and json.loads(body) == {"id": 5, "q": "z", "method": "GET"}

        status, _, body = await http(client12, "django12", "GET", "/stream/",
                                     headers=[["Host", "localhost"]])
        assert status == 200 and body.startswith(b"row 0\n")


class TestServicesInsideTheWorker:
    async def test_views_call_storage_with_the_workers_dialect(self, deployed, client12):
        """put/get/keys through the app: the app's own Client speaks v0.12 to the runtime."""
        status, _, body = await http(client12, "demo12", "POST", "/put/greeting", body=b"hello")
        assert (status, body) == (200, b"stored\n")

        status, _, body = await http(client12, "demo12", "GET", "/get/greeting")
        assert (status, body) == (200, b"hello")
        status, _, body = await http(client12, "demo12", "GET", "/keys")
        assert json.loads(body) == ["greeting"]
        storage = await client12.service("storage")
        assert await storage.read("demo", "greeting") == b"hello"

    def test_sync_facade_drives_an_app(self, deployed):
        """The blocking facade (a WSGI view's way) enqueues the HTTP envelope as well."""
        client = Client(deployed.locator, protocol=V0_12, timeout=15.0)
        try:
            chunks = client.sync.service("flask12").enqueue("http", envelope("GET", "/json"))
        finally:
            client.sync.close()

        assert msgpack.unpackb(chunks[0], raw=False)[0] == 200
        assert json.loads(b"".join(chunks[1:]))["message"] == "hello"
