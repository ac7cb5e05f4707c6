"""Our worker under the real cocaine-runtime v0.11, seen on the wire through a tap between the
two (tests/conformance/apps/interop.py): spawn, handshake, heartbeats, session ids, batching,
idle terminate, heartbeat-timeout reaping and shutdown terminate."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import msgpack
import pytest

from cocaine_http.errors import ServiceError
from cocaine_http.services import Client
from tests.conformance.apps import interop
from tests.conformance.realruntime import AppSpec, RealRuntime, slave_script

HTTP_GET = msgpack.packb(["GET", "/big?size=10", "1.1", [["Host", "h"]], b""],
                         use_bin_type=False)


class Tap:
    """One tapped worker: its argv record and the reads in each direction, decoded."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.meta = json.loads(base.with_suffix(".argv.json").read_text())

    def reads(self, direction: str) -> list[list[list[object]]]:
        """Messages per read (`in`: runtime to worker, `out`: worker to runtime)."""
        unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
        out = []
        path = self.base.with_suffix(".jsonl")
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["dir"] != direction or not record["hex"]:
                continue
            unpacker.feed(bytes.fromhex(record["hex"]))
            out.append([list(m) for m in unpacker])
        return out

    def messages(self, direction: str) -> list[list[object]]:
        return [m for read in self.reads(direction) for m in read]

    def raw(self, direction: str) -> bytes:
        path = self.base.with_suffix(".jsonl")
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return b"".join(bytes.fromhex(r["hex"]) for r in records if r["dir"] == direction)

    def closed(self, direction: str) -> bool:
        path = self.base.with_suffix(".jsonl")
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return any(r["dir"] == direction and not r["hex"] for r in records)

    @property
    def pid(self) -> int:
        return int(self.meta["pid"])


