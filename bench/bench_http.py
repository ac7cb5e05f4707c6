# Strategy: measure server CPU per request (utime+stime growth of the server's process tree, from
# /proc, divided by completed requests) for the same apps under several servers, in one run,
# interleaved (A, B, C, A, B, C, ...), medians reported, every scenario once with every server's
# access log off and once with it on (each server's default log line, its output to /dev/null):
#
#   * cocaine-http: one worker process, driven by `Engine` below, a minimal load generator that
#     speaks the v0.11 worker protocol over the worker's unix socket with pre-encoded sessions
#     (invoke + request chunk + choke) and keeps ENGINE_IN_FLIGHT of them in flight (as many as
#     wrk's connections), reading the replies into one buffer and skipping chunk payloads unread,
#     as wrk discards a response. It runs on uvloop when installed: on asyncio its own
#     turnaround limited the worker to small batches (about 40k req/s instead of 70k), and each
#     batch costs the worker a wake-up, as wrk is a C loop. Its own CPU per request and the
#     worker's busy share are printed, so that a row the generator limits shows;
#   * the peers a user would pick, driven by wrk on loopback (a small Python HTTP client if wrk
#     is missing): uvicorn (uvloop + httptools) for ASGI apps, gunicorn (sync, one worker) for
#     WSGI apps, and granian (Rust, one worker, its asgi or wsgi interface) for both;
#   * for reference, in a table of their own: bench/handwritten_worker.py under the same Engine
#     (the cost of any Python worker on this socket before sessions and HTTP), and the Flask
#     app called in process with no server (the part of every server's Flask row that is
#     Flask's own).
#
# The ratio column is ours against the cheapest peer of the same row, log setting and
# repetition (median [lowest-highest] of the repetitions). The last table is the worker's memory
# per idle ASGI session (RSS growth over a warm baseline, divided by the sessions held). Servers
# run pinned to CPU 1 and load generators to CPU 0 (taskset) when there are two CPUs. Apps are
# built lazily by the module __getattr__ so that each server process imports only the framework
# it serves.
"""HTTP benchmark: cocaine-http worker vs uvicorn, gunicorn and granian, CPU µs/request."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from subprocess import DEVNULL
from pathlib import Path
from typing import Any

import msgpack

ROOT = Path(__file__).resolve().parent.parent
DURATION = float(os.environ.get("BENCH_HTTP_DURATION", "2.0"))
REPS = int(os.environ.get("BENCH_HTTP_REPS", "2"))
#: Comma-separated label fragments: run only the scenarios whose label contains one of them.
ONLY = [s.strip() for s in os.environ.get("BENCH_HTTP_ONLY", "").split(",") if s.strip()]
IN_FLIGHT = 32
#: Sessions the engine keeps in flight on the worker's socket: as many as wrk's connections
#: by default, so that both sides get batches of the same size (BENCH_HTTP_ENGINE_IN_FLIGHT).
#: The checkout whose cocaine_http the worker runs (BENCH_HTTP_WORKER_ROOT), and another one
#: (BENCH_HTTP_BEFORE_ROOT: an earlier version, driven by this harness) measured in the same
#: run, interleaved, for a before/after column; its bench/bench_http.py must be this one (the
#: worker imports the apps from there).
WORKER_ROOT = os.environ.get("BENCH_HTTP_WORKER_ROOT", str(ROOT))
BEFORE_ROOT = os.environ.get("BENCH_HTTP_BEFORE_ROOT", "")
ENGINE_IN_FLIGHT = int(os.environ.get("BENCH_HTTP_ENGINE_IN_FLIGHT", str(IN_FLIGHT)))
MIB = 1024 * 1024
HELLO = b"Hello world!"
BIG = b"x" * MIB
TICK = os.sysconf("SC_CLK_TCK")

# -- the apps ------------------------------------------------------------------------------


async def hello_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"content-length", b"12")]})
    await send({"type": "http.response.body", "body": HELLO})


async def big_response_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/octet-stream"), (b"content-length", b"1048576")]})
    await send({"type": "http.response.body", "body": BIG})


async def big_request_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def idle_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Takes the request and waits for the disconnect without answering: an idle session."""
    if scope["type"] != "http":
        return
    await receive()
    await receive()


