"""`cocaine-http proxy --protocol 1` in front of the real v0.12 runtime: the example apps
deployed with our worker, reached over HTTP through the runtime's locator and app services
(docs/proxy.md "The cluster side"); an app redeployed while the proxy holds a pooled
connection to it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from .conftest import Runtime12
from .test_deploy12 import WEBAPP, deploy, edit_json, webapp

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


async def test_a_redeploy_is_served_by_the_new_app_not_by_the_stale_connection(
    runtime12: Runtime12, tmp_path: Path, proxy_process
) -> None:
    """The proxy's pooled connection reaches the stopped app after the redeploy, which
    refuses each enqueue [12, 32]; the proxy retires it, asks the locator again and sends the
    request to the new app: no 502. While the app is not published at all (between pause_app
    and start_app) the locator does not know it: 404."""
    folder = webapp(tmp_path / "shop", "v1", runtime12)
    edit_json(folder / "profile.json", **{"terminate-timeout": 2})
    args = (str(folder), "--protocol", "1", "--locator", runtime12.locator)
    first = await asyncio.to_thread(deploy, *args)
    assert first.returncode == 0, first.stderr
    proxy = await proxy_process(runtime12.locator, "--protocol", "1")
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
        before = await client.get("/shop/http/before")
        (folder / "webapp.py").write_text(WEBAPP % "v2")
        second = asyncio.ensure_future(asyncio.to_thread(deploy, *args))
        during = []
        while not second.done():
            during.append(await client.get("/shop/http/during"))
            await asyncio.sleep(0.02)
        after = [await client.get("/shop/http/after") for _ in range(5)]

    assert second.result().returncode == 0, second.result().stderr
    assert (before.status_code, before.text[:3]) == (200, "v1 ")
    assert {a.status_code for a in during} <= {200, 404}, [(a.status_code, a.text)
                                                           for a in during]
    assert [(a.status_code, a.text[:3]) for a in after] == [(200, "v2 ")] * 5
    assert proxy.said("serves a stopped app; asking the locators again")
