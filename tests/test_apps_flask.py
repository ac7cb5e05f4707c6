"""The Flask example through the dev runtime's HTTP front, compared with Flask's test client."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

from examples.flask_app.app import app as flask_app
from tests.plugins.apps import assert_same_response, rss_kib, worker_pids

TARGET = "examples.flask_app.app:app"


@pytest.fixture
async def client(app_runtime: Any) -> Any:
    """An httpx client talking to the Flask example served by one worker process."""
    runtime = await app_runtime(TARGET)
    async with httpx.AsyncClient(base_url=runtime.url, timeout=60) as c:
        c.runtime = runtime  # type: ignore[attr-defined]
        yield c


def reference(method: str, path: str, **kwargs: Any) -> Any:
    """The same request through Flask's own test client."""
    return flask_app.test_client().open(path, method=method, **kwargs)


class TestFlaskExample:
    @pytest.mark.parametrize("path", [
        "/", "/json?a=1&b=two", "/redirect", "/stream?n=7", "/error", "/missing",
        "/download?size=100000",
    ])
    async def test_get_matches_test_client(self, client: Any, path: str) -> None:
        """GET routes answer as under Flask's test client: status, headers, body."""
        real = await client.get(path)

        ref = reference("GET", path)
        assert_same_response(real, ref.status_code, ref.headers, ref.get_data())

    async def test_json_post_matches_test_client(self, client: Any) -> None:
        """A JSON body is parsed and echoed as Flask's test client does."""
        real = await client.post("/json?x=1", json={"k": [1, 2]})

        ref = reference("POST", "/json?x=1", json={"k": [1, 2]})
        assert_same_response(real, ref.status_code, ref.headers, ref.get_data())

    async def test_form_and_file_upload(self, client: Any) -> None:
        """Multipart form fields and a file arrive intact."""
        data = bytes(range(256)) * 40

        real = await client.post("/form", data={"name": "ann"},
                                 files={"doc": ("d.bin", data, "application/octet-stream")})

        assert real.status_code == 200
        assert real.json() == {
            "fields": {"name": "ann"},
            "files": {"doc": {"filename": "d.bin", "size": len(data),
                              "sha256": hashlib.sha256(data).hexdigest()}},
        }

    async def test_cookies_and_session_persist(self, client: Any) -> None:
        """The signed session cookie and a plain cookie round-trip between requests."""
        first = await client.get("/session")
        second = await client.get("/session")

        assert first.json() == {"visits": 1, "flavour": None}
        assert second.json() == {"visits": 2, "flavour": "oatmeal"}
        assert "HttpOnly" in first.headers["set-cookie"]

    async def test_head_has_headers_without_body(self, client: Any) -> None:
        """HEAD gets the GET headers and no body."""
        real = await client.head("/json")

        assert real.status_code == 200
        assert real.headers["content-type"] == "application/json"
        assert real.content == b""


class TestLargeBodies:
    async def test_50mb_download_and_upload_keep_worker_memory_bounded(
        self, client: Any
    ) -> None:
        """A 50 MB streamed download stays flat in the worker; a 50 MB upload costs about
        its own size (the protocol carries the body in one frame), never several copies."""
        size = 50 * 1024 * 1024
        await client.get("/")
        (pid,) = worker_pids(client.runtime)
        base = rss_kib(pid)
        peak = base
        received = 0
        async with client.stream("GET", f"/download?size={size}") as response:
            async for piece in response.aiter_bytes():
                received += len(piece)
                peak = max(peak, rss_kib(pid))
        assert received == size
        assert peak - base < 32 * 1024, f"download grew the worker by {peak - base} KiB"

        body = b"u" * size
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss_kib(pid))
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        response = await client.post("/upload", content=body)
        sampling = False
        await sampler

        assert response.json() == {"size": size, "sha256": hashlib.sha256(body).hexdigest()}
        assert peak - base < 3 * size // 1024, f"upload grew the worker by {peak - base} KiB"