def hello_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [HELLO]


def big_response_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", "1048576")])
    return [BIG]


def _starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def home(request: Any) -> Any:
        return PlainTextResponse("Hello world!")

    return Starlette(routes=[Route("/", home)])


def _flask() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/")
    def home() -> str:
        return "Hello world!"

    return app


def _django() -> Any:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF="bench.bench_http", SECRET_KEY="bench",
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"], INSTALLED_APPS=[],
        USE_TZ=True, LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _urlpatterns() -> Any:
    from django.http import HttpResponse
    from django.urls import path

    return [path("", lambda request: HttpResponse(b"Hello world!", content_type="text/plain"))]


def __getattr__(name: str) -> Any:
    builders = {"starlette_app": _starlette, "flask_app": _flask, "django_app": _django,
                "urlpatterns": _urlpatterns}
    if name in builders:
        value = builders[name]()
        globals()[name] = value
        return value
    raise AttributeError(name)


# (label, app attribute, interface, method, body size, cocaine-http extra options); a row with
# extra options reuses its base row's peer figures.
SCENARIOS = [
    ("bare ASGI hello", "hello_asgi", "asgi", "GET", 0, ()),
    ("Starlette hello", "starlette_app", "asgi", "GET", 0, ()),
    ("bare WSGI hello", "hello_wsgi", "wsgi", "GET", 0, ()),
    ("bare WSGI hello, --threads 0", "hello_wsgi", "wsgi", "GET", 0, ("--threads", "0")),
    ("Flask hello", "flask_app", "wsgi", "GET", 0, ()),
    ("Flask hello, --threads 0", "flask_app", "wsgi", "GET", 0, ("--threads", "0")),
    ("Django hello", "django_app", "wsgi", "GET", 0, ()),
    ("1 MiB response (ASGI)", "big_response_asgi", "asgi", "GET", 0, ()),
    ("1 MiB response (ASGI), --loop asyncio", "big_response_asgi", "asgi", "GET", 0,
     ("--loop", "asyncio")),
    ("1 MiB response (WSGI)", "big_response_wsgi", "wsgi", "GET", 0, ()),
    ("1 MiB request body (ASGI)", "big_request_asgi", "asgi", "POST", MIB, ()),
    ("1 MiB request body (ASGI), --no-keep-memory", "big_request_asgi", "asgi", "POST", MIB,
     ("--no-keep-memory",)),
]
#: The peers of each interface (BENCH_HTTP_PEERS=uvicorn,granian,... runs only those listed;
#: "none" measures cocaine-http alone, to compare two versions of it).
_CHOSEN = os.environ.get("BENCH_HTTP_PEERS", "uvicorn,gunicorn,granian").split(",")
PEERS = {kind: tuple(p for p in peers if p in _CHOSEN) for kind, peers in
         {"asgi": ("uvicorn", "granian"), "wsgi": ("gunicorn", "granian")}.items()}
#: Access log settings every scenario runs with (BENCH_HTTP_LOG=off or on to run one).
LOGS = [mode == "on" for mode in ("off", "on")
        if os.environ.get("BENCH_HTTP_LOG", mode) == mode]

# -- /proc ---------------------------------------------------------------------------------


