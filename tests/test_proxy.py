"""`cocaine-http proxy` in front of dev runtimes, on real processes and sockets: routing, the
health check, statuses, framing, streaming, bounds, the error mapping (docs/proxy.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

import h11
import httpx
import pytest

from cocaine_http.dev.profile import Profile
from tests.plugins.devruntime import enqueue
from tests.plugins.proxy import wait_until
from tests.test_dev_front import raw_exchange

APP = "tests.workers.proxy_apps:app"
MIB = 1024 * 1024


@pytest.fixture
async def app_cluster(dev_app_runtime: Any) -> Any:
    """A dev runtime serving the proxy test app as "app" (one worker started)."""
    return await dev_app_runtime(APP, workers=1)


@pytest.fixture
async def raw_cluster(dev_runtime_factory: Any, raw_worker_command: list[str]) -> Any:
    """A dev runtime (services on) serving the raw protocol worker as "raw"."""
    return await dev_runtime_factory(raw_worker_command, app="raw", workers=1)


@pytest.fixture
def dead_locator() -> Iterator[str]:
    """An address whose port is bound and never listened on, for the whole test: connections
    to it are refused, and no other process can take the port meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def framing(events: list[Any]) -> list[bytes]:
    response = next(e for e in events if isinstance(e, h11.Response))
    return [n for n, _ in response.headers if n in (b"content-length", b"transfer-encoding")]


