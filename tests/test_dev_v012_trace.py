"""Trace headers under the dev runtime in v0.12 mode: a client call with `trace=` reaches an
ASGI app and a WSGI app (real worker processes) as `cocaine.trace`, the dev runtime continues
the trace on the frames it sends the worker and the client, and zeros outside a trace."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import msgpack
import pytest

from cocaine_http.codec import Decoder
from cocaine_http.codec.hpack import Trace, read_trace
from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.services import Client
from tests.conformance_v012.py12 import HERE, py12  # noqa: F401
from tests.test_dev_v012 import exchange

PY12_TRACE_CLIENT = HERE / "py12_trace_client.py"

ENVELOPE = pack(["GET", "/", "1.1", [], b""])
TRACE = Trace(0x1111, 0x2222, 0)
BIG = Trace(2**64 - 1, 0x0102030405060708, 0xFEDCBA9876543210)
APPS = {"asgi": "tests.workers.trace_apps:asgi_app", "wsgi": "tests.workers.trace_apps:wsgi_app"}


def decoded(data: bytes) -> list[tuple[Any, ...]]:
    """Every message of a v0.12 stream, with its trace when it has one."""
    return Decoder("v0.12").feed(data)


def closed(data: bytes) -> bool:
    """The answer's close (or error) has arrived."""
    return any(m[0] == 2 for m in decoded(data))


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
async def test_a_trace_reaches_the_app(dev_app_runtime, kind):
    """enqueue(..., trace=) through the dev app service: the app sees the three values as
    ints (a Trace, also a plain tuple); a call without one gets no `cocaine.trace`."""
    runtime = await dev_app_runtime(APPS[kind], protocol=1, workers=1)
    async with Client(runtime.locator, protocol=V0_12, timeout=20.0) as client:
        app = await client.service("app")
        traced = await app.enqueue("http", ENVELOPE, trace=TRACE)
        big = await app.enqueue("http", ENVELOPE, trace=BIG)
        plain = await app.enqueue("http", ENVELOPE)

    assert msgpack.unpackb(traced[0])[0] == 200
    assert json.loads(b"".join(traced[1:])) == {"trace": [0x1111, 0x2222, 0], "tuple": True}
    assert json.loads(b"".join(big[1:]))["trace"] == list(BIG)
    assert json.loads(b"".join(plain[1:])) == {"trace": None, "tuple": False}


async def test_replies_carry_the_callers_trace(dev_app_runtime):
    """As the real runtime does: every frame of the answer to a traced call carries the
    call's trace (the worker's own frames have no headers); an untraced call's answer
    carries zeros, which decode as no trace."""
    runtime = await dev_app_runtime(APPS["asgi"], protocol=1, workers=1)
    port = runtime.services.endpoints["app"][1]
    headers = [[False, 80, (0x1111).to_bytes(8, "little")],
               [False, 81, (0x2222).to_bytes(8, "little")], [False, 82, bytes(8)]]
    traced = await exchange(port, [1, 0, ["http"], headers], [1, 0, [ENVELOPE], headers],
                            [1, 2, [], headers], until=closed, timeout=15.0)
    plain = await exchange(port, [1, 0, ["http"]], [1, 0, [ENVELOPE]], [1, 2, []],
                           until=closed, timeout=15.0)

    answer = decoded(traced)
    assert len(answer) >= 3 and [m[1] for m in answer] == [1] * len(answer)
    assert all(m[3] == TRACE for m in answer)
    assert json.loads(b"".join(m[2][0] for m in answer[1:-1]))["trace"] == list(TRACE)
    untraced = decoded(plain)
    assert len(untraced) >= 3 and all(len(m) == 3 for m in untraced)
    assert json.loads(b"".join(m[2][0] for m in untraced[1:-1]))["trace"] is None
    # the zeros are there, on every frame, as the runtime stamps them
    assert plain.count(bytes.fromhex("a874726163655f6964a80000000000000000")) == len(untraced)


def test_engine_frames_carry_the_sessions_trace():
    """What the dev engine sends a worker for a traced session: invoke, each write and the
    close, each with the same three values by name, as the runtime sends them."""
    frames = b"".join(bytes(p) for p in V0_12.engine_request(2, "http", [b"a", b"b"],
                                                             trace=TRACE))
    more = b"".join(bytes(p) for p in V0_12.engine_chunk(2, b"c", TRACE))
    messages = decoded(frames + more)

    assert [m[:3] for m in messages] == [(0, 2, [b"http"]), (0, 2, [b"a"]), (0, 2, [b"b"]),
                                         (2, 2, []), (0, 2, [b"c"])]
    assert all(m[3] == TRACE for m in messages)
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(frames)
    assert next(unpacker)[3] == [[False, b"trace_id", (0x1111).to_bytes(8, "little")],
                                 [False, b"span_id", (0x2222).to_bytes(8, "little")],
                                 [False, b"parent_id", bytes(8)]]


async def test_the_reference_clients_trace_reaches_our_app(dev_app_runtime, py12,
                                                          monkeypatch):
    """PyPI cocaine 0.12's client with `trace=`: it stores the trace headers in the
    connection's header table, then refers to them by index and replaces their values; the
    dev services read them with that table and the app sees each trace."""
    import cocaine_http.codec.records as records

    seen: list[Any] = []

    def spy(headers: list[Any], table: Any) -> Any:
        seen.append(headers)
        return read_trace(headers, table)

    monkeypatch.setattr(records, "read_trace", spy)
    runtime = await dev_app_runtime(APPS["asgi"], protocol=1, workers=1)
    done = await asyncio.to_thread(
        subprocess.run, [str(py12), str(PY12_TRACE_CLIENT), runtime.locator, "app"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    bodies = json.loads(done.stdout.strip().splitlines()[-1])

    assert [b["trace"] for b in bodies] == [[0x1111, 0x2222, 0], [0x1111, 0x2222, 0],
                                            [0x0102030405060708, 7, 9]]
    # what PY12 sent: stored entries by name, then new values stored under names taken from
    # the dynamic table by index (each entry pushes the table on, so the index stays 85)
    assert seen[0][0] == [True, b"trace_id", (0x1111).to_bytes(8, "little")]
    assert [e[:2] for e in seen[1]] == [[True, 85]] * 3 and [e[:2] for e in seen[2]] == [
        [True, 85]] * 3