def tree_cpu(pid: int) -> float:
    """Seconds of utime+stime of a process, its threads and its descendants."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack += [int(x) for x in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / TICK


def pinned(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def pin_self(cpu: int) -> None:
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


# -- cocaine-http side ---------------------------------------------------------------------


class Engine(asyncio.BufferedProtocol):
    """A minimal v0.11 engine: echoes heartbeats and keeps `in_flight` sessions going.

    It reads into one reused buffer and walks the worker's messages by their headers, skipping
    chunk payloads without touching them (as wrk reads and discards a response), so that a
    1 MiB response costs the generator no copies: with msgpack.Unpacker it copied every body
    twice (into the unpacker's buffer, then out as bytes), ran at 100 % of its CPU and left the
    worker idle half of the time, waiting for the socket to drain.
    """

    def __init__(self, request: bytes, in_flight: int) -> None:
        self.request = request
        self.in_flight = in_flight
        self.buffer = bytearray(BUFFER)
        self.view = memoryview(self.buffer)
        self.begin = self.end = 0  # unparsed bytes are buffer[begin:end]
        self.skip = 0  # payload bytes of the current chunk still to come
        self.transport: Any = None
        self.next_id = 1
        self.done = 0
        self.errors = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.running = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def start(self) -> None:
        self.running = True
        for _ in range(self.in_flight):
            self.send_session()

    def send_session(self) -> None:
        sid = self.next_id
        self.next_id += 1
        sid_b = msgpack.packb(sid)
        head = b"\x93\x04" + sid_b + b"\x91" + _raw_header(len(self.request))
        self.transport.writelines([
            b"\x93\x03" + sid_b + b"\x91\xa4http", head, self.request,
            b"\x93\x06" + sid_b + b"\x90",
        ])

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.begin == self.end:
            self.begin = self.end = 0
        elif len(self.buffer) - self.end < BUFFER // 4:  # move a partial message to the front
            tail = self.end - self.begin
            self.buffer[:tail] = self.buffer[self.begin:self.end]
            self.begin, self.end = 0, tail
        return self.view[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        buf, p, end = self.buffer, self.begin, self.end
        if self.skip:
            taken = min(self.skip, end - p)
            self.skip -= taken
            p += taken
        while end - p >= 4:  # the shortest message, [id, session, []], is 4 bytes
            if buf[p] != 0x93:
                raise RuntimeError(f"unexpected byte {buf[p]:#x} from the worker")
            mid, tag = buf[p + 1], buf[p + 2]
            q = p + 3 + (0 if tag < 0x80 else _UINT_WIDTH[tag])
            if q >= end:
                break
            args = buf[q]
            if args == 0x90:
                p = q + 1
                if mid == 6:
                    self.done += 1
                    if self.running:
                        self.send_session()
                elif mid == 1:
                    self.transport.write(b"\x93\x01\x00\x90")
                    if not self.ready.done():
                        self.ready.set_result(None)
                continue
            if args == 0x91 and mid == 4 and q + 1 < end:
                tag = buf[q + 1]
                if 0xA0 <= tag <= 0xBF:
                    size, q = tag & 0x1F, q + 2
                else:
                    width = _RAW_WIDTH.get(tag, 0)
                    if not width:
                        raise RuntimeError(f"unexpected chunk header {tag:#x} from the worker")
                    if q + 2 + width > end:
                        break
                    size = int.from_bytes(buf[q + 2:q + 2 + width], "big")
                    q += 2 + width
                if q + size > end:
                    self.skip = q + size - end
                    p = end
                    break
                p = q + size
                continue
            after = self._other(p, end)  # an error or anything else: rare, decoded by msgpack
            if after is None:
                break
            p = after
        self.begin = p

    def _other(self, p: int, end: int) -> int | None:
        """Decode one message at p with msgpack; its end, or None until it is complete."""
        unpacker = msgpack.Unpacker(raw=True)
        unpacker.feed(self.view[p:end])
        try:
            mid, _sid, _args = unpacker.unpack()
        except msgpack.OutOfData:
            return None
        if mid == 5:
            self.errors += 1
        return p + unpacker.tell()


BUFFER = 256 * 1024
_UINT_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_RAW_WIDTH = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}


def _raw_header(n: int) -> bytes:
    if n < 32:
        return bytes([0xA0 | n])
    if n < 0x10000:
        return b"\xda" + n.to_bytes(2, "big")
    return b"\xdb" + n.to_bytes(4, "big")


async def _connected(engine: Any, proc: Any) -> Engine:
    """The engine side of the worker's connection, once it connected (`engine()` returns
    it, or None before); RuntimeError when the worker exits or takes 30 s."""
    deadline = time.monotonic() + 30
    while engine() is None:
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker did not connect (see its stderr: run it by hand)")
        await asyncio.sleep(0.01)
    return engine()  # type: ignore[no-any-return]


def request_frame(method: str, body_size: int) -> bytes:
    headers = [["Host", "127.0.0.1"], ["User-Agent", "bench"], ["Accept", "*/*"]]
    if body_size:
        headers.append(["Content-Length", str(body_size)])
    return msgpack.packb([method, "/", "1.1", headers, b"x" * body_size], use_bin_type=False)


#: run_worker's target for bench/handwritten_worker.py: the floor of any Python worker (no
#: sessions, no HTTP), measured on the same socket with the same generator.
HANDWRITTEN = "handwritten"
HANDWRITTEN_LABEL = "hand-written worker (asyncio + msgpack, no sessions, no HTTP)"


FLASK_ALONE_LABEL = ("Flask hello alone, in process: the app called with the worker's "
                     "environ, pinned like the servers")


def flask_alone() -> tuple[float, float]:
    """(0, CPU µs per call) of the Flask row's app with no server at all, in a child process
    on the servers' CPU: the part of every server's Flask figure that is Flask's own."""
    done = subprocess.run([*pinned(1), sys.executable, "-m", "bench.bench_instructions",
                           "--alone-cpu"], cwd=str(ROOT), capture_output=True, text=True,
                          check=True)
    return 0.0, float(done.stdout.split()[-1])


