"""docs/deploy.md against the real runtime: its slave example runs, the failure it warns about
shows up as it says, and worker output is logged at DEBUG."""

from __future__ import annotations

import asyncio
import re
import time

import msgpack
import pytest

from cocaine_http.errors import ServiceTimeoutError
from cocaine_http.services import Client
from tests.conformance.client import request
from tests.conformance.realruntime import RealRuntime, TornadoProxy

FRAME = msgpack.packb(["GET", "/", "1.1", [["Host", "h"]], b""], use_bin_type=False)


async def _log_has(real: RealRuntime, pattern: str, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in real.log().splitlines() if re.search(pattern, line)]
        if lines or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.2)


def test_the_python_api_example_serves_django(proxy: TornadoProxy):
    """The example in docs/deploy.md, as written (the app swapped for examples/django_project),
    deployed and requested through the tornado proxy."""
    reply = request(f"{proxy.url}/deploydoc/http", "GET", "/")

    assert (reply.status, reply.body) == (200, b"Hello from Django on Cocaine!\n")


async def test_django_with_lifespan_on_hangs_until_startup_timeout(real: RealRuntime):
    """Django has no lifespan: under lifespan="on" the worker exits at startup with a message
    saying what to change (logged by the runtime at DEBUG), the runtime reports "failed to
    activate" and respawns, and the request gets no answer."""
    async with Client(real.locator) as client:
        app = await client.service("djlifespan")
        with pytest.raises(ServiceTimeoutError):
            await app.enqueue("http", FRAME, timeout=5)
        failed = await _log_has(real, r"\[ERROR\] app/djlifespan: slave \S+ has failed to activate")
        hint = await _log_has(real, r"\[DEBUG\] app/djlifespan: slave \S+ output: .*LifespanError"
                                    r".*set lifespan='auto' or 'off'")
        node = await client.service("node")
        await node.pause_app(["djlifespan"])  # stop the respawn loop

    assert failed, "no 'failed to activate' in the runtime log"
    assert hint, "the worker's lifespan message is not in the runtime log"


async def test_worker_output_is_logged_at_debug(real: RealRuntime, proxy: TornadoProxy):
    """log-output lines (here the access log line of a request) are DEBUG records."""
    marker = f"/json?marker={time.monotonic_ns()}"
    assert request(f"{proxy.url}/flask/http", "GET", marker).status == 200

    lines = await _log_has(real, re.escape(marker))

    assert lines and all("] [DEBUG] app/flask: slave " in line and " output: " in line
                         for line in lines), lines
