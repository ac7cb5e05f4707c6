"""Shared pytest fixtures: proxy (`cocaine-http proxy` as a real process on a free port).

Fixtures:
    proxy_process: `await proxy_process(locator, *options)` starts `python -m cocaine_http
        proxy --locator <locator> --port 0 <options>` and waits for its "Listening on" line;
        returns a ProxyProcess (`.url`, `.port`, `.pid`, `.lines`, `.said(text)`, `.stop()`,
        `.kib(key)`). Every process still running at teardown gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class ProxyProcess:
    """`cocaine-http proxy` as a child process; its output (stdout and stderr) is collected."""

    def __init__(self, locator: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cocaine_http", "proxy", "--locator", locator, "--port", "0",
             *options],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.port = 0
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(r"Listening on http://[^:]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        assert self.port, "".join(self.lines)
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def kib(self, key: str, pid: int | None = None) -> int:
        """A /proc/<pid>/status figure (VmRSS, VmHWM) in KiB."""
        with open(f"/proc/{pid or self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {key}")

    def children(self) -> list[int]:
        with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
            return [int(p) for p in f.read().split()]

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 30 s); returns the exit code."""
        self.terminate()
        try:
            code = self.wait()
        except subprocess.TimeoutExpired:
            code = None
        self._collector.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


@pytest.fixture
async def proxy_process() -> AsyncIterator[Callable[..., Awaitable[ProxyProcess]]]:
    """Start `cocaine-http proxy` processes; each is stopped at teardown."""
    started: list[ProxyProcess] = []

    async def start(locator: str, *options: str) -> ProxyProcess:
        process = await asyncio.to_thread(ProxyProcess, locator, *options)
        started.append(process)
        return process

    yield start
    for process in started:
        await asyncio.to_thread(process.stop)


async def wait_until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll `predicate` (every 50 ms, without blocking the loop) until it is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        await asyncio.sleep(0.05)
    return value