async def run_worker(target: str, method: str, body: int, extra: tuple[str, ...],
                     log: bool = False, root: str = WORKER_ROOT) -> tuple[float, float, float]:
    """(requests/s, CPU µs/request, the load generator's own CPU µs/request) of one
    cocaine-http worker process (or of the hand-written worker, target HANDWRITTEN)."""
    loop = asyncio.get_running_loop()
    tmp = tempfile.mkdtemp(prefix="bench-http-")
    path = os.path.join(tmp, "engine.sock")
    engine: Engine | None = None

    def factory() -> Engine:
        nonlocal engine
        engine = Engine(request_frame(method, body), ENGINE_IN_FLIGHT)
        return engine

    server = await loop.create_unix_server(factory, path)
    logging = ("--access-log", "--log-level", "info") if log else (
        "--no-access-log", "--log-level", "warning")
    program = ["-m", "bench.handwritten_worker"] if target == HANDWRITTEN else [
        "-m", "cocaine_http", f"bench.bench_http:{target}", *logging, *extra]
    argv = [*pinned(1), sys.executable, *program, "--app", "bench",
            "--endpoint", path, "--locator", "127.0.0.1:10053", "--uuid", "bench-worker"]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=root, stdout=DEVNULL,
                                                stderr=DEVNULL)
    try:
        engine = await _connected(lambda: engine, proc)
        await asyncio.wait_for(engine.ready, 30)
        engine.start()
        await asyncio.sleep(0.3)  # warm-up
        cpu0, n0, t0 = tree_cpu(proc.pid), engine.done, time.perf_counter()
        gen0 = time.process_time()
        await asyncio.sleep(DURATION)
        gen1 = time.process_time()
        cpu1, n1, t1 = tree_cpu(proc.pid), engine.done, time.perf_counter()
        engine.running = False
        if engine.errors:
            raise RuntimeError(f"worker answered {engine.errors} sessions with errors")
    finally:
        proc.terminate()
        await proc.wait()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    count = n1 - n0
    return (count / (t1 - t0), (cpu1 - cpu0) * 1e6 / max(count, 1),
            (gen1 - gen0) * 1e6 / max(count, 1))


