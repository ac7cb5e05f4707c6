"""cocaine_http.services.Client against the real v0.11 locator, storage, logging, node and app
services; and the echo worker answering the same enqueues under the real runtime and under
`cocaine-http dev`."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from cocaine_http.errors import ServiceError, ServiceNotFoundError
from cocaine_http.services import Client
from tests.conformance.realruntime import RealRuntime


async def test_locator_resolves_the_services(real: RealRuntime):
    """resolve gives an endpoint in the configured port range and the method tables
    docs/protocol.md §12 lists; an unknown name is ServiceNotFoundError."""
    async with Client(real.locator) as client:
        tables = {name: (await client.resolve(name)) for name in ("storage", "logging", "node",
                                                                  "echo")}
        with pytest.raises(ServiceNotFoundError):
            await client.resolve("no-such-service")

    for (host, port), _version, _table in tables.values():
        assert host == "127.0.0.1" and port in real.service_ports
    assert tables["storage"][2] == {0: "read", 1: "write", 2: "remove", 3: "find"}
    assert tables["logging"][2] == {0: "emit", 1: "verbosity"}
    assert tables["node"][2] == {0: "start_app", 1: "pause_app", 2: "list"}
    assert tables["echo"][2] == {0: "enqueue", 1: "info"}


async def test_storage_round_trip(real: RealRuntime):
    """write, read, find by tag and remove against the files backend; a missing key is a
    ServiceError."""
    key = f"k-{uuid.uuid4().hex}"
    blob = bytes(range(256)) * 64
    async with Client(real.locator) as client:
        storage = await client.service("storage")
        await storage.write("conformance", key, blob, ["conf-tag"])
        read = await storage.read("conformance", key)
        found = await storage.find("conformance", ["conf-tag"])
        await storage.remove("conformance", key)
        with pytest.raises(ServiceError):
            await storage.read("conformance", key)

    assert read == blob
    assert key in found
    assert (real.root / "storage" / "conformance").is_dir()


async def test_logging_reaches_the_runtime_log(real: RealRuntime):
    """Logger messages arrive in the runtime's log with their source."""
    marker = f"conformance-marker-{uuid.uuid4().hex}"
    async with Client(real.locator) as client:
        logger = client.logger("app/conformance")
        assert await logger.wait_ready(10)
        logger.info("%s", marker)
        logger.error("%s-error", marker)
        await logger.close()

    deadline = time.monotonic() + 10
    while marker + "-error" not in real.log() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    lines = [line for line in real.log().splitlines() if marker in line]
    assert any("[INFO]" in line and "app/conformance" in line for line in lines), lines
    assert any("[ERROR]" in line and marker + "-error" in line for line in lines), lines


async def test_node_lists_starts_and_pauses_apps(real: RealRuntime):
    """node.list shows the runlist; start_app serves a stored app, pause_app stops it."""
    async with Client(real.locator) as client:
        node = await client.service("node")
        before = await node.list()
        await node.start_app({"spare": "default"})
        running = await node.list()
        echo = await client.service("spare")
        reply = list(await echo.enqueue("upper", b"spare"))
        await node.pause_app(["spare"])
        after = await node.list()

    assert "spare" not in before and {"flask", "echo", "rawasgi"} <= set(before)
    assert "spare" in running and "spare" not in after
    assert reply == [b"SPARE"]


@pytest.mark.parametrize("event, data, expected", [
    ("ping", b"hello", [b"hello"]),
    ("ping", b"", []),
    ("upper", b"mixed Case \xff", [b"MIXED CASE \xff"]),
    ("ping", b"x" * 300_000, [b"x" * 300_000]),
])
async def test_echo_worker_same_under_real_and_dev(real: RealRuntime, dev, event, data,
                                                   expected):
    """examples/echo_worker.py: the same enqueue, through each runtime's own locator."""
    replies = {}
    for name, locator in (("real", real.locator), ("dev", f"127.0.0.1:{dev('echo').locator_port}")):
        async with Client(locator) as client:
            app = await client.service("echo")
            replies[name] = list(await app.enqueue(event, data))

    assert b"".join(replies["real"]) == b"".join(expected)
    assert replies["real"] == replies["dev"]


async def test_unknown_event_is_an_error_on_both(real: RealRuntime, dev):
    errors = {}
    for name, locator in (("real", real.locator), ("dev", f"127.0.0.1:{dev('echo').locator_port}")):
        async with Client(locator) as client:
            app = await client.service("echo")
            with pytest.raises(ServiceError) as failed:
                await app.enqueue("nope", b"")
            errors[name] = (failed.value.code, failed.value.message)

    assert errors["real"] == errors["dev"]
