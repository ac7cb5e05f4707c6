"""Shared pytest fixtures: proxy (`cocaine-http proxy` as a real process on a free port).

Fixtures:
    proxy_process: `await proxy_process(locator, *options)` starts `python -m cocaine_http
        proxy --locator <locator> --port 0 <options>` and waits for its "Listening on" line;
        returns a ProxyProcess (`.url`, `.port`, `.pid`, `.lines`, `.said(text)`, `.stop()`,
        `.kib(key)`). Every process still running at teardown gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.plugins.process import ServerProcess


class ProxyProcess(ServerProcess):
    """`cocaine-http proxy` as a child process on a free port."""

    def __init__(self, locator: str, *options: str) -> None:
        super().__init__(["proxy", "--locator", locator, "--port", "0", *options],
                         ready=r"Listening on http://[^:]+:(\d+)")


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
