"""Shared pytest fixtures: devruntime (a real dev runtime, in-process, on loopback).

Fixtures:
    dev_runtime_factory: `await dev_runtime_factory(command, app="app", profile=None,
        services=True, **DevRuntime options)` starts a DevRuntime on port 0 (front) and a free
        locator port, with the workers' cwd in tmp_path/"spool"/<app>; every runtime it started
        is closed (gracefully) at teardown. Returns the runtime: `.url`, `.engine`, `.front`,
        `.services`, `.locator`.
    dev_app_runtime: `await dev_app_runtime("pkg.module:attr", *app_args, **same options)`
        runs an HTTP app under the dev runtime as `python -m cocaine_http pkg.module:attr ...`.
    raw_worker_command: `[<slave file>]`: an executable slave (a #! line naming this
        interpreter) that runs tests/workers/raw_worker.py, started by fork + execve as the
        runtime starts slaves; its "info" event's `mark` is its argv[0] unless RAW_MARK is set.
    raw_runtime: a started runtime (app "raw", services off) running the raw worker.

Helpers (import from tests.plugins.devruntime): RecordingSink, enqueue(engine, event, data),
app_command(target, *app_args), wait_for(predicate, timeout), write_slave(path, body).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cocaine_http.dev.engine import Engine
from cocaine_http.dev.profile import Profile
from cocaine_http.dev.runtime import DevRuntime

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
RAW_WORKER = Path(__file__).resolve().parent.parent / "workers" / "raw_worker.py"


def app_command(target: str, *app_args: str) -> list[str]:
    """The worker command the dev CLI builds for `module:attr [app options]`."""
    return [sys.executable, "-m", "cocaine_http", target, *app_args]


class RecordingSink:
    """A ReplySink that records a session's reply and lets a test wait for its parts."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.errors: list[tuple[int, str]] = []
        self.choked = False
        self.ended = asyncio.Event()  # choke, or an error that no choke follows
        self._changed = asyncio.Event()

    def on_chunk(self, data: bytes) -> None:
        self.chunks.append(data)
        self._changed.set()

    def on_error(self, code: int, message: str) -> None:
        self.errors.append((code, message))
        self._changed.set()
        if code == 2:  # engine-side failures are terminal (no choke follows)
            self.ended.set()

    def on_choke(self) -> None:
        self.choked = True
        self.ended.set()
        self._changed.set()

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    async def wait(self, timeout: float = 15.0) -> RecordingSink:
        """Wait until the session ends (choke or engine error)."""
        await asyncio.wait_for(self.ended.wait(), timeout)
        return self

    async def wait_chunks(self, count: int, timeout: float = 15.0) -> None:
        """Wait until at least `count` chunks have arrived (fails at once if the session
        ends first, showing its errors)."""
        async def until() -> None:
            while len(self.chunks) < count:
                if self.ended.is_set():
                    raise AssertionError(f"session ended after {self.chunks!r}: {self.errors!r}")
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)


def enqueue(engine: Engine, event: str, data: bytes = b"", tag: str | None = None
            ) -> RecordingSink:
    """Enqueue an event and return the sink recording its reply."""
    sink = RecordingSink()
    engine.enqueue(event, data, sink, tag)
    return sink


async def wait_for(predicate: Callable[[], Any], timeout: float = 15.0,
                   interval: float = 0.01) -> Any:
    """Poll `predicate` until it is truthy, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        await asyncio.sleep(interval)
    return value


def write_slave(path: Path, body: str) -> Path:
    """An executable slave script at `path`: a #! line naming this interpreter, the repository
    on sys.path, then `body`."""
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n"
                    + body)
    path.chmod(0o755)
    return path


RAW_SLAVE = (
    "import os, runpy\n"
    "os.environ.setdefault('RAW_MARK', sys.argv[0])\n"
    f"runpy.run_path({str(RAW_WORKER)!r}, run_name='__main__')\n"
)


@pytest.fixture
def raw_worker_command(tmp_path: Path) -> list[str]:
    """The raw protocol worker as a slave file, executed as the runtime executes slaves."""
    return [str(write_slave(tmp_path / "raw_slave", RAW_SLAVE))]


@pytest.fixture
async def dev_runtime_factory(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[DevRuntime]]]:
    """Start dev runtimes on loopback (front on port 0); all are closed at teardown."""
    runtimes: list[DevRuntime] = []

    async def start(command: list[str], *, app: str = "app", profile: Profile | None = None,
                    services: bool = True, **options: Any) -> DevRuntime:
        workdir = tmp_path / "spool" / app
        workdir.mkdir(parents=True, exist_ok=True)
        options.setdefault("port", 0)
        options.setdefault("locator_port", 0)
        options.setdefault("workdir", str(workdir))
        runtime = DevRuntime(command, app=app, profile=profile, services=services, **options)
        await runtime.start()
        runtimes.append(runtime)
        return runtime

    yield start
    for runtime in reversed(runtimes):
        await runtime.close()


@pytest.fixture
async def dev_app_runtime(
    dev_runtime_factory: Callable[..., Awaitable[DevRuntime]],
) -> Callable[..., Awaitable[DevRuntime]]:
    """Start an HTTP app (`module:attr` plus app options) under the dev runtime."""

    async def start(target: str, *app_args: str, **options: Any) -> DevRuntime:
        options.setdefault("app", "app")
        options.setdefault("workdir", str(REPO_ROOT))  # where `module:attr` is importable from
        return await dev_runtime_factory(app_command(target, *app_args), **options)

    return start


@pytest.fixture
async def raw_runtime(
    dev_runtime_factory: Callable[..., Awaitable[DevRuntime]], raw_worker_command: list[str]
) -> DevRuntime:
    """A started runtime (app "raw", no services) running the raw worker."""
    return await dev_runtime_factory(raw_worker_command, app="raw", services=False)
