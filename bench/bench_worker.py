"""Worker overhead per request, in process (no sockets): CPU µs per request.

Feeds pre-encoded sessions (invoke, one 200-byte chunk, choke) to the Channel in 64 KiB reads,
with a transport that accepts writes for free, and answers each with a head chunk, a body chunk
and a choke. Rows: the Channel alone answering from on_choke (the floor), the Worker with a
raw=True factory writing three times (write, write, end) or once (`write_chunks(..., end=True)`,
what the HTTP layer does), the Worker with an async handler (a Task per session), and the
Worker serving a bare ASGI hello app through the ASGI adapter (a request frame per session,
parsed, a scope, a Task, the app). The worker's own cost is the difference from the first row.

In process, a 64 KiB read starts a few hundred sessions at once, so the Task rows also pay for
the cyclic garbage collector (young objects pile up); a worker on a socket with 32 in flight ran
no collection at all under load. Compare rows within one run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack

from cocaine_http import codec
from cocaine_http.aio.channel import Channel
from cocaine_http.aio.loop import loop_name, new_event_loop
from cocaine_http.adapters import accesslog
from cocaine_http.adapters.asgi import ASGIAdapter
from cocaine_http.adapters.wsgi import WSGIAdapter
from cocaine_http.aio.worker import Session, Worker
from cocaine_http.config import Config
from cocaine_http.protocol.dialect import V0_11, raw_header

SESSIONS = 20_000
HEAD = b"\x92\xcc\xc8\x90"
BODY = b"hello"


class _NullTransport:
    def write(self, data: Any) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _stream(payload: bytes = b"x" * 200) -> list[bytes]:
    data = b"".join(
        V0_11.invoke(i, "http") + V0_11.chunk(i, payload) + V0_11.choke(i)
        for i in range(1, SESSIONS + 1)
    )
    return [data[i : i + 65536] for i in range(0, len(data), 65536)]


#: A GET request frame (docs/protocol.md §6.1) as the HTTP proxy sends it, 3 headers, no body.
REQUEST = msgpack.packb(
    ["GET", "/", "1.1", [["Host", "127.0.0.1"], ["User-Agent", "bench"], ["Accept", "*/*"]], b""],
    use_bin_type=False,
)


async def hello_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": BODY})


def hello_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [BODY]


async def _feed(channel: Channel, slices: list[bytes], worker: Worker | None = None) -> float:
    started = time.process_time()
    for piece in slices:
        channel.data_received(piece)
        await asyncio.sleep(0)
    for _ in range(3):
        await asyncio.sleep(0)
    while worker is not None and worker._sessions:  # answers still coming from pool threads
        await asyncio.sleep(0.001)
    return (time.process_time() - started) / SESSIONS * 1e6


async def channel_alone(slices: list[bytes]) -> float:
    channel = Channel()
    channel._transport = _NullTransport()  # type: ignore[assignment]

    def on_choke(sid: int) -> None:
        channel.send(sid, (V0_11.chunk_header(sid, len(HEAD)), HEAD))
        channel.send(sid, [V0_11.chunk_header(sid, len(BODY) + 1), raw_header(len(BODY)), BODY])
        channel.send(sid, V0_11.choke(sid))

    channel.on_choke = on_choke
    return await _feed(channel, slices)


def _worker() -> Worker:
    worker = Worker(["--endpoint", "/unused", "--uuid", "bench"])
    worker.loop = asyncio.get_running_loop()
    worker._attach()
    worker._channel._transport = _NullTransport()  # type: ignore[assignment]
    worker._conn.start(worker.loop.time())
    return worker


def _respond(session: Session) -> None:
    session.write(HEAD)
    session.write([raw_header(len(BODY)), BODY])
    session.end()


async def worker_raw(slices: list[bytes]) -> float:
    worker = _worker()

    def factory(session: Session) -> None:
        session.on_end = lambda: _respond(session)

    worker.on("http", factory, raw=True)
    return await _feed(worker._channel, slices)


async def worker_raw_one_write(slices: list[bytes]) -> float:
    worker = _worker()

    def factory(session: Session) -> None:
        session.on_end = lambda: session.write_chunks([HEAD, [raw_header(len(BODY)), BODY]], True)

    worker.on("http", factory, raw=True)
    return await _feed(worker._channel, slices)


async def worker_task(slices: list[bytes]) -> float:
    worker = _worker()

    @worker.on("http")
    async def handler(session: Session) -> None:
        await session.read()
        session.write(HEAD)
        session.write([raw_header(len(BODY)), BODY])

    return await _feed(worker._channel, slices)


async def worker_asgi(slices: list[bytes], access_log: bool = False) -> float:
    worker = _worker()
    adapter = ASGIAdapter(hello_asgi, Config(access_log=access_log, lifespan="off"), worker)
    await adapter.startup()
    worker.on("http", adapter.session_factory, raw=True)
    return await _feed(worker._channel, slices)


async def worker_asgi_logged(slices: list[bytes]) -> float:
    """The bare ASGI row with the default access log (its stderr fast path; lines to
    /dev/null, written by the log's own thread and counted here)."""
    with _stderr_log():
        cost = await worker_asgi(slices, access_log=True)
        accesslog.flush()
    return cost


async def worker_wsgi(slices: list[bytes], threads: int = 10, access_log: bool = False,
                      app: Callable[..., Any] = hello_wsgi) -> float:
    worker = _worker()
    adapter = WSGIAdapter(app, Config(access_log=access_log, threads=threads), worker)
    await adapter.startup()
    worker.on("http", adapter.session_factory, raw=True)  # as app.py does
    try:
        return await _feed(worker._channel, slices, worker)
    finally:
        await adapter.shutdown()


async def worker_wsgi_inline(slices: list[bytes]) -> float:
    return await worker_wsgi(slices, threads=0)


async def worker_wsgi_logged(slices: list[bytes], threads: int = 10) -> float:
    with _stderr_log():
        return await worker_wsgi(slices, threads=threads, access_log=True)


class _stderr_log:
    """The worker's own stderr handler on the root logger, stderr sent to /dev/null."""

    def __enter__(self) -> None:
        self.saved = sys.stderr
        sys.stderr = open(os.devnull, "w")
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.set_name(accesslog.STDERR_HANDLER)
        self.handler.setFormatter(logging.Formatter(accesslog.RECORD_FORMAT))
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.handler)
        root.setLevel(logging.INFO)

    def __exit__(self, *exc: Any) -> None:
        accesslog.flush()
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)
        sys.stderr.close()
        sys.stderr = self.saved