#: Idle sessions opened before the baseline is read (warms the worker's caches and pools),
#: and the counts of idle sessions measured above it.
IDLE_WARM = 200
IDLE_COUNTS = (1_000, 10_000)


def _rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _settle(pid: int) -> None:
    """Wait until the worker stops using CPU (it has taken every session sent so far)."""
    before = tree_cpu(pid)
    while True:
        await asyncio.sleep(0.3)
        now = tree_cpu(pid)
        if now - before < 0.01:
            return
        before = now


async def idle_memory(root: str = WORKER_ROOT) -> list[tuple[int, float]]:
    """(sessions, RSS growth per session in bytes) of a worker holding idle ASGI sessions:
    each one's request taken by an app now awaiting receive() for the disconnect."""
    loop = asyncio.get_running_loop()
    tmp = tempfile.mkdtemp(prefix="bench-http-")
    path = os.path.join(tmp, "engine.sock")
    engine: Engine | None = None

    def factory() -> Engine:
        nonlocal engine
        engine = Engine(request_frame("GET", 0), 0)
        return engine

    server = await loop.create_unix_server(factory, path)
    argv = [*pinned(1), sys.executable, "-m", "cocaine_http", "bench.bench_http:idle_asgi",
            "--no-access-log", "--log-level", "warning", "--app", "bench", "--endpoint", path,
            "--locator", "127.0.0.1:10053", "--uuid", "bench-worker"]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=root, stdout=DEVNULL,
                                                stderr=DEVNULL)
    results = []
    try:
        engine = await _connected(lambda: engine, proc)
        await asyncio.wait_for(engine.ready, 30)
        for _ in range(IDLE_WARM):
            engine.send_session()
        await _settle(proc.pid)
        base, opened = _rss(proc.pid), 0
        for count in IDLE_COUNTS:
            for _ in range(count - opened):
                engine.send_session()
            opened = count
            await _settle(proc.pid)
            if engine.done or engine.errors:
                raise RuntimeError("the worker ended idle sessions")
            results.append((count, (_rss(proc.pid) - base) / count))
    finally:
        proc.terminate()
        await proc.wait()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def _run_engine(main: Any) -> Any:
    """Run the load generator on uvloop when installed (a slow generator hands the worker
    small batches, and the worker then pays a wake-up for every few requests)."""
    from cocaine_http.aio.loop import new_event_loop

    loop = new_event_loop("auto")
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


# -- uvicorn / gunicorn side ---------------------------------------------------------------


def rival_command(server: str, interface: str, target: str, fd: int, port: int, log: bool
                  ) -> list[str]:
    app = f"bench.bench_http:{target}"
    level = "info" if log else "warning"
    if server == "uvicorn":
        # uvicorn's own --fd assumes a unix socket (no TCP_NODELAY then): hand it the socket.
        code = ("import socket, sys, uvicorn; s = socket.socket(fileno=int(sys.argv[1])); "
                "uvicorn.Server(uvicorn.Config(sys.argv[2], loop='uvloop', http='httptools', "
                f"access_log={log}, log_level='{level}', lifespan='off')).run(sockets=[s])")
        return [sys.executable, "-c", code, str(fd), app]
    if server == "granian":  # binds its own socket: the port was free a moment ago
        return [sys.executable, "-m", "granian", "--interface",
                "asginl" if interface == "asgi" else "wsgi", "--workers", "1", "--host",
                "127.0.0.1", "--port", str(port), "--no-ws", "--http", "1", "--loop", "uvloop",
                "--log-level", level, "--access-log" if log else "--no-access-log", app]
    access = ["--access-logfile", "-"] if log else []
    return [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "--bind", f"fd://{fd}",
            "--log-level", level, *access, app]


