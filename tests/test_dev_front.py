"""The dev runtime's HTTP front: routing, the request frame, response rules
(docs/protocol.md §6)."""

from __future__ import annotations

import asyncio
import email.utils
import json
from typing import Any

import h11
import httpx
import pytest

from cocaine_http import __version__
from cocaine_http.dev.front import Front, route
from cocaine_http.dev.profile import Profile
from cocaine_http.protocol.dialect import pack
from tests.plugins.devruntime import enqueue

FRAME_HEX = "95a3474554aa2f68656c6c6f3f783d31a3312e319192a4486f7374a168a0"


class ScriptedEngine:
    """A stand-in engine that records request frames and answers with scripted chunks."""

    name = "app"

    def __init__(self, *reply: Any) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.reply = reply

    def enqueue(self, event: str, data: bytes, sink: Any, tag: str | None = None) -> None:
        self.frames.append((event, data))
        for kind, *args in self.reply:
            getattr(sink, "on_" + kind)(*args)


async def raw_exchange(port: int, request: bytes, responses: int = 1) -> list[Any]:
    """Send raw bytes and parse `responses` HTTP responses (events) with an h11 client."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    client = h11.Connection(h11.CLIENT)
    events: list[Any] = []
    done = 0
    try:
        while done < responses:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
                continue
            events.append(event)
            if isinstance(event, h11.EndOfMessage):
                done += 1
                leftover, _ = client.trailing_data
                client = h11.Connection(h11.CLIENT)  # a client that sent nothing: parse only
                if leftover:  # b"" would mean EOF to h11
                    client.receive_data(leftover)
            if isinstance(event, h11.ConnectionClosed):
                break
    finally:
        writer.close()
        await writer.wait_closed()
    return events


@pytest.fixture
async def scripted_front() -> Any:
    fronts: list[Front] = []

    async def start(engine: Any, **options: Any) -> Front:
        front = Front(engine, port=0, **options)
        await front.start()
        fronts.append(front)
        return front

    yield start
    for front in fronts:
        await front.close()


class TestRouting:
    @pytest.mark.parametrize(
        ("target", "headers", "expected"),
        [
            pytest.param(b"/app/ev/x?q=1", [], ("app", "ev", b"/x?q=1"), id="path"),
            pytest.param(b"/app/ev?q=1", [], ("app", "ev", b"/?q=1"), id="query-only"),
            pytest.param(b"/app/ev", [], ("app", "ev", b"/"), id="bare"),
            pytest.param(b"/other/x", [], ("app", "http", b"/other/x"), id="dev-root"),
            pytest.param(b"/app", [], ("app", "http", b"/app"), id="app-only"),
            pytest.param(b"/x?y", [(b"X-Cocaine-Service", b"s"), (b"X-Cocaine-Event", b"e")],
                         ("s", "e", b"/x?y"), id="headers"),
        ],
    )
    def test_route(self, target: bytes, headers: list[Any], expected: Any) -> None:
        """Requests route like Cocaine's proxy, plus the dev-mode root route."""
        assert route(target, headers, "app", True) == expected

    def test_without_root_route_unknown_paths_do_not_route(self) -> None:
        """Without dev mode, a path that does not name the app routes nowhere."""
        assert route(b"/other/x", [], "app", False) is None