class TestRouting:
    async def test_example_apps_are_served_by_path(
        self, dev_app_runtime: Any, proxy_process: Any
    ) -> None:
        """The repository's Flask, FastAPI and Django examples answer through the proxy."""
        root = str(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        flask = await dev_app_runtime("examples.flask_app.app:app", app="flask", workdir=root)
        fastapi = await dev_app_runtime("examples.fastapi_app:app", app="fastapi", workdir=root)
        django = await dev_app_runtime("examples.django_project.wsgi:application",
                                       app="django", workdir=root)
        proxy = await proxy_process(f"{flask.locator},{fastapi.locator},{django.locator}")
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            answers = [await client.get("/flask/http/"), await client.get("/fastapi/http/"),
                       await client.get("/django/http/")]

        assert [a.status_code for a in answers] == [200, 200, 200]
        assert "Flask" in answers[0].text
        assert answers[0].headers["x-powered-by"] == "Cocaine"

    async def test_path_and_header_routes(self, app_cluster: Any, proxy_process: Any) -> None:
        """`/<app>/<event><rest>` gives `<rest>` as the uri; X-Cocaine-* headers route the full
        target."""
        proxy = await proxy_process(app_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            by_path = await client.get("/app/http/status/201?x=1")
            by_headers = await client.get("/status/202", headers={
                "X-Cocaine-Service": "app", "X-Cocaine-Event": "http"})

        assert (by_path.status_code, by_path.text) == (201, "status 201")
        assert (by_headers.status_code, by_headers.text) == (202, "status 202")

    async def test_ping_answers_200_without_the_cluster(
        self, proxy_process: Any, dead_locator: str
    ) -> None:
        """/ping is the proxy's own: it answers even when no locator is reachable."""
        proxy = await proxy_process(dead_locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            ping = await client.get("/ping")
            app = await client.get("/app/http/")

        assert (ping.status_code, ping.text) == (200, "ok\n")
        assert app.status_code == 502

    async def test_unknown_app_is_404(self, app_cluster: Any, proxy_process: Any) -> None:
        """An app the locator does not know, and a path that names no app, get 404."""
        proxy = await proxy_process(app_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            unknown = await client.get("/nope/http/")
            no_app = await client.get("/")
            not_an_app = await client.get("/x", headers={"X-Cocaine-Service": "storage",
                                                         "X-Cocaine-Event": "read"})
            after = await client.get("/app/http/")

        assert unknown.status_code == 404
        assert no_app.status_code == 404
        assert (not_an_app.status_code, not_an_app.text) == (
            404, "no such app: storage is a service, not an app\n")
        assert after.status_code == 200


class TestResponses:
    @pytest.mark.parametrize("status", [308, 422, 429, 599])
    async def test_any_status_is_answered(
        self, status: int, app_cluster: Any, proxy_process: Any
    ) -> None:
        """Statuses the tornado proxy cannot send get through, with their body."""
        proxy = await proxy_process(app_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            response = await client.get(f"/app/http/status/{status}")

        assert (response.status_code, response.text) == (status, f"status {status}")

    async def test_content_length_is_honoured_else_chunked(
        self, raw_cluster: Any, proxy_process: Any
    ) -> None:
        """The app's Content-Length frames the body (excess dropped); without one the body is
        chunked; either way exactly one framing header."""
        proxy = await proxy_process(raw_cluster.locator)
        length = await raw_exchange(proxy.port, b"GET /raw/http/length HTTP/1.1\r\nHost: h\r\n\r\n")
        excess = await raw_exchange(proxy.port, b"GET /raw/http/excess HTTP/1.1\r\nHost: h\r\n\r\n")
        chunks = await raw_exchange(proxy.port, b"GET /raw/http/chunks HTTP/1.1\r\nHost: h\r\n\r\n")

        assert framing(length) == [b"content-length"]
        assert b"".join(e.data for e in length if isinstance(e, h11.Data)) == b"hello world"
        assert b"".join(e.data for e in excess if isinstance(e, h11.Data)) == b"abc"
        assert framing(chunks) == [b"transfer-encoding"]
        assert b"".join(e.data for e in chunks if isinstance(e, h11.Data)) == b"".join(
            b"part%d;" % i for i in range(5))

    async def test_content_length_shortfall_closes_the_connection(
        self, raw_cluster: Any, proxy_process: Any
    ) -> None:
        """A shortfall against Content-Length closes the connection."""
        proxy = await proxy_process(raw_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/raw/http/short")

    async def test_chunks_stream_as_they_arrive(
        self, raw_cluster: Any, proxy_process: Any
    ) -> None:
        """The first body chunk reaches the client before the app ends the session."""
        proxy = await proxy_process(raw_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            async with client.stream("GET", "/raw/http/stream") as response:
                chunks = response.aiter_raw()
                first = await anext(chunks)
                release = enqueue(raw_cluster.engine, "release")
                rest = b"".join([c async for c in chunks])
        await release.wait()

        assert (response.status_code, first, rest) == (200, b"first;", b"second")

    async def test_request_frame_reaches_the_app(
        self, raw_cluster: Any, proxy_process: Any
    ) -> None:
        """Method, `<rest>` uri, version "1.1", headers and body arrive as sent."""
        proxy = await proxy_process(raw_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            response = await client.post("/raw/http/x?q=1", content=b"body!",
                                         headers={"X-Test": "1"})

        doc = response.json()
        assert (doc["method"], doc["uri"], doc["version"], doc["body"]) == (
            "POST", "/x?q=1", "1.1", "body!")
        assert ["X-Test", "1"] in doc["headers"]


class TestErrors:
    async def test_app_error_before_the_head_is_502_after_it_closes(
        self, raw_cluster: Any, proxy_process: Any
    ) -> None:
        proxy = await proxy_process(raw_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            before = await client.get("/raw/http/error-before")
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/raw/http/error-after")

        assert (before.status_code, before.text) == (502, "boom\n")

    async def test_queue_full_is_503(self, dev_app_runtime: Any, proxy_process: Any) -> None:
        """With the app's one slot busy and its queue full, the next request gets 503."""
        profile = Profile(pool_limit=1, concurrency=1, queue_limit=1)
        runtime = await dev_app_runtime(APP, workers=1, profile=profile)
        proxy = await proxy_process(runtime.locator)
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            busy = asyncio.ensure_future(client.get("/app/http/hang"))
            await wait_until(lambda: sum(s.load for s in runtime.engine.pool.values()))
            queued = asyncio.ensure_future(client.get("/app/http/hang"))
            await wait_until(lambda: runtime.engine.queue)
            refused = await client.get("/app/http/")
            busy.cancel()
            queued.cancel()

        assert (refused.status_code, refused.text) == (503, "the queue is full\n")
        assert proxy.said("the queue is full at")  # retried before answering 503

    async def test_worker_killed_mid_request_is_502(
        self, app_cluster: Any, proxy_process: Any
    ) -> None:
        proxy = await proxy_process(app_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            pid = int((await client.get("/app/http/pid")).text)
            waiting = asyncio.ensure_future(client.get("/app/http/hang"))
            await wait_until(lambda: sum(s.load for s in app_cluster.engine.pool.values()))
            os.kill(pid, signal.SIGKILL)
            failed = await waiting
            after = await client.get("/app/http/pid")

        assert failed.status_code == 502
        assert after.status_code == 200 and int(after.text) != pid

    async def test_silent_app_is_504(self, app_cluster: Any, proxy_process: Any) -> None:
        proxy = await proxy_process(app_cluster.locator, "--request-timeout", "0.5")
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            response = await client.get("/app/http/slow?s=5")

        assert response.status_code == 504

    async def test_no_locator_is_502(self, proxy_process: Any, dead_locator: str) -> None:
        proxy = await proxy_process(dead_locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            response = await client.get("/app/http/")

        assert response.status_code == 502


class TestBounds:
    async def test_a_paused_reader_pauses_the_upstream_and_is_bounded(
        self, app_cluster: Any, proxy_process: Any
    ) -> None:
        """A client that reads nothing: the proxy holds about --max-response-buffer, pauses its
        upstream connection, and drops the client after --client-idle-timeout."""
        proxy = await proxy_process(app_cluster.locator, "--max-response-buffer", "1M",
                                    "--client-idle-timeout", "2")
        peak_before = proxy.kib("VmHWM")
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", proxy.port, limit=64 * 1024)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        writer.write(b"GET /app/http/stream?mib=64 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.read(100)).startswith(b"HTTP/1.1 200 ")
        await wait_until(lambda: proxy.said("paused: its client reads slower"))
        await wait_until(lambda: proxy.said("left its response unread"))
        writer.close()

        assert proxy.kib("VmHWM") < peak_before + 32 * 1024
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            after = await client.get("/app/http/")
        assert after.status_code == 200


class TestProcesses:
    async def test_sigterm_finishes_requests_in_flight(
        self, app_cluster: Any, proxy_process: Any
    ) -> None:
        """SIGTERM: the request in flight gets its whole response, then the proxy exits 0 and
        accepts no more connections."""
        proxy = await proxy_process(app_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            slow = asyncio.ensure_future(client.get("/app/http/slow?s=1.5"))
            await wait_until(lambda: sum(s.load for s in app_cluster.engine.pool.values()))
            proxy.terminate()
            response = await slow
        code = await asyncio.to_thread(proxy.wait)

        assert (response.status_code, response.text) == (200, "slept")
        assert response.headers["connection"] == "close"
        assert code == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()

    async def test_two_workers_share_the_port(self, app_cluster: Any, proxy_process: Any) -> None:
        """--workers 2: two processes serve one port; one that dies is replaced; SIGTERM stops
        them all."""
        proxy = await proxy_process(app_cluster.locator, "--workers", "2")
        workers = proxy.children()
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            for _ in range(40):
                async with httpx.AsyncClient(base_url=proxy.url) as fresh:  # new connections
                    assert (await fresh.get("/app/http/")).status_code == 200
            os.kill(workers[0], signal.SIGKILL)
            await wait_until(lambda: len(proxy.children()) == 2
                             and workers[0] not in proxy.children())
            after = await client.get("/app/http/")
        await asyncio.sleep(0.5)  # the access log is written in batches

        replaced = proxy.children()
        code = await asyncio.to_thread(proxy.stop)

        served = {line.split()[2] for line in proxy.lines if "cocaine_http.access" in line}
        assert len(workers) == 2
        assert {str(pid) for pid in workers} <= served  # both took connections
        assert after.status_code == 200
        assert code == 0  # SIGTERM to the parent stops every worker, gracefully
        assert not any(os.path.exists(f"/proc/{pid}") for pid in replaced)


class TestCluster:
    async def test_two_runtimes_share_the_load_and_one_may_stop(
        self, dev_app_runtime: Any, proxy_process: Any
    ) -> None:
        """Two dev runtimes on two loopback addresses run the same app; the proxy spreads
        requests over both and keeps serving when one stops."""
        first = await dev_app_runtime(APP, workers=1)
        second = await dev_app_runtime(APP, workers=1, host="127.0.0.2")
        proxy = await proxy_process(f"{first.locator},{second.locator}")
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            spread = {(await client.get("/app/http/pid")).text for _ in range(10)}
            await second.close()
            after = [await client.get("/app/http/pid") for _ in range(10)]

        assert len(spread) == 2
        assert [r.status_code for r in after] == [200] * 10
        assert len({r.text for r in after}) == 1 and after[0].text in spread


class TestForwarded:
    async def test_an_untrusted_client_cannot_spoof_its_address(
        self, app_cluster: Any, proxy_process: Any
    ) -> None:
        """With no trusted peer, the client's X-Forwarded-* and X-Real-IP are replaced by the
        connection's: the app sees the real peer once."""
        proxy = await proxy_process(app_cluster.locator, "--forwarded-allow-ips", "")
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            response = await client.get("/app/http/headers", headers={
                "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6",
                "X-Forwarded-Proto": "https"})

        headers = [(n.lower(), v) for n, v in response.json()["headers"]]
        assert [v for n, v in headers if n == "x-forwarded-for"] == ["127.0.0.1"]
        assert [v for n, v in headers if n == "x-real-ip"] == ["127.0.0.1"]
        assert [v for n, v in headers if n == "x-forwarded-proto"] == ["http"]
        assert response.json()["client"][0] == "127.0.0.1"

    async def test_a_trusted_proxy_in_front_keeps_the_chain(
        self, app_cluster: Any, proxy_process: Any
    ) -> None:
        """The default trusts 127.0.0.1 (nginx on the same host): its chain is kept and the
        peer appended; the app's client is the original one."""
        proxy = await proxy_process(app_cluster.locator)
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            response = await client.get("/app/http/headers", headers={
                "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})

        headers = [(n.lower(), v) for n, v in response.json()["headers"]]
        assert [v for n, v in headers if n == "x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
        assert [v for n, v in headers if n == "x-forwarded-proto"] == ["https"]
        assert response.json()["client"][0] == "203.0.113.7"


async def test_a_full_queue_is_retried_on_another_endpoint(
    dev_app_runtime: Any, proxy_process: Any
) -> None:
    """One runtime of two has its only slot busy and its queue full: requests sent there are
    retried on the other runtime instead of answering 503."""
    from tests.plugins.apps import frame

    full = await dev_app_runtime(APP, workers=1,
                                 profile=Profile(pool_limit=1, concurrency=1, queue_limit=1))
    free = await dev_app_runtime(APP, workers=1, host="127.0.0.2")
    busy = [enqueue(full.engine, "http", frame("GET", "/hang")) for _ in range(2)]
    await wait_until(lambda: full.engine.queue)
    proxy = await proxy_process(f"{full.locator},{free.locator}")
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
        answers = [await client.get("/app/http/pid") for _ in range(6)]
    await wait_until(lambda: proxy.said("the queue is full at"))

    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.text for a in answers}) == 1
    assert not any(sink.ended.is_set() for sink in busy)


class TestCommandLine:
    @pytest.mark.parametrize(("argv", "message"), [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--protocol", "2"], "invalid choice"),
        (["--locator", " , "], "--locator names no locator"),
        (["--request-timeout", "-1"], "--request-timeout must not be negative"),
    ])
    def test_a_bad_option_is_one_line_and_exit_2(
        self, argv: list[str], message: str, capsys: Any
    ) -> None:
        from cocaine_http.cli import main

        assert main(["proxy", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cocaine-http proxy: error: ") and message in err
        assert err.count("\n") == 1

    def test_a_busy_port_is_reported(self) -> None:
        import subprocess
        import sys

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            done = subprocess.run(
                [sys.executable, "-m", "cocaine_http", "proxy", "--port",
                 str(sock.getsockname()[1])], capture_output=True, text=True, timeout=60)

        assert done.returncode == 1
        assert "cocaine-http proxy: error: cannot listen on 127.0.0.1:" in done.stderr


async def test_the_dev_front_takes_the_proxys_path(app_cluster: Any) -> None:
    """`cocaine-http dev` with its services: the front resolves the app through the dev locator
    and sends the request to the app service, as the proxy does with a cluster."""
    from cocaine_http.proxy.upstream import ClusterUpstream

    async with httpx.AsyncClient(base_url=app_cluster.url) as client:
        response = await client.get("/status/201")

    upstream = app_cluster.front.upstream.cluster
    (endpoint,) = upstream.pools["app"].endpoints
    assert isinstance(upstream, ClusterUpstream)
    assert (response.status_code, response.text) == (201, "status 201")
    assert (endpoint.host, endpoint.port) == app_cluster.services.endpoints["app"]
