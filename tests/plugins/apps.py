"""Shared pytest fixtures: apps.

`FakeSession` stands in for a worker's raw session so the ASGI and WSGI adapters can be driven
in-process: it records what the adapter writes, decodes the v0.11 response chunks, and lets a
test fail the session or slow its drain(). `frame()` packs a request the way the HTTP proxy
does (PROTOCOL.md §6.1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgpack
import pytest

from cocaine_http.config import Config
from cocaine_http.errors import SessionClosedError


def frame(method: str = "GET", uri: str = "/", body: bytes = b"",
          headers: Sequence[tuple[str, str]] = (("Host", "example.test"),),
          version: str = "1.1") -> bytes:
    """A request frame: msgpack [method, uri, version, [[name, value], ...], body]."""
    return msgpack.packb([method, uri, version, [list(h) for h in headers], body],
                         use_bin_type=False)


class FakeSession:
    """A raw worker session that records the adapter's writes.

    Attributes:
        chunks: each written chunk's payload, joined to bytes.
        ended / failure: how the adapter finished the session (choke, or error(code, msg)).
        done: set once the adapter ended or failed the session.
        drain_gate: when given, drain() waits for it (a slow consumer).
    """

    _next_id = 1

    def __init__(self, drain_gate: asyncio.Event | None = None) -> None:
        FakeSession._next_id += 1
        self.id = FakeSession._next_id
        self.event = "http"
        self.chunks: list[bytes] = []
        self.ended = False
        self.failure: tuple[int, str] | None = None
        self.done = asyncio.Event()
        self.drain_gate = drain_gate
        self.drains = 0
        self.closed = False
        self.on_chunk: Any = None
        self.on_end: Any = None
        self.on_fail: Any = None

    # -- what the adapter calls ------------------------------------------------------------
    def write(self, data: Any) -> None:
        if self.closed:
            raise SessionClosedError("closed")
        self.chunks.append(b"".join(data) if isinstance(data, list) else bytes(data))

    def write_chunks(self, chunks: Any, end: bool = False) -> None:
        """Several chunks and, with end=True, the end: what the worker's Session offers."""
        if self.closed:
            raise SessionClosedError("closed")
        for data in chunks:
            self.write(data)
        if end:
            self.end()

    def end(self) -> None:
        if self.closed:
            raise SessionClosedError("closed")
        self.ended = self.closed = True
        self.done.set()

    def error(self, code: int, message: str) -> None:
        if self.closed:
            raise SessionClosedError("closed")
        self.failure = (code, message)
        self.closed = True
        self.done.set()

    async def drain(self) -> None:
        self.drains += 1
        if self.drain_gate is not None:
            await self.drain_gate.wait()

    # -- what the engine does --------------------------------------------------------------
    def request(self, data: bytes) -> None:
        self.on_chunk(data)
        self.on_end()

    def fail(self, code: int = 1, message: str = "engine failed the session") -> None:
        self.closed = True
        self.on_fail(code, message)

    # -- decoded response ------------------------------------------------------------------
    @property
    def status(self) -> int:
        return int(msgpack.unpackb(self.chunks[0], raw=False)[0])

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in msgpack.unpackb(self.chunks[0], raw=False)[1]}

    @property
    def header_list(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in msgpack.unpackb(self.chunks[0], raw=False)[1]]

    @property
    def body_chunks(self) -> list[bytes]:
        return [msgpack.unpackb(c, raw=True) for c in self.chunks[1:]]

    @property
    def body(self) -> bytes:
        return b"".join(self.body_chunks)


@pytest.fixture
def make_session() -> Any:
    """Factory of recording sessions: `make_session(drain_gate=None)`."""
    return FakeSession


@pytest.fixture
def config() -> Config:
    """Default options with the access log off (tests assert on it separately)."""
    return Config(access_log=False)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def tree_cpu_ticks(pid: int) -> int:
    """utime+stime (clock ticks) of a process and its children, from /proc."""
    total = 0
    for tid in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return found
    for kid in kids:
        found += [kid, *_children(kid)]
    return found


__all__ = ["FakeSession", "assert_same_response", "frame", "rss_kib", "tree_cpu_ticks",
           "worker_pids"]


ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent.parent
#: Response headers whose values must match the framework's own test client.
COMPARED_HEADERS = ("content-type", "location", "content-disposition", "vary")


def worker_pids(runtime: Any) -> list[int]:
    """Process ids of the runtime's live workers."""
    slaves = getattr(runtime.engine, "_slaves", [])
    return [s.process.pid for s in slaves
            if getattr(s, "process", None) is not None and s.process.returncode is None]


def assert_same_response(real: Any, status: int, headers: Any, body: bytes) -> None:
    """A response through the dev front equals the framework test client's one."""
    assert real.status_code == status, (real.status_code, status, real.content[:200])
    for name in COMPARED_HEADERS:
        assert real.headers.get(name) == headers.get(name), name
    assert real.content == body


@pytest.fixture
async def app_runtime(dev_app_runtime: Any) -> Any:
    """Start `module:attr` from the repository's examples under the dev runtime (one worker).

    Usage: `runtime = await app_runtime("examples.flask_app.app:app", *app_args)`.
    """
    from cocaine_http.dev.profile import Profile

    async def start(target: str, *app_args: str, **options: Any) -> Any:
        options.setdefault("workdir", str(ROOT))
        options.setdefault("profile", Profile(pool_limit=1))
        options.setdefault("max_body_size", 128 * 1024 * 1024)
        return await dev_app_runtime(target, *app_args, **options)

    return start


@pytest.fixture
async def http_worker() -> Any:
    """Start `python -m cocaine_http module:attr [options]` against an engine's socket, the
    way cocaine-runtime spawns it; stderr is piped (the access log and errors), stdout
    discarded. Usage: `proc = await http_worker(engine.path, "module:attr", "--threads", "2",
    env={...})`. Every worker still alive at teardown is killed."""
    import os
    import sys

    from tests.plugins.worker import worker_argv

    procs: list[asyncio.subprocess.Process] = []

    async def spawn(path: str, target: str, *options: str,
                    env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cocaine_http", target, *options, *worker_argv(path),
            cwd=str(ROOT), env=dict(os.environ, **(env or {})),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
