"""The dev runtime in v0.12 mode (`cocaine-http dev --protocol 1`): the example apps over HTTP,
the frames its engine and services send compared with the bytes the real cocaine-runtime
v0.12.14 sent for the same calls (recorded from it, below), and our services client on it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx
import msgpack
import pytest

from cocaine_http.errors import ServiceError, ServiceNotFoundError
from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.services import Client
from tests.plugins.devruntime import REPO_ROOT, wait_for, write_slave
from tests.recorder12 import RECORDER
from tests.test_dev_cli import interrupt, start_dev

#: The headers element cocaine-runtime v0.12.14 appends to every frame outside a trace.
H = bytes.fromhex("9393c2a874726163655f6964a8000000000000000093c2a77370616e5f6964a8000000000000"
                  "000093c2a9706172656e745f6964a80000000000000000")
#: What the real runtime answered, byte for byte (the port aside), on a fresh connection each.
REAL_UNKNOWN_SERVICE = bytes.fromhex(
    "94010192920a01b873657276696365206973206e6f7420617661696c61626c65") + H
REAL_WRITE = bytes.fromhex("94010090") + H  # storage.write on channel 1: value, no arguments
REAL_READ_V = bytes.fromhex("94020091a176") + H  # storage.read on channel 2 of b"v"
REAL_FIND_K = bytes.fromhex("9404009191a16b") + H  # storage.find on channel 4: [["k"]]
REAL_VERBOSITY = bytes.fromhex("9402009100") + H  # logging.verbosity on channel 2: 0 (debug)
REAL_LIST_NONE = bytes.fromhex("9401009190") + H  # node.list on channel 1 with no app: [[]]
#: resolve("storage") and resolve("logging") of the real runtime, decoded (port aside).
_V = {0: ["value", {}], 1: ["error", {}]}
_CONTROL = {65532: ["goaway", {}, _V], 65533: ["ping", {}, _V], 65534: ["settings", {}, _V],
            65535: ["revoke", {}, _V]}
REAL_STORAGE = [1, {0: ["read", {}, _V], 1: ["write", {}, _V], 2: ["remove", {}, _V],
                    3: ["find", {}, _V], **_CONTROL}]
REAL_LOGGING = [2, {0: ["emit", {}, {}], 1: ["verbosity", {}, _V],
                    2: ["set_verbosity", {}, _V], **_CONTROL}]
_S = {0: ["write", None], 1: ["error", {}], 2: ["close", {}]}
REAL_APP = [1, {0: ["enqueue", _S, _S], 1: ["info", {}, _V], 2: ["control", _S, _V],
                **_CONTROL}]
#: Sent by the real runtime to a worker: heartbeat echo, a session on channel 2, terminate.
REAL_HEARTBEAT = bytes.fromhex("94010090") + H
#: ... and, on channel 7, when the client of that session left before closing its upstream.
REAL_END_OF_FILE_7 = bytes.fromhex("94070192920502ab456e64206f662066696c65") + H
REAL_SESSION_2 = (bytes.fromhex("94020091a468747470") + H + bytes.fromhex("94020091a3726571") + H
                  + bytes.fromhex("94020290") + H)  # invoke "http", write b"req", close

APPS = {
    "flask": "examples.flask_app.app:app",
    "fastapi": "examples.fastapi_app:app",
    "django": "examples.django_project.wsgi:application",
}


def frames(data: bytes) -> list[list[Any]]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return list(unpacker)


async def exchange(port: int, *messages: list[Any], until: int | Callable[[bytes], bool] = 1,
                   timeout: float = 5.0) -> bytes:
    """Send raw v0.12 frames on a fresh connection; the bytes of the first `until` answers,
    or until `until(data)` holds when it is a function (or everything up to the peer's
    close)."""
    done = until if callable(until) else lambda data: len(frames(data)) >= until
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for message in messages:
            writer.write(pack(message))
        data = b""
        while not done(data):
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        writer.close()


@pytest.fixture
async def dev12(dev_runtime_factory):
    """A bare dev runtime in v0.12 mode (services and node, no app of its own)."""
    return await dev_runtime_factory(None, protocol=1)


# -- the example apps over HTTP ----------------------------------------------------------------


class TestExampleApps:
    async def test_cli_serves_flask_with_protocol_1(self):
        """`cocaine-http dev --protocol 1 module:attr`: the worker gets `--protocol 1` and
        serves over HTTP; Ctrl-C terminates it (code 11) and the worker answers with the
        engine's code, as the reference framework does; the dev runtime exits 0."""
        process, url, before = await start_dev("--protocol", "1", APPS["flask"])
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                index = await http.get("/")
                posted = await http.post("/json", json={"a": [1, 2]})
        finally:
            code, output = await interrupt(process)

        assert index.status_code == 200 and index.text.startswith("Hello from Flask")
        assert posted.json()["received"] == {"a": [1, 2]}
        assert "--protocol 1 --uuid" in before
        assert code == 0 and "terminated itself (11, the engine is shutting down)" in output

    @pytest.mark.parametrize("name", ["fastapi", "django"])
    async def test_cli_serves_fastapi_and_django(self, name):
        """FastAPI (lifespan, path parameters) and Django (a view, a streamed response)
        through `cocaine-http dev --protocol 1`, whose engine sends body chunks as raw
        bytes."""
        process, url, _ = await start_dev("--protocol", "1", APPS[name])
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                if name == "fastapi":
                    first = await http.get("/")
                    second = await http.get("/items/7?q=x&limit=3")
                else:
                    first = await http.get("/api/items/5/?q=z")
                    second = await http.get("/stream/")
        finally:
            code, _ = await interrupt(process)

        if name == "fastapi":
            assert first.json() == {"greeting": "hello", "started": True}
            assert second.json() == {"item_id": 7, "q": "x", "limit": 3}
        else:
            assert first.json() == {"id": 5, "q": "z", "method": "GET"}
            assert second.content.startswith(b"row 0\n")
        assert code == 0

    async def test_raw_echo_worker_through_the_app_service(self, dev_runtime_factory):
        """examples/echo_worker.py (a raw worker, no HTTP) under the v0.12 engine, called
        through the dev app service: `ping` echoes, `upper` answers in upper case."""
        from cocaine_http.dev.profile import Profile

        runtime = await dev_runtime_factory(
            [sys.executable, str(REPO_ROOT / "examples" / "echo_worker.py")], app="echo",
            protocol=1, workers=1, profile=Profile(environment={"PYTHONPATH": str(REPO_ROOT)}))
        async with Client(runtime.locator, protocol=V0_12, timeout=10.0) as client:
            echo = await client.service("echo")
            pinged = await echo.enqueue("ping", b"hello")
            upper = await echo.enqueue("upper", b"hello")

        assert (b"".join(pinged), b"".join(upper)) == (b"hello", b"HELLO")

    async def test_views_call_storage_with_protocol_1(self, dev_app_runtime):
        """The services demo: the app's own Client takes v0.12 from `--protocol 1` and talks
        to the dev storage in that dialect."""
        runtime = await dev_app_runtime("examples.services_demo:app", protocol=1, workers=1)
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as http:
            put = await http.post("/put/greeting", content=b"hello")
            got = await http.get("/get/greeting")
            missing = await http.get("/get/nope")

        assert (put.status_code, got.content) == (200, b"hello")
        assert missing.status_code == 404
        assert runtime.services.storage.read("demo", "greeting") == b"hello"


