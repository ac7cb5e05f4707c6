"""`cocaine-http proxy` across a redeploy of an app on the dev runtime, in both generations:
its pooled connections reach the stopped app (v0.12 keeps them open and refuses each enqueue
with [12, 32]; v0.11 closes them), and every request still gets the new app (docs/proxy.md
"The cluster side")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocaine_http.dev.deploy import DeployOptions, upload
from cocaine_http.errors import ServiceError
from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.proxy.upstream import Refusal, refusal
from cocaine_http.services import Client
from tests.test_deploy import APP, locator_of, make_app, make_app12

#: the words the runtime logs for [12, 32] (on the wire it sends none)
STOPPED_V012 = "the application has been stopped: Broken pipe"


class TestRefusal:
    @pytest.mark.parametrize(("category", "code", "message", "expected"), [
        (12, 32, "", Refusal.STOPPED),  # what the v0.12.14 runtime sends
        (12, 32, STOPPED_V012, Refusal.STOPPED),
        (0x52FF, 1, "queue is full", Refusal.QUEUE_FULL),
        (None, 2, "the queue is full", Refusal.QUEUE_FULL),
        (12, 32, "Broken pipe", None),  # an EPIPE of something else: answered, not resent
        (0xFF, 1, STOPPED_V012, None),
        (None, 1, "the engine is not active", None),
        (0x52FF, 2, "slave has timed out", None),
    ])
    def test_only_refusals_before_a_worker_are_resent(
        self, category: int | None, code: int, message: str, expected: Refusal | None
    ) -> None:
        assert refusal(category, code, message) is expected


async def _redeploy_under_load(app: Path, options: DeployOptions, proxy: Any) -> list[Any]:
    """One request pools a connection; the app is redeployed with v2 while requests keep
    coming; the answers of the requests made during and after the redeploy."""
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
        first = await client.get("/shop/http/before")
        assert (first.status_code, first.text[:3]) == (200, "v1 ")
        (app / "webapp.py").write_text(APP % "v2")
        deploy = asyncio.ensure_future(upload(str(app), options, say=lambda line: None))
        during = []
        while not deploy.done():
            during.append(await client.get("/shop/http/during"))
        await deploy
        after = [await client.get("/shop/http/after") for _ in range(5)]
    return during + after


async def test_a_v012_redeploy_is_served_by_the_new_app_without_a_502(
    tmp_path: Path, dev_runtime_factory: Any, proxy_process: Any
) -> None:
    """v0.12: the proxy's pooled connection still reaches the stopped app, which refuses with
    [12, 32]; the proxy retires it, resolves again and sends the request to the new app.
    While the app is not published at all (between pause_app and start_app) the locator does
    not know it: 404."""
    runtime = await dev_runtime_factory(None, app="none", protocol=1)
    app = make_app12(tmp_path / "shop")
    options = DeployOptions(locator=locator_of(runtime), protocol="1")
    await upload(str(app), options, say=lambda line: None)
    proxy = await proxy_process(locator_of(runtime), "--protocol", "1")
    async with Client(locator_of(runtime), protocol=1, timeout=10) as held:
        old = await held.service("shop")
        await old.enqueue("http", pack(["GET", "/", "1.1", [], b""]))

        answers = await _redeploy_under_load(app, options, proxy)
        with pytest.raises(ServiceError) as stale:
            await old.enqueue("http", pack(["GET", "/", "1.1", [], b""]))

    assert (stale.value.category, stale.value.code, stale.value.message) == (12, 32, "")
    assert {a.status_code for a in answers} <= {200, 404}, [a.text for a in answers]
    assert [(a.status_code, a.text[:3]) for a in answers[-5:]] == [(200, "v2 ")] * 5
    assert proxy.said("serves a stopped app; asking the locators again")


async def test_a_v011_redeploy_closes_the_pooled_connection_and_the_new_app_serves(
    tmp_path: Path, dev_runtime_factory: Any, proxy_process: Any
) -> None:
    """v0.11: the stopped app's service closes its connections; the proxy drops the endpoint
    and the next requests reach the new app. (A request in flight on such a connection is a
    502: the app may have run it.)"""
    runtime = await dev_runtime_factory(None, app="none")
    app = make_app(tmp_path / "shop")
    options = DeployOptions(name="shop", locator=locator_of(runtime))
    await upload(str(app), options, say=lambda line: None)
    proxy = await proxy_process(locator_of(runtime))
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
        first = await client.get("/shop/http/before")
        (app / "webapp.py").write_text(APP % "v2")
        await upload(str(app), options, say=lambda line: None)
        after = [await client.get("/shop/http/after") for _ in range(5)]

    assert (first.status_code, first.text[:3]) == (200, "v1 ")
    assert [(a.status_code, a.text[:3]) for a in after] == [(200, "v2 ")] * 5
    assert proxy.said("the connection to 127.0.0.1:")


class _Closing:
    """A pooled connection as the pool sees it when retiring its endpoint."""

    def __init__(self, sessions: int) -> None:
        self.sessions = sessions
        self.retired = False
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _Failed:
    finished = False

    def __init__(self) -> None:
        self.failures: list[tuple[int, str]] = []

    def fail(self, status: int, text: str) -> None:
        self.failures.append((status, text))


@pytest.mark.parametrize("resent", [False, True])
def test_a_stopped_endpoint_is_retired_and_the_request_sent_again_once(resent: bool) -> None:
    """The refused session's endpoint leaves the pool (its idle connection closes, a busy one
    once its requests end) and the request goes out again, unless it was sent again already:
    then it is a 503."""
    from types import SimpleNamespace

    from cocaine_http.aio.endpoint import Endpoint
    from cocaine_http.proxy.upstream import STOPPED, AppPool, ClusterUpstream

    pool = AppPool(ClusterUpstream(["127.0.0.1:1"], dialect=V0_12), "shop")
    stale, other = Endpoint(host="127.0.0.1", port=2), Endpoint(host="127.0.0.1", port=3)
    idle, busy = _Closing(0), _Closing(1)
    pool.endpoints = {stale: ({}, [idle, busy]), other: ({}, [])}
    pool.resolved_at = 5.0
    sent: list[Any] = []
    pool.send = lambda *args, **kw: sent.append((args, kw))
    reply = _Failed()
    session = SimpleNamespace(connection=SimpleNamespace(endpoint=stale), resent=resent,
                              reply=reply, event="http", frame=b"f", tried=[])

    pool.stopped(session)

    assert list(pool.endpoints) == [other] and pool.resolved_at == -1.0
    assert (idle.retired, idle.closed, busy.retired, busy.closed) == (True, True, True, False)
    if resent:
        assert (reply.failures, sent) == ([(503, STOPPED)], [])
    else:
        assert reply.failures == [] and sent == [(("http", b"f", reply, []), {"resent": True})]
