"""A cluster on one machine: two real cocaine-runtime v0.11 processes on different loopback
addresses (127.0.0.1 and 127.0.0.2) and locator ports, the same app deployed on both, and one
`cocaine-http proxy` given both locators (docs/proxy.md "Clusters").

The app tells the runtimes apart by its working directory (each runtime's spool). The proxy
must spread sessions over both, and when one runtime dies, answer the requests that were in
flight on it with a status (502 or 504, never a hang or a silent close) and send the next ones
to the other.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conformance.client import ConnectionDropped, request
from tests.conformance.conftest import _need
from tests.conformance.realruntime import AppSpec, OurProxy, RealRuntime, http_slave

APP = "flood"


class Cluster:
    def __init__(self, root: Path) -> None:
        binary = _need("COCAINE_RUNTIME")
        apps = {APP: AppSpec(http_slave("tests.conformance.apps.proxy_flood:app"))}
        self.runtimes = [RealRuntime(binary, root / f"node{i}", apps, host=f"127.0.0.{i}")
                         for i in (1, 2)]
        self.proxy = OurProxy([r.locator for r in self.runtimes], root, "cluster",
                              ("--no-access-log", "--request-timeout", "20"))

    def node_of(self, cwd: str) -> int:
        """Which runtime (0 or 1) a worker in `cwd` belongs to."""
        for index, runtime in enumerate(self.runtimes):
            if cwd.startswith(str(runtime.root)):
                return index
        raise AssertionError(f"a worker outside both runtimes: {cwd}")

    def where(self, target: str = "/where", timeout: float = 30) -> tuple[int, int]:
        """(status, node) of one request through the proxy (node -1: not answered by the app)."""
        reply = request(f"{self.proxy.url}/{APP}/http", "GET", target, timeout=timeout)
        if reply.status != 200:
            return reply.status, -1
        return 200, self.node_of(json.loads(reply.body)["cwd"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("cluster"))
    started: list[RealRuntime] = []
    try:
        for runtime in nodes.runtimes:
            runtime.start()
            started.append(runtime)
        nodes.proxy.start()
        yield nodes
    finally:
        nodes.proxy.stop()
        for runtime in started:
            runtime.stop()
            for pid in runtime.leftovers(timeout=5):
                os.kill(pid, signal.SIGKILL)


def test_sessions_spread_over_both_runtimes(cluster):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cluster.where(), range(40)))

    assert {status for status, _ in results} == {200}
    nodes = [node for _, node in results]
    assert set(nodes) == {0, 1}, nodes


def _slow(cluster: Cluster) -> tuple[int | str, int]:
    try:
        return cluster.where("/slow?s=4", timeout=40)
    except ConnectionDropped:
        return "dropped", -1


def test_serving_on_when_one_runtime_dies(cluster):
    """Runtime 1 is killed while slow requests are in flight on both: those on it get 502 or
    504, those on runtime 0 their answer; every later request is served by runtime 0."""
    for _ in range(10):  # workers on both nodes, so that the slow requests land on both
        cluster.where()
    doomed = cluster.runtimes[1]
    with ThreadPoolExecutor(8) as pool:
        inflight = [pool.submit(_slow, cluster) for _ in range(8)]
        time.sleep(1.5)
        assert doomed.proc is not None
        doomed.proc.kill()
        doomed.proc.wait(10)
        results = [f.result() for f in inflight]

    answered = [node for status, node in results if status == 200]
    failed = [status for status, _ in results if status != 200]
    assert set(answered) <= {0}, results
    assert failed, results  # some were on the runtime that died
    assert set(failed) <= {502, 504}, results

    later = [cluster.where() for _ in range(12)]
    assert later == [(200, 0)] * 12, later