class TestFrame:
    async def test_request_frame_matches_the_protocol_vector(self, scripted_front: Any) -> None:
        """GET /hello?x=1 with one Host header packs to the §11.2 frame bytes."""
        engine = ScriptedEngine(("chunk", pack([200, []])), ("choke",))
        front = await scripted_front(engine)

        events = await raw_exchange(front.port, b"GET /hello?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")

        assert engine.frames == [("http", bytes.fromhex(FRAME_HEX))]
        assert events[0].status_code == 200

    async def test_hop_by_hop_headers_from_a_worker_are_dropped(
        self, scripted_front: Any
    ) -> None:
        """A worker's Connection, Keep-Alive, Upgrade, Proxy-* and Transfer-Encoding never
        reach the client; its Content-Length frames the body, once."""
        head = [200, [[b"Connection", b"close"], [b"Keep-Alive", b"timeout=1"],
                      [b"Upgrade", b"h2c"], [b"Proxy-Authenticate", b"Basic"],
                      [b"Transfer-Encoding", b"chunked"], [b"Content-Length", b"2"],
                      [b"X-Kept", b"1"]]]
        engine = ScriptedEngine(("chunk", pack(head)), ("chunk", pack(b"ok")), ("choke",))
        front = await scripted_front(engine)

        events = await raw_exchange(front.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")

        names = [name for name, _ in events[0].headers]
        assert names == [b"x-kept", b"content-length", b"x-powered-by", b"server", b"date"]

    async def test_http_1_0_version_and_body_are_packed(self, scripted_front: Any) -> None:
        """The frame carries the client's version and the whole body."""
        engine = ScriptedEngine(("chunk", pack([204, []])), ("choke",))
        front = await scripted_front(engine)

        await raw_exchange(front.port, b"POST /app/ev/p HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")

        assert engine.frames == [("ev", pack([b"POST", b"/p", b"1.0",
                                               [[b"Content-Length", b"3"]], b"abc"]))]

    async def test_bad_head_gives_502(self, scripted_front: Any) -> None:
        """A first chunk that is not [status, [[name, value]...]] answers 502 (the app behind
        the front failed)."""
        front = await scripted_front(ScriptedEngine(("chunk", pack({"a": 1})), ("choke",)))

        events = await raw_exchange(front.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")

        assert events[0].status_code == 502

    async def test_choke_without_head_gives_502(self, scripted_front: Any) -> None:
        """A session that ends without any chunk answers 502."""
        front = await scripted_front(ScriptedEngine(("choke",)))

        events = await raw_exchange(front.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")

        assert events[0].status_code == 502


class TestThroughWorker:
    async def test_request_reaches_the_worker_and_back(self, raw_runtime: Any) -> None:
        """A POST goes through the front to a raw worker; the reply comes back chunked."""
        async with httpx.AsyncClient(base_url=raw_runtime.url) as client:
            response = await client.post("/hello?x=1", content=b"body!",
                                         headers={"X-Test": "1"})

        doc = response.json()
        assert response.status_code == 200
        assert response.headers["x-powered-by"] == "Cocaine"
        assert response.headers["transfer-encoding"] == "chunked"
        assert (doc["method"], doc["uri"], doc["version"], doc["body"]) == (
            "POST", "/hello?x=1", "1.1", "body!")
        assert ["X-Test", "1"] in doc["headers"]

    async def test_path_and_header_routes_reach_the_event(self, raw_runtime: Any) -> None:
        """/<app>/<event><rest> and X-Cocaine-* headers choose the event and the uri."""
        async with httpx.AsyncClient(base_url=raw_runtime.url) as client:
            by_path = await client.get("/raw/http/some/path?q=1")
            by_headers = await client.get("/some/path?q=2", headers={
                "X-Cocaine-Service": "raw", "X-Cocaine-Event": "http"})
            other_app = await client.get("/x", headers={
                "X-Cocaine-Service": "nope", "X-Cocaine-Event": "http"})

        assert by_path.json()["uri"] == "/some/path?q=1"
        assert by_headers.json()["uri"] == "/some/path?q=2"
        assert other_app.status_code == 404

    async def test_content_length_is_honoured(self, raw_runtime: Any) -> None:
        """With Content-Length, empty chunks are skipped and excess bytes dropped."""
        async with httpx.AsyncClient(base_url=raw_runtime.url) as client:
            exact = await client.get("/length")
            excess = await client.get("/excess")
            head = await client.head("/length")

        assert (exact.headers["content-length"], exact.content) == ("11", b"hello world")
        assert "transfer-encoding" not in exact.headers
        assert excess.content == b"abc"
        assert (head.status_code, head.headers["content-length"], head.content) == (
            200, "11", b"")

    async def test_content_length_shortfall_closes_the_connection(
        self, raw_runtime: Any
    ) -> None:
        """Fewer bytes than Content-Length: the client sees the connection close."""
        async with httpx.AsyncClient(base_url=raw_runtime.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/short")

    async def test_chunks_stream_to_the_client_as_they_arrive(self, raw_runtime: Any) -> None:
        """The first body chunk reaches the client before the worker ends the session."""
        async with httpx.AsyncClient(base_url=raw_runtime.url) as client:
            async with client.stream("GET", "/stream") as response:
                chunks = response.aiter_raw()
                first = await anext(chunks)
                release = enqueue(raw_runtime.engine, "release")
                rest = b"".join([c async for c in chunks])
        await release.wait()

        assert (response.status_code, first, rest) == (200, b"first;", b"second")

    async def test_chunked_body(self, raw_runtime: Any) -> None:
        """Without Content-Length the body is sent chunked, every part in order."""
        async with httpx.AsyncClient(base_url=raw_runtime.url) as client:
            response = await client.get("/chunks")

        assert response.status_code == 201
        assert response.content == b"".join(b"part%d;" % i for i in range(5))

    async def test_error_before_head_is_502_and_after_head_closes(
        self, raw_runtime: Any
    ) -> None:
        """An app error before the head answers 502; after it, the connection is dropped."""
        async with httpx.AsyncClient(base_url=raw_runtime.url) as client:
            before = await client.get("/error-before")
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/error-after")

        assert (before.status_code, before.text) == (502, "boom\n")

    async def test_keep_alive_serves_pipelined_requests_on_one_connection(
        self, raw_runtime: Any
    ) -> None:
        """Two requests on one connection get two responses, in order."""
        request = b"GET /length HTTP/1.1\r\nHost: h\r\n\r\n"

        events = await raw_exchange(raw_runtime.front.port, request + request, responses=2)

        responses = [e for e in events if isinstance(e, h11.Response)]
        bodies = b"".join(e.data for e in events if isinstance(e, h11.Data))
        assert [r.status_code for r in responses] == [200, 200]
        assert bodies == b"hello world" * 2


class TestErrors:
    async def test_bad_http_gets_400(self, raw_runtime: Any) -> None:
        """Garbage from a client is answered by a 400 and the front keeps serving."""
        events = await raw_exchange(raw_runtime.front.port, b"GARBAGE\r\n\r\n")
        async with httpx.AsyncClient(base_url=raw_runtime.url) as client:
            after = await client.get("/length")

        assert events[0].status_code == 400
        assert after.status_code == 200

    async def test_body_over_the_limit_gets_413(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A request body larger than max_body_size is refused with 413."""
        runtime = await dev_runtime_factory(raw_worker_command, app="raw", services=False,
                                            max_body_size=10)
        async with httpx.AsyncClient(base_url=runtime.url) as client:
            response = await client.post("/x", content=b"x" * 100)

        assert response.status_code == 413

    async def test_full_queue_gives_503(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """With the queue full the front answers 503."""
        profile = Profile(pool_limit=1, concurrency=1, queue_limit=1)
        runtime = await dev_runtime_factory(raw_worker_command, app="raw", services=False,
                                            profile=profile)
        busy = enqueue(runtime.engine, "hold")
        await busy.wait_chunks(1)
        enqueue(runtime.engine, "echo")

        async with httpx.AsyncClient(base_url=runtime.url) as client:
            response = await client.get("/x")

        assert (response.status_code, response.text) == (503, "the queue is full\n")

    async def test_no_worker_gives_502(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """When no worker can be started the front answers 502."""
        profile = Profile(environment={"RAW_EXIT_AT_START": "1"})
        runtime = await dev_runtime_factory(raw_worker_command, app="raw", services=False,
                                            profile=profile)
        async with httpx.AsyncClient(base_url=runtime.url) as client:
            response = await client.get("/x")

        assert response.status_code == 502
        assert "exited with code 1" in response.text

    async def test_request_timeout_gives_504(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A worker that does not answer within request_timeout gets the client a 504."""
        runtime = await dev_runtime_factory(raw_worker_command, app="raw", services=False,
                                            request_timeout=0.5)
        async with httpx.AsyncClient(base_url=runtime.url) as client:
            response = await client.get("/slow")

        assert response.status_code == 504

    async def test_locator_and_app_service_are_served(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """With services on, workers get the running locator's address as --locator."""
        runtime = await dev_runtime_factory(raw_worker_command, app="raw")
        sink = await enqueue(runtime.engine, "info").wait()

        argv = json.loads(sink.body)["argv"]
        host, port = runtime.services.locator_endpoint

        assert argv[argv.index("--locator") + 1] == f"{host}:{port}"
        assert port != 0


class PacedEngine:
    """A stand-in engine that answers each request with a head, then `chunks` body chunks
    `interval` seconds apart (after `delay` seconds of silence), then choke."""

    name = "app"

    def __init__(self, *, delay: float = 0.0, chunks: int = 0, interval: float = 0.0) -> None:
        self.delay, self.chunks, self.interval = delay, chunks, interval
        self.tasks: set[asyncio.Task[None]] = set()

    def enqueue(self, event: str, data: bytes, sink: Any, tag: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(sink))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, sink: Any) -> None:
        await asyncio.sleep(self.delay)
        sink.on_chunk(pack([200, [["Content-Type", "text/plain"]]]))
        for i in range(self.chunks):
            await asyncio.sleep(self.interval)
            sink.on_chunk(pack(b"%d;" % i))
        sink.on_choke()


class TestRequestTimeout:
    async def test_zero_means_no_limit(self, scripted_front: Any) -> None:
        """request_timeout=0: an app that takes its time still answers (no instant 504)."""
        front = await scripted_front(PacedEngine(delay=0.3), request_timeout=0)
        async with httpx.AsyncClient(base_url=front.url) as client:
            response = await client.get("/")

        assert response.status_code == 200

    async def test_a_streaming_response_is_not_cut(self, scripted_front: Any) -> None:
        """A body that keeps flowing for longer than request_timeout arrives whole: the
        timeout counts the app's silence, not the response's length."""
        engine = PacedEngine(chunks=15, interval=0.1)
        front = await scripted_front(engine, request_timeout=1.0)
        async with httpx.AsyncClient(base_url=front.url) as client:
            response = await client.get("/")

        assert response.status_code == 200
        assert response.text == "".join(f"{i};" for i in range(15))

    async def test_silence_after_the_head_closes_the_connection(
        self, scripted_front: Any
    ) -> None:
        """After the head, silence longer than request_timeout drops the connection."""
        front = await scripted_front(PacedEngine(chunks=1, interval=5.0), request_timeout=0.3)
        async with httpx.AsyncClient(base_url=front.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/")


async def test_powered_by_header_can_be_switched_off(scripted_front: Any) -> None:
    """powered_by=False: no X-Powered-By on app responses nor on the front's own."""
    engine = PacedEngine()
    front = await scripted_front(engine, powered_by=False)
    async with httpx.AsyncClient(base_url=front.url) as client:
        app = await client.get("/")
        own = await client.get("/other/x", headers={"X-Cocaine-Service": "other",
                                                   "X-Cocaine-Event": "http"})

    assert (app.status_code, own.status_code) == (200, 404)
    assert "x-powered-by" not in app.headers and "x-powered-by" not in own.headers


class TestServerAndDate:
    async def test_the_front_sends_server_and_date(self, scripted_front: Any) -> None:
        """The front is the HTTP server: Server and Date on app responses and on its own."""
        front = await scripted_front(PacedEngine())
        async with httpx.AsyncClient(base_url=front.url) as client:
            app = await client.get("/")
            own = await client.get("/x", headers={"X-Cocaine-Service": "other",
                                                 "X-Cocaine-Event": "http"})

        for response in (app, own):
            assert response.headers.get_list("server") == [f"cocaine-http/{__version__}"]
            (date,) = response.headers.get_list("date")
            assert email.utils.parsedate_to_datetime(date).tzinfo is not None

    async def test_the_apps_own_server_and_date_win(self, scripted_front: Any) -> None:
        """An app that sends Server or Date keeps them, with no second copy."""
        head = pack([200, [["Server", "myapp"], ["Date", "Tue, 01 Dec 2026 00:00:00 GMT"]]])
        front = await scripted_front(ScriptedEngine(("chunk", head), ("choke",)))
        async with httpx.AsyncClient(base_url=front.url) as client:
            response = await client.get("/")

        assert response.headers.get_list("server") == ["myapp"]
        assert response.headers.get_list("date") == ["Tue, 01 Dec 2026 00:00:00 GMT"]

    async def test_both_can_be_switched_off(self, scripted_front: Any) -> None:
        """server_header=False, date_header=False: neither is added."""
        front = await scripted_front(PacedEngine(), server_header=False, date_header=False)
        async with httpx.AsyncClient(base_url=front.url) as client:
            response = await client.get("/")

        assert "server" not in response.headers and "date" not in response.headers
