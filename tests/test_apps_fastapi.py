"""The FastAPI example through the dev runtime's HTTP front, compared with Starlette's
TestClient."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.plugins.apps import assert_same_response

TARGET = "examples.fastapi_app:app"


@pytest.fixture
async def client(app_runtime: Any) -> Any:
    """An httpx client talking to the FastAPI example served by one worker process."""
    runtime = await app_runtime(TARGET)
    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def reference() -> Any:
    """Starlette's TestClient on the same app, lifespan included."""
    import warnings

    with warnings.catch_warnings():
        # Starlette 1.x deprecates driving TestClient through httpx; the behaviour is the same.
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        from examples.fastapi_app import app

        with TestClient(app) as test_client:
            yield test_client


class TestFastAPIExample:
    @pytest.mark.parametrize("path", [
        "/", "/items/7?q=abc&limit=3", "/items/not-a-number", "/stream?n=4", "/missing",
    ])
    async def test_get_matches_test_client(self, client: Any, reference: Any,
                                           path: str) -> None:
        """JSON, path and query parameters, validation errors, streaming and 404 all match."""
        real = await client.get(path)

        ref = reference.get(path)
        assert_same_response(real, ref.status_code, ref.headers, ref.content)

    async def test_lifespan_state_reaches_requests(self, client: Any) -> None:
        """State yielded by the lifespan is visible to every request."""
        first = await client.get("/")
        second = await client.get("/")

        assert first.json() == second.json() == {"greeting": "hello", "started": True}

    async def test_json_post(self, client: Any, reference: Any) -> None:
        """A JSON body is parsed as under the TestClient."""
        real = await client.post("/echo", json={"a": [1, 2, {"b": None}]})

        ref = reference.post("/echo", json={"a": [1, 2, {"b": None}]})
        assert_same_response(real, ref.status_code, ref.headers, ref.content)

    async def test_stream_arrives_piece_by_piece(self, client: Any) -> None:
        """The event stream is delivered with chunked transfer, all events in order."""
        async with client.stream("GET", "/stream?n=3") as response:
            body = b"".join([piece async for piece in response.aiter_bytes()])

        assert response.headers.get("transfer-encoding") == "chunked"
        assert body == b"data: event 0\n\ndata: event 1\n\ndata: event 2\n\n"
