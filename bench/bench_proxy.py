# Strategy: one real cocaine-runtime v0.11 with one hello app (pool-limit 1: the same worker
# process answers every request, whichever proxy sent it), and both HTTP fronts in front of it:
# `cocaine-http proxy` (one process) and the tornado proxy of cocaine-tools (Python 2). wrk
# drives each for DURATION seconds with IN_FLIGHT connections, interleaved (ours, tornado,
# ours, tornado, ...), and the proxy's CPU (utime+stime from /proc, the process and its
# threads) is divided by the completed requests; medians of REPS runs are reported. Latency:
# wrk with one connection through each proxy (p50, p99), against a sequential loop that calls
# the app service directly with our services client (the same request frame, no HTTP): the
# difference is what the proxy adds. Loaders are pinned to CPU 0 and the proxies to CPU 1 when
# there are two CPUs. Needs the built runtime (COCAINE_RUNTIME, PY2, PY2SITE, as `make
# conformance` sets them, or ~/.cache/cocaine-runtime/v0.11/env.sh); without it, says so and
# skips.
"""Proxy benchmark: cocaine-http proxy vs the tornado proxy on the real v0.11 runtime."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_http import pinned, tree_cpu

ROOT = Path(__file__).resolve().parent.parent
DURATION = float(os.environ.get("BENCH_PROXY_DURATION", "3"))
REPS = int(os.environ.get("BENCH_PROXY_REPS", "3"))
IN_FLIGHT = 16
ENV_SH = Path.home() / ".cache" / "cocaine-runtime" / "v0.11" / "env.sh"
HELLO_SLAVE = "from cocaine_http.cli import main\nsys.exit(main(['bench.bench_http:hello_asgi'] + sys.argv[1:]))"


def _runtime_env() -> dict[str, str] | None:
    """COCAINE_RUNTIME, PY2, PY2SITE from the environment, else from the cache's env.sh."""
    names = ("COCAINE_RUNTIME", "PY2", "PY2SITE")
    if all(os.environ.get(n) for n in names):
        return {n: os.environ[n] for n in names}
    if not ENV_SH.exists():
        return None
    out = subprocess.run(["bash", "-c", f". {ENV_SH} && env"], capture_output=True, text=True)
    found = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    values = {n: found.get(n, "") for n in names}
    if not all(values.values()) or not Path(values["COCAINE_RUNTIME"]).exists():
        return None
    return values


def _wrk(url: str, connections: int, duration: float, latency: bool = False) -> str:
    argv = [*pinned(0), "wrk", "-t1", f"-c{connections}", f"-d{max(duration, 1):.0f}s", url]
    if latency:
        argv.insert(-1, "--latency")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return out


def _throughput(url: str, pid: int) -> tuple[float, float]:
    """(requests/s, proxy CPU µs/request) of one wrk run."""
    cpu = tree_cpu(pid)
    out = _wrk(url, IN_FLIGHT, DURATION)
    used = tree_cpu(pid) - cpu
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    assert match, out
    count = int(match.group(1))
    seconds = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    return count / seconds, used / count * 1e6


def _percentiles(url: str) -> tuple[float, float]:
    """(p50, p99) in µs of wrk with one connection."""
    out = _wrk(url, 1, DURATION, latency=True)

    def value(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert match, out
        return float(match.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[match.group(2)]

    return value("50"), value("99")


def _direct(locator: str, app: str, count: int = 3000) -> tuple[float, float]:
    """(p50, p99) in µs of enqueue("http") calls on the app service, one at a time."""
    from cocaine_http.proxy.connection import request_frame
    from cocaine_http.services import Client

    frame = request_frame(b"GET", b"/", b"1.1", [(b"Host", b"bench")], b"")

    async def run() -> list[float]:
        async with Client(locator) as client:
            service = await client.service(app)
            times = []
            for _ in range(count):
                started = time.perf_counter()
                await service.enqueue("http", frame)
                times.append((time.perf_counter() - started) * 1e6)
            return times

    times = sorted(asyncio.run(run())[count // 10:])
    return statistics.median(times), times[int(len(times) * 0.99)]


def main() -> None:
    env = _runtime_env()
    if env is None:
        print("bench proxy: skipped: the real cocaine-runtime v0.11 is not built (run `make "
              "conformance COCAINE_SHARED=...` once, or set COCAINE_RUNTIME, PY2, PY2SITE)")
        return
    if shutil.which("wrk") is None:
        print("bench proxy: skipped: wrk is not installed")
        return
    sys.path.insert(0, str(ROOT))
    from tests.conformance.realruntime import (AppSpec, OurProxy, RealRuntime, TornadoProxy,
                                               slave_script)

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        root = Path(tmp)
        runtime = RealRuntime(env["COCAINE_RUNTIME"], root / "runtime",
                              {"hello": AppSpec(slave_script(HELLO_SLAVE), profile="one")},
                              {"one": {"pool-limit": 1, "concurrency": 100}})
        runtime.start()
        tornado = TornadoProxy(env["PY2"], env["PY2SITE"], runtime.locator, root)
        ours = OurProxy([runtime.locator], root, options=("--no-access-log",))
        try:
            _start_pinned(tornado, ours)
            urls = {"ours": f"{ours.url}/hello/http", "tornado": f"{tornado.url}/hello/http"}
            pids = {"ours": ours.proc.pid, "tornado": tornado.proc.pid}  # type: ignore[union-attr]
            for url in urls.values():  # warm: the worker is up, the proxies connected
                _wrk(url, 1, 1)
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
            for _ in range(REPS):
                for name, url in urls.items():
                    runs[name].append(_throughput(url, pids[name]))
            latency = {name: _percentiles(url) for name, url in urls.items()}
            direct = _direct(runtime.locator, "hello")
        finally:
            ours.stop()
            tornado.stop()
            runtime.stop()
    _report(runs, latency, direct)


def _start_pinned(tornado: object, ours: object) -> None:
    for front in (tornado, ours):
        front.start()  # type: ignore[attr-defined]
        if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(front.proc.pid, {1})  # type: ignore[attr-defined]


def _report(runs: dict[str, list[tuple[float, float]]], latency: dict[str, tuple[float, float]],
            direct: tuple[float, float]) -> None:
    print(f"hello app (ASGI, one worker) on cocaine-runtime v0.11; wrk -c{IN_FLIGHT}, "
          f"{DURATION:g} s x {REPS}, medians")
    print(f"{'front':<22}{'req/s':>10}{'proxy CPU µs/req':>20}{'p50 µs':>10}{'p99 µs':>10}"
          f"{'added p50':>11}{'added p99':>11}   spread (req/s; CPU)")
    for name, label in (("ours", "cocaine-http proxy"), ("tornado", "tornado proxy (py2)")):
        rates, cpus = [r for r, _ in runs[name]], [c for _, c in runs[name]]
        p50, p99 = latency[name]
        print(f"{label:<22}{statistics.median(rates):>10.0f}{statistics.median(cpus):>20.0f}"
              f"{p50:>10.0f}{p99:>10.0f}{p50 - direct[0]:>11.0f}{p99 - direct[1]:>11.0f}"
              f"   {min(rates):.0f}-{max(rates):.0f}; {min(cpus):.0f}-{max(cpus):.0f}")
    print(f"{'direct service call':<22}{'':>10}{'':>20}{direct[0]:>10.0f}{direct[1]:>10.0f}")