def run_rival(server: str, interface: str, target: str, method: str, body: int, log: bool
              ) -> tuple[float, float]:
    """(requests/s, CPU µs/request) of a peer server driven by wrk."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if server == "granian":
        sock.close()
        fds: list[int] = []
    else:
        sock.listen(1024)
        fds = [sock.fileno()]
    command = rival_command(server, interface, target, fds[0] if fds else -1, port, log)
    proc = subprocess.Popen([*pinned(1), *command], cwd=str(ROOT), pass_fds=fds,
                            stdout=DEVNULL, stderr=DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, method, body)
        load(url, method, body, 0.3)
        cpu0 = tree_cpu(proc.pid)
        count, elapsed = load(url, method, body, DURATION)
        cpu1 = tree_cpu(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
        sock.close()
    return count / elapsed, (cpu1 - cpu0) * 1e6 / max(count, 1)


def _wait_http(url: str, method: str, body: int) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while True:
        try:
            data = b"x" * body if body else None
            urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def load(url: str, method: str, body: int, duration: float) -> tuple[int, float]:
    """Drive `url` for `duration` seconds: (completed requests, elapsed seconds)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return _python_load(url, method, body, duration)
    argv = [*pinned(0), wrk, "-t1", f"-c{IN_FLIGHT}", f"-d{max(duration, 1):.0f}s", url]
    script = None
    if method != "GET":
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(f'wrk.method = "{method}"\nwrk.body = string.rep("x", {body})\n'
                     f'wrk.headers["Content-Type"] = "application/octet-stream"\n')
        script.close()
        argv[-1:-1] = ["-s", script.name]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    finally:
        if script is not None:
            os.unlink(script.name)
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not match or "Non-2xx" in out or "Socket errors" in out and "timeout" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    seconds = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    return int(match.group(1)), seconds


