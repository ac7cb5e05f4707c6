"""`cocaine-http proxy --protocol 1` in front of the real v0.12 runtime: the example apps
deployed with our worker, reached over HTTP through the runtime's locator and app services
(docs/proxy.md "The cluster side")."""

from __future__ import annotations

import httpx
import pytest

APPS = {
    "flask12": "examples.flask_app.app:app",
    "fastapi12": "examples.fastapi_app:app",
}


@pytest.fixture(scope="module")
def deployed(runtime12):
    runtime12.deploy_ours(APPS)
    return runtime12


async def test_the_example_apps_answer_through_the_proxy(deployed, proxy_process) -> None:
    proxy = await proxy_process(deployed.locator, "--protocol", "1")
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
        flask = await client.get("/flask12/http/")
        posted = await client.post("/flask12/http/json?x=1", json={"a": 1})
        item = await client.get("/fastapi12/http/items/7?q=x")
        streamed = await client.get("/fastapi12/http/stream?n=3")
        unknown = await client.get("/nosuch12/http/")

    assert (flask.status_code, flask.headers["transfer-encoding"]) == (200, "chunked")
    assert "Flask" in flask.text
    assert posted.json()["received"] == {"a": 1}
    assert item.status_code == 200 and item.json()["item_id"] == 7
    assert streamed.status_code == 200
    assert streamed.text == "".join(f"data: event {i}\n\n" for i in range(3))
    assert unknown.status_code == 404
