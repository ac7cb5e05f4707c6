"""Shared pytest fixtures: apps.

`FakeSession` is a real worker session (`tests.plugins.worker.RecordingSession`) on a channel
that decodes what it sends, so the ASGI and WSGI adapters are driven in-process through the
production write path; a test can fail the session or slow its drain(). `frame()` packs a request the way the HTTP proxy
does (docs/protocol.md §6.1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgpack
import pytest

from cocaine_http.config import Config
from tests.plugins.worker import RecordingSession


def frame(method: str = "GET", uri: str = "/", body: bytes = b"",
          headers: Sequence[tuple[str, str]] = (("Host", "example.test"),),
          version: str = "1.1") -> bytes:
    """A request frame: msgpack [method, uri, version, [[name, value], ...], body]."""
    return msgpack.packb([method, uri, version, [list(h) for h in headers], body],
                         use_bin_type=False)


#: The adapters' in-process tests use a real worker Session that records what it sends.
FakeSession = RecordingSession


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