def taps_of(directory: Path, app: str) -> list[Tap]:
    found = sorted(directory.glob(f"{app}-*.argv.json"), key=lambda p: p.stat().st_mtime)
    return [Tap(p.with_suffix("").with_suffix("")) for p in found]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes (its parent, the runtime, reaps it)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def until(predicate, timeout: float = 20.0, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {predicate.__doc__ or predicate}")
        await asyncio.sleep(step)


async def enqueue(client: Client, app: str, event: str, data: bytes) -> list[bytes]:
    service = await client.service(app)
    return list(await service.enqueue(event, data, timeout=20))


@pytest.fixture(scope="module")
def tapped_run(real: RealRuntime, taps: Path) -> Tap:
    """Five concurrent HTTP sessions on the tapped app (its first traffic)."""
    async def run() -> list[list[bytes]]:
        async with Client(real.locator) as client:
            return await asyncio.gather(*(enqueue(client, "tapped", "http", HTTP_GET)
                                          for _ in range(5)))

    replies = asyncio.run(run())
    for chunks in replies:
        head = msgpack.unpackb(chunks[0])
        assert head[0] == 200 and b"".join(msgpack.unpackb(c, raw=True) for c in chunks[1:]) == (
            b"y" * 10)
    (tap,) = taps_of(taps, "tapped")
    return tap


def test_spawn_argv_and_cwd(tapped_run: Tap, real: RealRuntime):
    """fork + execve of the slave in <spool>/<app>, the runtime's arguments in order."""
    argv, cwd = tapped_run.meta["argv"], tapped_run.meta["cwd"]

    assert Path(argv[0]).name == "slave"
    assert [argv[i] for i in (1, 3, 5, 7)] == ["--app", "--endpoint", "--locator", "--uuid"]
    assert argv[2] == "tapped" and argv[6] == real.locator
    assert argv[4] == str(real.root / "run" / f"tapped.{real.proc.pid}")
    assert Path(cwd) == real.root / "spool" / "tapped"


def test_handshake_then_heartbeat_and_echo(tapped_run: Tap):
    """First bytes: handshake [0, 0, [uuid]] (uuid as a raw string), then a heartbeat, which
    the runtime echoes."""
    uuid = tapped_run.meta["argv"][8]
    out = tapped_run.messages("out")

    assert out[0] == [0, 0, [uuid]]
    assert out[1] == [1, 0, []]
    assert tapped_run.raw("out").startswith(bytes.fromhex("93000091da0024") + uuid.encode())
    assert [1, 0, []] in tapped_run.messages("in")


def test_session_ids_and_replies(tapped_run: Tap):
    """Sessions 1..5 from the runtime's counter for this app; each answered on its own id with
    head, body chunks and one choke, after invoke, the request chunk and choke."""
    incoming = [m for m in tapped_run.messages("in") if m[1] != 0]
    outgoing = [m for m in tapped_run.messages("out") if m[1] != 0]
    ids = sorted({m[1] for m in incoming})

    assert ids == [1, 2, 3, 4, 5]
    for sid in ids:
        assert [m[0] for m in incoming if m[1] == sid] == [3, 4, 6]
        kinds = [m[0] for m in outgoing if m[1] == sid]
        assert kinds[-1] == 6 and set(kinds[:-1]) == {4} and kinds.count(6) == 1


def test_batching_both_ways(tapped_run: Tap):
    """The runtime writes a session's invoke, chunk and choke at once; our worker writes a
    small complete response (head, body, choke) at once too."""
    def sessions_per_read(direction: str) -> list[list[int]]:
        return [[m[0] for m in read if m[1] == sid] for read in tapped_run.reads(direction)
                for sid in {m[1] for m in read if m[1] != 0}]

    assert [3, 4, 6] in sessions_per_read("in")
    assert [4, 4, 6] in sessions_per_read("out")  # head, body and choke in one write


async def test_idle_worker_gets_terminate_and_leaves(real: RealRuntime, taps: Path):
    """idle-timeout 2: terminate(1, "slave is idle"); our worker answers terminate and exits."""
    async with Client(real.locator) as client:
        await enqueue(client, "idler", "http", HTTP_GET)
    (tap,) = taps_of(taps, "idler")

    await until(lambda: [2, 0, [1, "slave is idle"]] in tap.messages("in"))
    await until(lambda: not alive(tap.pid))

    assert [m for m in tap.messages("out") if m[0] == 2][0][:2] == [2, 0]
    assert "slave is idle" in real.log()


async def test_silent_worker_is_reaped_and_replaced(real: RealRuntime, taps: Path):
    """heartbeat-timeout 3: a worker whose loop blocks for 6 s stops heartbeating; the runtime
    fails its session with "slave has timed out" (code 2 from the runtime's own list), sends
    it no terminate, SIGTERMs it, and the next enqueue gets a new worker."""
    async with Client(real.locator) as client:
        assert await enqueue(client, "freezer", "ping", b"warm") == [b"warm"]
        with pytest.raises(ServiceError) as failed:
            await enqueue(client, "freezer", "freeze", b"")
        (first,) = taps_of(taps, "freezer")
        await until(lambda: not alive(first.pid))
        assert await enqueue(client, "freezer", "ping", b"again") == [b"again"]

    assert "slave has timed out" in failed.value.message
    assert not [m for m in first.messages("in") if m[0] == 2]
    second = taps_of(taps, "freezer")[-1]
    assert second.meta["argv"][8] != first.meta["argv"][8]


async def test_shutdown_sends_terminate_and_workers_leave(tmp_path: Path):
    """Engine shutdown: terminate(1, "the engine is shutting down"), our worker answers and
    exits, and the runtime stops cleanly (its own runtime, so the session runtime lives on)."""
    tap_dir = tmp_path / "taps"
    tap_dir.mkdir()
    spec = AppSpec(slave_script(interop.TAPPED_SLAVE), environment={
        "CONFORMANCE_TAP_DIR": str(tap_dir)})
    runtime = RealRuntime(os.environ["COCAINE_RUNTIME"], tmp_path / "rt", {"tapped": spec})
    runtime.start()
    try:
        async with Client(runtime.locator) as client:
            await enqueue(client, "tapped", "http", HTTP_GET)
        (tap,) = taps_of(tap_dir, "tapped")
    finally:
        status = runtime.stop()

    assert status == 0
    assert runtime.leftovers() == []
    assert [2, 0, [1, "the engine is shutting down"]] in tap.messages("in")
    assert [m[:2] for m in tap.messages("out") if m[0] == 2] == [[2, 0]]
    await until(lambda: not alive(tap.pid), timeout=5)


async def test_error_after_head_is_error_then_choke(tapped_run: Tap, real: RealRuntime):
    """An app failing after its head: our worker sends error, then the choke the runtime waits
    for (a worker error does not end a session there); the client gets the error."""
    frame = msgpack.packb(["GET", "/fail-after", "1.1", [["Host", "h"]], b""],
                          use_bin_type=False)
    async with Client(real.locator) as client:
        with pytest.raises(ServiceError):
            await enqueue(client, "tapped", "http", frame)
    sid = max(m[1] for m in tapped_run.messages("in"))

    await until(lambda: [6, sid, []] in tapped_run.messages("out"))
    kinds = [m[0] for m in tapped_run.messages("out") if m[1] == sid]
    assert kinds[-2:] == [5, 6] and kinds.count(5) == 1
