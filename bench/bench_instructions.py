"""Instructions per request in process, counted by valgrind's callgrind: a deterministic
measure of the worker's own cost, the same whatever else runs on the machine.

Each row runs in a child process under callgrind twice, with one batch and with three batches
of the same sessions (bench_worker's pre-encoded invoke + request frame + choke, in reads of
32 sessions, a transport that discards its writes). The difference, divided by the sessions of
the two extra batches, leaves out start-up and warm-up. Rows:

- the hand-written worker of bench/handwritten_worker.py (msgpack in and out, no sessions, no
  HTTP): what any Python worker costs before the worker's own layers;
- the worker floor: a raw factory answering with one write, no HTTP;
- the bare ASGI and the bare WSGI hello (`--threads 0`: a pool thread's wake-ups would make
  the count depend on the scheduler), without and with the default access log;
- Flask and Django served (`--threads 0`), and each alone: the same app called with the
  environ the worker builds for the same frame, in a loop. Their difference is our cost
  around the framework.

Usage: python -m bench instructions            (every row; needs valgrind, about ten minutes)
       python -m bench.bench_instructions ROW ...   (the rows named: handwritten, floor, asgi, ...)
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

#: Sessions per batch (fewer for the frameworks: they cost several times a bare request).
SESSIONS = {"flask": 2_000, "flask-alone": 2_000, "django": 2_000, "django-alone": 2_000}
DEFAULT_SESSIONS = 8_000
READ = 32


def _slices(sessions: int) -> list[bytes]:
    from bench.bench_worker import REQUEST
    from cocaine_http.protocol.dialect import V0_11

    return [
        b"".join(V0_11.invoke(i, "http") + V0_11.chunk(i, REQUEST) + V0_11.choke(i)
                 for i in range(first, first + READ))
        for first in range(1, sessions + 1, READ)
    ]


def _framework(name: str) -> Any:
    """The bench's hello app of framework `name` ("flask" or "django"), built once."""
    from bench import bench_http

    return {"flask": bench_http._flask, "django": bench_http._django}[name]()


def _served(framework: str) -> Any:
    from bench import bench_worker as bw

    app = _framework(framework)
    return lambda batch: bw.worker_wsgi(batch, threads=0, app=app)


def _alone(framework: str, slices: list[bytes]) -> Any:
    """The app called directly with the environ the worker builds (captured from one request)."""
    from bench import bench_worker as bw

    app = _framework(framework)
    captured: dict[str, Any] = {}

    def grab(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        captured.update(environ)
        start_response("200 OK", [])
        return [b""]

    asyncio.get_event_loop().run_until_complete(bw.worker_wsgi(slices[:1], threads=0, app=grab))

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    async def run(batch: list[bytes]) -> None:
        for _ in range(len(batch) * READ):
            result = app(dict(captured), start_response)
            for _piece in result:
                pass
            result.close()  # as a server must (PEP 3333): both frameworks' iterables have one

    return run


def _handwritten(slices: list[bytes]) -> Any:
    """bench/handwritten_worker.py fed the same reads: the floor of any Python worker."""
    from bench.bench_worker import _NullTransport
    from bench.handwritten_worker import HandwrittenWorker

    async def run(batch: list[bytes]) -> None:
        worker = HandwrittenWorker()
        worker.connection_made(_NullTransport())
        for piece in batch:
            worker.data_received(piece)
            await asyncio.sleep(0)

    return run


def _worker_row(name: str) -> Callable[[list[bytes]], Any]:
    from bench import bench_worker as bw

    rows: dict[str, Callable[[list[bytes]], Any]] = {
        "floor": bw.worker_raw_one_write, "asgi": bw.worker_asgi,
        "asgi-log": bw.worker_asgi_logged, "wsgi": bw.worker_wsgi_inline,
        "wsgi-log": lambda s: bw.worker_wsgi_logged(s, threads=0),
    }
    return rows[name]


ROWS = {
    "handwritten": "hand-written worker (no sessions, no HTTP)",
    "floor": "worker floor (raw factory, one write)",
    "asgi": "bare ASGI hello",
    "asgi-log": "bare ASGI hello, access log",
    "wsgi": "bare WSGI hello, --threads 0",
    "wsgi-log": "bare WSGI hello, --threads 0, access log",
    "flask": "Flask hello served, --threads 0",
    "flask-alone": "Flask hello alone, the worker's environ",
    "django": "Django hello served, --threads 0",
    "django-alone": "Django hello alone, the worker's environ",
}


def child(name: str, batches: int) -> None:
    """Run `batches` batches of row `name` (under callgrind, from measure())."""
    from cocaine_http.aio.loop import new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    slices = _slices(SESSIONS.get(name, DEFAULT_SESSIONS))
    if name in ("flask", "django"):
        run = _served(name)
    elif name in ("flask-alone", "django-alone"):
        run = _alone(name.split("-")[0], slices)
    elif name == "handwritten":
        run = _handwritten(slices)
    else:
        run = _worker_row(name)
    for _ in range(batches):
        loop.run_until_complete(run(slices))


def alone_cpu(calls: int = 4_000, repeats: int = 5) -> float:
    """CPU µs per call of Flask alone (the row "flask-alone", timed instead of counted): the
    median of `repeats` runs of `calls` calls after one to warm up."""
    import statistics
    import time

    from cocaine_http.aio.loop import new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    slices = _slices(calls)
    run = _alone("flask", slices)
    loop.run_until_complete(run(slices))
    figures = []
    for _ in range(repeats):
        started = time.process_time()
        loop.run_until_complete(run(slices))
        figures.append((time.process_time() - started) * 1e6 / (len(slices) * READ))
    return statistics.median(figures)


def _collected(name: str, batches: int, out: str) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         "-m", "bench.bench_instructions", "--child", name, str(batches)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind gave no count for {name}: {done.stderr[-500:]}")
    return int(found.group(1))


def measure(name: str) -> int:
    """Instructions per request of row `name`."""
    with tempfile.TemporaryDirectory(prefix="bench-cg-") as tmp:
        one = _collected(name, 1, os.path.join(tmp, "one"))
        three = _collected(name, 3, os.path.join(tmp, "three"))
    return (three - one) // (2 * SESSIONS.get(name, DEFAULT_SESSIONS))


def main(names: list[str] | None = None) -> None:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts (apt-get install valgrind)")
        return
    chosen = names or list(ROWS)
    print(f"{'path':44s} {'instructions/request':>22s}")
    counts: dict[str, int] = {}
    for name in chosen:
        counts[name] = measure(name)
        print(f"{ROWS[name]:44s} {counts[name]:22,d}", flush=True)
    for framework, label in (("flask", "Flask"), ("django", "Django")):
        if framework in counts and f"{framework}-alone" in counts:
            around = counts[framework] - counts[f"{framework}-alone"]
            print(f"{f'around {label} (served - alone)':44s} {around:22,d}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--alone-cpu"]:  # bench_http's reference row
        print(f"{alone_cpu():.3f}")
    else:
        main(sys.argv[1:])