def _python_load(url: str, method: str, body: int, duration: float) -> tuple[int, float]:
    """A small keep-alive HTTP/1.1 load generator, used when wrk is not installed."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    request = (f"{method} / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {body}\r\n\r\n"
               ).encode() + b"x" * body

    async def client(deadline: float) -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        count = 0
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            count += 1
        writer.close()
        return count

    async def main() -> tuple[int, float]:
        start = time.perf_counter()
        counts = await asyncio.gather(*[client(start + duration) for _ in range(IN_FLIGHT)])
        return sum(counts), time.perf_counter() - start

    return asyncio.run(main())


# -- report --------------------------------------------------------------------------------


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f}"


def main() -> None:
    pin_self(0)
    loader = "wrk" if shutil.which("wrk") else "python load generator (wrk not installed)"
    print(f"{REPS} interleaved runs of {DURATION:.0f} s each; {ENGINE_IN_FLIGHT} sessions in "
          f"flight on the worker's socket, peers driven by {loader} with {IN_FLIGHT} "
          f"connections; pinning: {'taskset' if pinned(1) else 'none'}")
    results: dict[tuple[str, bool, str], list[tuple[float, ...]]] = {}
    scenarios = [s for s in SCENARIOS if not ONLY or any(o in s[0] for o in ONLY)]
    floor = not ONLY or any(o in HANDWRITTEN_LABEL for o in ONLY)
    alone = not ONLY or any(o in FLASK_ALONE_LABEL for o in ONLY)
    for _ in range(REPS):
        if floor:
            run = _run_engine(run_worker(HANDWRITTEN, "GET", 0, ()))
            results.setdefault((HANDWRITTEN_LABEL, False, "ours"), []).append(run)
        if alone:
            results.setdefault((FLASK_ALONE_LABEL, False, "ours"), []).append(flask_alone())
        for label, target, interface, method, body, extra in scenarios:
            for log in LOGS:
                run: tuple[float, ...] = _run_engine(run_worker(target, method, body, extra, log))
                results.setdefault((label, log, "ours"), []).append(run)
                if BEFORE_ROOT:
                    run = _run_engine(run_worker(target, method, body, extra, log, BEFORE_ROOT))
                    results.setdefault((label, log, "before"), []).append(run)
                if extra:  # rows with extra options share their base row's peer figures
                    continue
                for peer in PEERS[interface]:
                    run = run_rival(peer, interface, target, method, body, log)
                    results.setdefault((label, log, peer), []).append(run)
    print()
    print("Ratio: ours against the cheapest peer of the same repetition, median of the "
          "repetitions [lowest-highest]; busy: the worker's CPU share (req/s x µs/req); "
          "generator: the load generator's own CPU per request.")
    print()
    before = " before µs/req | before ratio |" if BEFORE_ROOT else ""
    print(f"| scenario | access log | cocaine-http µs/req | peers µs/req | ratio vs cheapest "
          f"peer |{before} cocaine-http req/s | worker busy | generator µs/req |")
    print("|---|---|---|---|---|" + "---|---|" * bool(BEFORE_ROOT) + "---|---|---|")
    for label, target, interface, *_ in scenarios:
        base = next(s[0] for s in SCENARIOS if s[1] == target and not s[5])
        for log in LOGS:
            ours = results[(label, log, "ours")]
            runs = {peer: results[(base, log, peer)] for peer in PEERS[interface]
                    if (base, log, peer) in results}
            listed = ", ".join(f"{_name(p)} {statistics.median(r[1] for r in rs):,.1f}"
                               for p, rs in runs.items())
            row = f"| {label} | {'on' if log else 'off'} | {_median([r[1] for r in ours])} | "
            row += f"{listed} | {_ratio(ours, runs)} |"
            if BEFORE_ROOT:
                earlier = results[(label, log, "before")]
                row += f" {_median([r[1] for r in earlier])} | {_ratio(earlier, runs)} |"
            busy = statistics.median(r[0] * r[1] / 1e6 for r in ours)
            print(f"{row} {_median([r[0] for r in ours])} | {busy:.0%} | "
                  f"{_median([r[2] for r in ours])} |", flush=True)
    if floor or alone:
        print()
        print("| reference | CPU µs per request or call |")
        print("|---|---|")
    if floor:
        runs = results[(HANDWRITTEN_LABEL, False, "ours")]
        print(f"| {HANDWRITTEN_LABEL}, on the same socket and generator | "
              f"{_median([r[1] for r in runs])} |", flush=True)
    if alone:
        calls = results[(FLASK_ALONE_LABEL, False, "ours")]
        print(f"| {FLASK_ALONE_LABEL} | {_median([c[1] for c in calls])} |", flush=True)
    if not ONLY or any(o in "idle ASGI sessions" for o in ONLY):
        print()
        roots = [("cocaine-http", WORKER_ROOT)] + [("before", BEFORE_ROOT)] * bool(BEFORE_ROOT)
        print("| idle ASGI sessions held (app awaiting receive()) | "
              + " | ".join(f"{name} RSS growth per session" for name, _ in roots) + " |")
        print("|---|" + "---|" * len(roots))
        figures = [_run_engine(idle_memory(root)) for _, root in roots]
        for i, (count, _) in enumerate(figures[0]):
            print(f"| {count:,} | " + " | ".join(f"{f[i][1] / 1024:.1f} KiB" for f in figures)
                  + " |", flush=True)


def _ratio(mine: list[tuple[float, ...]], peers: dict[str, list[tuple[float, ...]]]) -> str:
    """Each repetition's CPU per request over its cheapest peer's: median [lowest-highest]."""
    if not peers:
        return "-"
    ratios = [run[1] / min(rs[i][1] for rs in peers.values()) for i, run in enumerate(mine)]
    return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"


def _name(peer: str) -> str:
    return {"uvicorn": "uvicorn+httptools", "gunicorn": "gunicorn sync",
            "granian": "granian"}[peer]


if __name__ == "__main__":
    main()