# -- the services' frames, against the real runtime's --------------------------------------------


class TestServiceFrames:
    async def test_unknown_service_is_the_runtimes_error(self, dev12):
        """resolve of an unknown name: `[[10, 1], "service is not available"]` with the
        headers, the same bytes as the real locator."""
        port = dev12.services.locator_endpoint[1]
        assert await exchange(port, [1, 0, ["nosuch"]]) == REAL_UNKNOWN_SERVICE

    async def test_resolve_answers_endpoints_version_and_graphs(self, dev12):
        """resolve("storage"), ("logging") and an app's: `[[endpoints], version, graph]`
        with the real runtime's graphs, the session control methods included."""
        port = dev12.services.locator_endpoint[1]
        answers = {}
        for name in ("storage", "logging"):
            (message,) = frames(await exchange(port, [1, 0, [name]]))
            channel, mid, (endpoints, version, graph), headers = message
            assert (channel, mid) == (1, 0) and endpoints == [
                ["127.0.0.1", dev12.services.endpoints[name][1]]]
            answers[name] = [version, graph]
            assert pack(headers) == H

        assert answers == {"storage": REAL_STORAGE, "logging": REAL_LOGGING}

    async def test_storage_logging_node_answer_as_the_runtime(self, dev12):
        """write, read, find, verbosity and list: the same bytes; a missing key is errno
        ENOENT `[12, 2]`; emit answers nothing."""
        eps = dev12.services.endpoints
        storage, logging_, node = eps["storage"][1], eps["logging"][1], eps["node"][1]

        assert await exchange(storage, [1, 1, ["ns", "k", "v", ["t"]]]) == REAL_WRITE
        assert await exchange(storage, [2, 0, ["ns", "k"]]) == REAL_READ_V
        assert await exchange(storage, [4, 3, ["ns", ["t"]]]) == REAL_FIND_K
        ((_, mid, (code, _), _),) = frames(await exchange(storage, [3, 0, ["ns", "missing"]]))
        assert (mid, code) == (1, [12, 2])
        assert await exchange(logging_, [2, 1, []]) == REAL_VERBOSITY
        assert await exchange(node, [1, 2, []]) == REAL_LIST_NONE

    async def test_emit_is_mute_and_keeps_attributes(self, dev12):
        """emit answers nothing (its graph is empty); the record and its attributes are kept
        in library levels (wire 1 is info)."""
        port = dev12.services.endpoints["logging"][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(pack([1, 0, [1, "src", "msg", [["a", 1]]]]) + pack([2, 1, []]))
        answer = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()

        assert answer == REAL_VERBOSITY  # only verbosity's answer: nothing for emit
        assert list(dev12.services.log_records) == [(3, "src", "msg")]
        assert list(dev12.services.log_attributes) == [[["a", 1]]]

    async def test_unbound_method_and_reused_channel_drop_the_connection(self, dev12):
        """As on the real runtime: a method the service does not bind (set_verbosity) and a
        channel id that does not grow close the connection without an answer."""
        eps = dev12.services.endpoints
        unbound = await exchange(eps["logging"][1], [1, 2, [0]])
        reused = await exchange(eps["storage"][1], [5, 3, ["ns", []]], [5, 3, ["ns", []]],
                                until=2)

        assert unbound == b""
        assert [f[:3] for f in frames(reused)] == [[5, 0, [[]]]]  # one answer, then the close


# -- the engine's frames toward a worker (RECORDER: tests/recorder12.py) ---------------------------


class Sink:
    """Records one session's reply, the v0.12 error category included."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.errors: list[tuple[int, str, int | None]] = []
        self.ended = asyncio.Event()

    def on_chunk(self, data: bytes) -> None:
        self.chunks.append(data)

    def on_error(self, code: int, message: str, category: int | None = None) -> None:
        self.errors.append((code, message, category))
        self.ended.set()  # a v0.12 error ends the session

    def on_choke(self) -> None:
        self.ended.set()


class TestEngineFrames:
    async def test_worker_sees_the_runtimes_bytes(self, dev_runtime_factory, tmp_path):
        """argv ends with `--protocol 1 --uuid U`; the heartbeat echo, the first session
        (channel 2: invoke, write, close) and terminate (code 11, on channel 1) are the
        bytes the real runtime sends, headers included; the next session is channel 3; a
        worker error ends its session with its [category, code]."""
        record = tmp_path / "record.jsonl"
        slave = write_slave(tmp_path / "recorder", RECORDER)
        os.environ["RECORD"] = str(record)
        try:
            runtime = await dev_runtime_factory([str(slave)], app="rec", protocol=1,
                                                services=False, workers=1)
        finally:
            del os.environ["RECORD"]
        engine = runtime.engine
        assert engine is not None
        first, second, failing = Sink(), Sink(), Sink()
        engine.enqueue("http", b"req", first)
        await asyncio.wait_for(first.ended.wait(), 10)
        engine.enqueue("http", b"req", second)
        engine.enqueue("err", b"req", failing)
        await asyncio.wait_for(asyncio.gather(second.ended.wait(), failing.ended.wait()), 10)
        await engine.stop()

        lines = [json.loads(line) for line in record.read_text().splitlines()]
        argv = lines[0]["argv"]
        received = b"".join(bytes.fromhex(line["bytes"]) for line in lines[1:])
        assert argv[-4:-1] == ["--protocol", "1", "--uuid"]
        assert REAL_HEARTBEAT in received and REAL_SESSION_2 in received  # either first
        assert [f[:2] for f in frames(received) if f[0] != 1 or f[1] != 0] == [
            [2, 0], [2, 0], [2, 2], [3, 0], [3, 0], [3, 2], [4, 0], [4, 0], [4, 2], [1, 1]]
        terminate = [f for f in frames(received) if f[:2] == [1, 1]][0]
        assert terminate[2][0] == 11 and pack(terminate[3]) == H
        assert first.chunks == second.chunks == [b"reply"]
        assert failing.errors == [(7, "boom", 42)]


    async def test_client_leaving_before_close_is_told_to_the_worker(
            self, dev_runtime_factory, tmp_path):
        """Through the app service, as on the real runtime: each write follows the invoke;
        a client that leaves before closing its upstream gets its session failed toward the
        worker with [5, 2] "End of file" (the real runtime's bytes, but for the channel id);
        one that closed first is never mentioned again; one that fails its upstream has its
        error forwarded as it is."""
        record = tmp_path / "record.jsonl"
        slave = write_slave(tmp_path / "recorder", RECORDER)
        os.environ["RECORD"] = str(record)
        try:
            runtime = await dev_runtime_factory([str(slave)], app="rec", protocol=1,
                                                workers=1)
        finally:
            del os.environ["RECORD"]
        port = runtime.services.endpoints["rec"][1]

        def raw() -> bytes:
            lines = [json.loads(line) for line in record.read_text().splitlines()[1:]]
            return b"".join(bytes.fromhex(line["bytes"]) for line in lines if "bytes" in line)

        def received() -> list[list[Any]]:
            return [f[:3] for f in frames(raw()) if f[0] != 1]  # sessions only

        await exchange(port, [1, 0, ["slow"]], [1, 0, [b"partial"]], until=0)
        await wait_for(lambda: [f for f in received() if f[1] == 1])
        await exchange(port, [1, 0, ["slow"]], [1, 0, [b"whole"]], [1, 2, []], until=0)
        await wait_for(lambda: any(f[1] == 2 for f in received()))
        await exchange(port, [1, 0, ["slow"]], [1, 1, [[5, 5], "client error"]], until=0)
        await wait_for(lambda: len([f for f in received() if f[1] == 1]) == 2)
        await asyncio.sleep(0.2)  # nothing else comes for the closed session
        got = received()

        assert [f[:3] for f in got] == [
            [2, 0, ["slow"]], [2, 0, ["partial"]], [2, 1, [[5, 2], "End of file"]],
            [3, 0, ["slow"]], [3, 0, ["whole"]], [3, 2, []],
            [4, 0, ["slow"]], [4, 1, [[5, 5], "client error"]]]
        assert REAL_END_OF_FILE_7.replace(b"\x94\x07", b"\x94\x02", 1) in raw()


    async def test_active_at_handshake_and_never_idle(self, dev_runtime_factory, tmp_path):
        """As node::v2: a worker is active once its handshake arrives (this one never sends
        a heartbeat) and is not terminated for being idle (idle-timeout 0.2 s is read and
        has no effect)."""
        from cocaine_http.dev.profile import Profile

        record = tmp_path / "record.jsonl"
        slave = write_slave(tmp_path / "recorder", RECORDER)
        os.environ.update(RECORD=str(record), NO_BEAT="1")
        try:
            runtime = await dev_runtime_factory(
                [str(slave)], app="rec", protocol=1, services=False, workers=1,
                profile=Profile(idle_timeout=0.2))
        finally:
            del os.environ["RECORD"], os.environ["NO_BEAT"]
        engine = runtime.engine
        assert engine is not None
        first = Sink()
        engine.enqueue("http", b"req", first)
        await asyncio.wait_for(first.ended.wait(), 10)
        await asyncio.sleep(1.0)
        second = Sink()
        engine.enqueue("http", b"req", second)
        await asyncio.wait_for(second.ended.wait(), 10)

        lines = [json.loads(line) for line in record.read_text().splitlines()[1:]]
        received = frames(b"".join(bytes.fromhex(line["bytes"]) for line in lines))
        assert first.chunks == second.chunks == [b"reply"]
        assert [f[:2] for f in received if f[0] == 1] == []  # no echo, no terminate
        assert len(engine.pool) == 1 and engine.spawned == 1

    async def test_engine_errors_carry_the_node_categories(self, dev_runtime_factory,
                                                          tmp_path):
        """The engine's own refusals and failures in v0.12 mode: a full queue is the
        overseer's [0x52FF, 1]; a worker that dies under a session is the slave's [0x53FF,
        10] (the texts stay the dev runtime's)."""
        from cocaine_http.dev.engine import QUEUE_FULL
        from cocaine_http.dev.profile import Profile
        from cocaine_http.dev.slave import DISCONNECTED

        record = tmp_path / "record.jsonl"
        slave = write_slave(tmp_path / "recorder", RECORDER)
        os.environ["RECORD"] = str(record)
        try:
            runtime = await dev_runtime_factory(
                [str(slave)], app="rec", protocol=1, services=False, workers=1,
                profile=Profile(pool_limit=1, concurrency=1, queue_limit=1))
        finally:
            del os.environ["RECORD"]
        engine = runtime.engine
        assert engine is not None
        running, queued, refused = Sink(), Sink(), Sink()
        engine.enqueue("slow", b"", running)
        engine.enqueue("slow", b"", queued)
        engine.enqueue("slow", b"", refused)
        await asyncio.wait_for(refused.ended.wait(), 10)
        worker = next(iter(engine.pool.values()))
        assert worker.process is not None
        worker.process.kill()
        await asyncio.wait_for(running.ended.wait(), 10)

        assert refused.errors == [(1, QUEUE_FULL, 0x52FF)]
        assert running.errors == [(10, DISCONNECTED, 0x53FF)]


# -- our services client on the dev services ------------------------------------------------------


class TestClient:
    async def test_storage_logging_and_errors(self, dev12):
        """Client(protocol=1) against the dev services: the storage round trip, the graphs
        (emit mute, enqueue streaming), [12, 2] for a missing key, ServiceNotFoundError."""
        async with Client(dev12.locator, protocol=V0_12, timeout=5.0) as client:
            storage = await client.service("storage")
            await storage.write("ns", "k1", b"\x00\xffbinary", ["t1"])
            read = await storage.read("ns", "k1")
            found = await storage.find("ns", ["t1"])
            with pytest.raises(ServiceError) as missing:
                await storage.read("ns", "nope")
            with pytest.raises(ServiceNotFoundError):
                await client.service("nosuch")
            logging_ = await client.resolve("logging")
            client.logger().info("hello %s", "dev", attributes={"request_id": 7})
            await wait_for(lambda: dev12.services.log_records)

        assert (read, found) == (b"\x00\xffbinary", ["k1"])
        assert (missing.value.category, missing.value.code) == (12, 2)
        assert next(m for m in logging_.methods.values() if m.name == "emit").mute
        assert dev12.services.log_records[-1][1:] == ("app/standalone", "hello dev")
        assert ["request_id", 7] in dev12.services.log_attributes[-1]

    async def test_deploy_start_enqueue_pause(self, dev12, tmp_path):
        """An app deployed through storage (manifest, profile, archive), started with
        node.start_app(name, profile), called through its app service (enqueue streams:
        `[event]`, write, close) and paused; pausing it again is the node's
        "not running" error [0x51FF, 6]."""
        import io
        import tarfile

        app_dir = tmp_path / "app"
        app_dir.mkdir()
        write_slave(app_dir / "slave", f"from cocaine_http.cli import main\n"
                                       f"sys.exit(main(['examples.flask_app.app:app', *sys.argv[1:]]))\n")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            tar.add(app_dir, arcname=".")
        async with Client(dev12.locator, protocol=V0_12, timeout=15.0) as client:
            storage = await client.service("storage")
            await storage.write("manifests", "fl", pack({"slave": "slave", "environment": {
                "PYTHONPATH": str(REPO_ROOT)}}), ["apps"])
            await storage.write("profiles", "fl", pack({"pool-limit": 1}), ["profiles"])
            await storage.write("apps", "fl", pack(archive.getvalue()), ["apps"])
            node = await client.service("node")
            await node.start_app("fl", "fl")
            listed = await node.list()
            app = await client.service("fl")
            chunks = await app.enqueue("http", pack(["GET", "/", "1.1", [], b""]))
            info = await app.info()  # node::v2's layout
            await node.pause_app("fl")
            with pytest.raises(ServiceError) as again:
                await node.pause_app("fl")

        assert listed == ["fl"]
        assert {"load", "pool", "profile", "queue", "requests", "uptime"} <= info.keys()
        assert info["requests"]["accepted"] == 1 and info["pool"]["total:spawned"] == 1
        assert msgpack.unpackb(chunks[0], raw=False)[0] == 200
        assert b"".join(chunks[1:]).startswith(b"Hello from Flask")
        assert (again.value.category, again.value.code) == (0x51FF, 6)


def test_dev_protocol_option_is_checked():
    """--protocol takes 0 or 1 only."""
    from cocaine_http.dev.cli import parse
    from cocaine_http.errors import ConfigError

    assert parse(["--protocol", "1", "m:app"]).dev.protocol == 1
    with pytest.raises(ConfigError):
        parse(["--protocol", "2", "m:app"])



# -- the front on the v0.12 app service: back-pressure at both hops ------------------------------


def test_a_slow_reader_gives_way_through_the_v012_app_service() -> None:
    """`cocaine-http dev --protocol 1`: the front's path is the v0.12 app service, whose sink
    pauses the worker for a slow reader and, when another request needs that worker, drops the
    paused session with an error in v0.12's framing; the other request is served."""
    from tests.test_dev_bounds import DevProcess, post_size, read_response, stream_request
    from tests.test_dev_bounds import wait_until

    dev = DevProcess("--workers", "1", "--protocol", "1", "--max-response-buffer", "1M",
                     "--pool-limit", "1")
    try:
        with stream_request(dev.port, 200) as sock:
            wait_until(lambda: dev.said("paused: its client reads slower"))
            response = post_size(dev.port, 3)  # same worker: it must not wait behind the first
            received = read_response(sock)
        assert response.startswith(b"HTTP/1.1 200 ") and b"\r\n1\r\n3\r\n" in response
        assert len(received) < 100 * 1024 * 1024
        assert dev.said("a caller of app service reads slower than the app writes")
    finally:
        dev.stop()
