"""The dev runtime's v0.12 mode next to the real cocaine-runtime v0.12.14: the same raw calls
to both, the same bytes back (ports, paths and uuids aside), and the same frames toward a
worker that records what it receives (deployed the same way on both: storage, node)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest

from cocaine_http.dev.runtime import DevRuntime
from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.services import Client
from tests.recorder12 import RECORDER


class Side:
    """One runtime as the test sees it: its locator port and its root (records)."""

    def __init__(self, locator_port: int, records: Path) -> None:
        self.locator_port = locator_port
        self.records = records

    @property
    def locator(self) -> str:
        return f"127.0.0.1:{self.locator_port}"

    async def port_of(self, name: str) -> int:
        (message,) = frames(await call(self.locator_port, [1, 0, [name]]))
        return int(message[2][0][0][1])

    def received(self) -> list[list[Any]]:
        """The session frames (not the control channel) the recorder got, as bytes."""
        data = b""
        for path in sorted(self.records.glob("record-*")):
            for line in path.read_text().splitlines()[1:]:
                data += bytes.fromhex(json.loads(line).get("bytes", ""))
        return [f for f in frames(data, raw=True) if f[0] != 1]


def frames(data: bytes, raw: bool = False) -> list[list[Any]]:
    unpacker = msgpack.Unpacker(raw=raw, strict_map_key=False)
    unpacker.feed(data)
    return list(unpacker)


async def call(port: int, *messages: list[Any], until: int = 1, timeout: float = 3.0,
               linger: float = 0.0) -> bytes:
    """Raw frames on a fresh connection; the bytes of the first `until` answers, or all
    there is when the peer closes or stays silent for `timeout`; the connection is closed
    `linger` seconds later."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for message in messages:
            writer.write(pack(message))
        data = b""
        while len(frames(data)) < until:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        await asyncio.sleep(linger)
        return data
    finally:
        writer.close()


@pytest.fixture(scope="module")
def sides(runtime12, tmp_path_factory):
    """The real runtime and a dev runtime (bare, v0.12 mode, its own loop in a thread), each
    with the recorder deployed as app "rec" through its storage and node services."""
    root = tmp_path_factory.mktemp("dev12")
    (root / "exits").mkdir()
    loop = asyncio.new_event_loop()
    dev = DevRuntime(None, protocol=1, port=0, locator_port=0, run_dir=str(root / "run"))
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(dev.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20)
    real = Side(runtime12.locator_port, runtime12.root / "exits")
    ours = Side(dev.services.locator_endpoint[1], root / "exits")

    async def deploy() -> None:
        app_dir = runtime12.slave_script("rec", RECORDER, python=Path(sys.executable))
        for side in (real, ours):
            async with Client(side.locator, protocol=V0_12, timeout=15.0) as client:
                await runtime12.deploy(client, "rec", app_dir, env={
                    "RECORD_DIR": str(side.records), "BEAT_EVERY": "3"})

    asyncio.run(deploy())
    yield real, ours
    asyncio.run_coroutine_threadsafe(dev.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()  # its self-pipe sockets too: an unclosed loop fails the run at exit


def same_but_ports(real: bytes, ours: bytes) -> tuple[Any, Any]:
    """Both resolve answers with the endpoints' ports blanked."""
    def blank(data: bytes) -> Any:
        (channel, mid, (endpoints, version, graph), headers) = frames(data)[0]
        return channel, mid, [[host, 0] for host, _ in endpoints], version, graph, headers
    return blank(real), blank(ours)


async def test_resolve_answers_are_the_runtimes(sides):
    """resolve of storage, logging, node, an app and an unknown name."""
    real, ours = sides
    for name in ("storage", "logging", "node", "rec"):
        a, b = same_but_ports(await call(real.locator_port, [1, 0, [name]]),
                              await call(ours.locator_port, [1, 0, [name]]))
        assert a == b, name
    assert await call(real.locator_port, [1, 0, ["nosuch"]]) == await call(
        ours.locator_port, [1, 0, ["nosuch"]])


async def test_service_answers_are_the_runtimes(sides):
    """storage write, read, find, remove; logging emit (no answer) then verbosity; node
    list; a missing key ([12, 2], the text aside); an unbound method (the connection
    dropped): the same bytes."""
    real, ours = sides
    cases = [
        ("storage", [[1, 1, ["cmp", "k", "v", ["t"]]]]),
        ("storage", [[2, 0, ["cmp", "k"]]]),
        ("storage", [[4, 3, ["cmp", ["t"]]]]),
        ("logging", [[1, 0, [1, "src", "msg", [["a", 1]]]], [2, 1, []]]),
        ("node", [[1, 2, []]]),
        ("logging", [[1, 2, [0]]]),
        ("storage", [[5, 2, ["cmp", "k"]]]),
    ]
    for service, messages in cases:
        got = [await call(await side.port_of(service), *messages) for side in (real, ours)]
        assert got[0] == got[1], (service, messages)
    missing = [frames(await call(await side.port_of("storage"), [3, 0, ["cmp", "nope"]]))[0]
               for side in (real, ours)]
    assert [m[:2] + [m[2][0]] + [m[3]] for m in missing] == [[3, 1, [12, 2], missing[0][3]]] * 2


async def test_the_worker_receives_the_runtimes_frames(sides):
    """Through each app service: a complete request (invoke, write, close), a client that
    leaves before closing ([5, 2] "End of file"), one that closes first (nothing more), one
    that fails its upstream (its error forwarded): the worker gets the same frames, and the
    client the same answer to the complete one."""
    real, ours = sides
    answers = []

    async def seen(side: Side, count: int) -> None:
        # one step at a time: the real runtime sends a discard's error from another thread,
        # so a next session's invoke could overtake it
        for _ in range(100):
            if len(side.received()) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the worker got {side.received()!r}")

    for side in (real, ours):
        port = await side.port_of("rec")
        answers.append(await call(port, [1, 0, ["http"]], [1, 0, [b"req"]], [1, 2, []],
                                  until=2))
        await seen(side, 3)
        # each client stays long enough for its messages to reach the worker (the real
        # runtime, seeing data and EOF at once, may handle the EOF first)
        await call(port, [1, 0, ["slow"]], [1, 0, [b"partial"]], until=0, linger=0.5)
        await seen(side, 6)
        await call(port, [1, 0, ["slow"]], [1, 0, [b"whole"]], [1, 2, []], until=0,
                   linger=0.5)
        await seen(side, 9)
        await call(port, [1, 0, ["slow"]], [1, 1, [[5, 5], "client error"]], until=0,
                   linger=0.5)
        await seen(side, 11)
    await asyncio.sleep(0.5)  # and nothing more comes

    def relative(found: list[list[Any]]) -> list[list[Any]]:
        """Channel ids as offsets from the first one (each runtime counts its own)."""
        first = found[0][0]
        return [[f[0] - first, *f[1:]] for f in found]

    assert answers[0] == answers[1]
    assert relative(real.received()) == relative(ours.received())
    assert [f[1] for f in real.received()] == [0, 0, 2, 0, 0, 1, 0, 0, 2, 0, 1]
