"""Trace headers on the real v0.12 runtime: a call through its app service with `trace=`
reaches our worker's ASGI and WSGI apps as `cocaine.trace` (the runtime continues the trace on
the invoke, the writes and the close it forwards), the runtime stamps the same trace on the
frames of the answer, and an untraced call reaches the app without one."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import msgpack
import pytest

from cocaine_http.codec import Decoder
from cocaine_http.codec.hpack import Trace
from cocaine_http.protocol.dialect import pack
from tests.conformance_v012.py12 import HERE, py12  # noqa: F401

APPS = {"trace12asgi": "tests.workers.trace_apps:asgi_app",
        "trace12wsgi": "tests.workers.trace_apps:wsgi_app"}
ENVELOPE = pack(["GET", "/", "1.1", [], b""])
TRACE = Trace(0x1111, 0x2222, 0)
#: a trace whose values use every byte: the byte order on the wire matters
WIDE = Trace(0x0102030405060708, 0x1112131415161718, 0xF1F2F3F4F5F6F7F8)


@pytest.fixture(scope="module")
def deployed(runtime12):
    runtime12.deploy_ours(APPS)
    return runtime12


def body(chunks: list[bytes]) -> Any:
    assert msgpack.unpackb(chunks[0])[0] == 200
    return json.loads(b"".join(chunks[1:]))


@pytest.mark.parametrize("app", sorted(APPS))
async def test_the_app_sees_the_callers_trace(deployed, client12, app):
    svc = await client12.service(app)
    traced = body(await svc.enqueue("http", ENVELOPE, trace=TRACE))
    wide = body(await svc.enqueue("http", ENVELOPE, trace=WIDE))
    plain = body(await svc.enqueue("http", ENVELOPE))

    assert traced == {"trace": [0x1111, 0x2222, 0], "tuple": True}
    assert wide["trace"] == list(WIDE)
    assert plain == {"trace": None, "tuple": False}


async def test_the_runtime_stamps_the_trace_on_its_answer(deployed, client12):
    """The worker's frames carry no headers; what the client gets back carries the call's
    trace on every frame, the same three values."""
    resolved = await client12.resolve("trace12asgi")
    host, port = resolved.endpoints[0]
    reader, writer = await asyncio.open_connection(host, port)
    headers = [[False, 80, TRACE.trace_id.to_bytes(8, "little")],
               [False, 81, TRACE.span_id.to_bytes(8, "little")],
               [False, 82, TRACE.parent_id.to_bytes(8, "little")]]
    try:
        for frame in ([1, 0, ["http"], headers], [1, 0, [ENVELOPE], headers],
                      [1, 2, [], headers]):
            writer.write(pack(frame))
        decoder, messages = Decoder("v0.12"), []
        while not any(m[0] == 2 and m[1] == 1 for m in messages):
            data = await asyncio.wait_for(reader.read(65536), 15)
            assert data, f"the runtime closed the connection after {messages}"
            messages += decoder.feed(data)
    finally:
        writer.close()

    answer = [m for m in messages if m[1] == 1]
    assert len(answer) >= 3 and all(len(m) == 4 and m[3] == TRACE for m in answer)
    assert json.loads(b"".join(m[2][0] for m in answer[1:-1]))["trace"] == list(TRACE)


async def test_the_reference_clients_trace_reaches_our_app(deployed, py12):
    """PyPI cocaine 0.12's client with `trace=` (headers stored in the connection's table,
    then named by dynamic index) through the runtime to our worker: each trace arrives."""
    done = await asyncio.to_thread(
        subprocess.run, [str(py12), str(HERE / "py12_trace_client.py"), deployed.locator,
                         "trace12wsgi"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    bodies = json.loads(done.stdout.strip().splitlines()[-1])
    assert [b["trace"] for b in bodies] == [[0x1111, 0x2222, 0], [0x1111, 0x2222, 0],
                                            [0x0102030405060708, 7, 9]]
