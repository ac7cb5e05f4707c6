"""Cross-implementation: the reference Cocaine v0.11 Python framework (Python 2.7, PyPI
cocaine==0.11.1.17) runs as a worker under our dev runtime, which proves the engine and the HTTP
front speak the real protocol and not only our own dialect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgpack

from cocaine_http.dev.profile import Profile
from tests.plugins.devruntime import enqueue

PY2_WORKER = Path(__file__).resolve().parent / "workers" / "py2_worker.py"


async def test_reference_v011_worker_answers_an_enqueue_and_http(
    py2_cocaine: tuple[str, str],
    dev_runtime_factory: Any,
) -> None:
    """The PY11 Worker handshakes, heartbeats, answers `ping` and an HTTP request via @http."""
    python, site_dir = py2_cocaine
    profile = Profile(environment={"COCAINE_PY2_SITE": site_dir})
    runtime = await dev_runtime_factory([python, str(PY2_WORKER)], app="py2app",
                                        profile=profile)

    ping = await enqueue(runtime.engine, "ping", b"hi").wait(30)
    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
        response = await client.post("/path?x=1", content=b"payload", headers={"X-Test": "t"})

    assert ping.errors == [] and ping.choked
    assert [msgpack.unpackb(c, raw=True) for c in ping.chunks] == [b"pong:hi"]
    assert response.status_code == 200
    assert response.headers["x-framework"] == "py11"
    assert response.headers["x-powered-by"] == "Cocaine"
    assert response.text == "POST x=1 t payload"
    assert runtime.engine.info()["slaves"]["capacity"] == 10