def main() -> None:
    slices = _stream()
    requests = _stream(REQUEST)
    rows: list[tuple[str, Callable[[list[bytes]], Any]]] = [
        ("channel alone (floor)", channel_alone),
        ("worker, raw=True factory", worker_raw),
        ("worker, raw, write_chunks", worker_raw_one_write),
        ("worker, async handler (Task)", worker_task),
        ("worker, bare ASGI hello", worker_asgi),
        ("worker, bare ASGI, access log", worker_asgi_logged),
        ("worker, bare WSGI, 10 threads", worker_wsgi),
        ("worker, bare WSGI, access log", worker_wsgi_logged),
        ("worker, bare WSGI, --threads 0", worker_wsgi_inline),
    ]
    for kind in ("uvloop", "asyncio"):
        loop = new_event_loop(kind)
        print(f"\nloop {loop_name(loop)}, codec {codec.IMPLEMENTATION}, {SESSIONS} sessions/run")
        print(f"{'path':32s} {'CPU µs/request (median of 5)':>30s}")
        try:
            for label, bench in rows:
                feed = slices if bench in (channel_alone, worker_raw, worker_raw_one_write,
                                           worker_task) else requests
                runs = [loop.run_until_complete(bench(feed)) for _ in range(5)]
                print(f"{label:32s} {statistics.median(runs):30.2f}")
        finally:
            loop.close()


if __name__ == "__main__":
    main()
