# Strategy: a tap between the runtime and our worker. The slave opens a unix socket of its own,
# relays every byte between it and the runtime's endpoint (one thread per direction), and
# appends each read to a JSON-lines file named after the worker's uuid: the exact bytes the
# real runtime sent and our worker answered, with their read boundaries (batching). The worker
# itself runs in the same process with `--endpoint` pointing at the tap, so the runtime still
# spawns, signals and reaps the real worker process.
"""Worker-side interop apps: a tapped HTTP worker and a raw worker that can block its loop."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

#: The tapped slave: the raw ASGI app under `cocaine-http`, its socket traffic recorded.
TAPPED_SLAVE = """\
from tests.conformance.apps.interop import run_tapped, serve_http
sys.exit(run_tapped(sys.argv[1:], serve_http))"""

#: The freezer: a raw worker heartbeating every second whose `freeze` event blocks its loop.
FREEZER_SLAVE = """\
from tests.conformance.apps.interop import run_tapped, serve_freezer
sys.exit(run_tapped(sys.argv[1:], serve_freezer))"""


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def run_tapped(argv: list[str], serve: Callable[[list[str]], int]) -> int:
    """Record argv, cwd and the socket traffic of `serve(argv)` under CONFORMANCE_TAP_DIR."""
    tap_dir = Path(os.environ["CONFORMANCE_TAP_DIR"])
    uuid, endpoint = _option(argv, "--uuid"), _option(argv, "--endpoint")
    base = tap_dir / f"{_option(argv, '--app')}-{uuid}"
    base.with_suffix(".argv.json").write_text(json.dumps(
        {"argv": [sys.argv[0], *argv], "cwd": os.getcwd(), "pid": os.getpid()}))
    tap_path = os.path.join(tempfile.gettempdir(), f"cftap-{os.getpid()}.sock")  # short: AF_UNIX
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(tap_path)
    listener.listen(1)
    record = open(base.with_suffix(".jsonl"), "a", buffering=1)
    lock = threading.Lock()

    def relay(src: socket.socket, dst: socket.socket, direction: str) -> None:
        while True:
            try:
                data = src.recv(1 << 20)
            except OSError:
                data = b""
            with lock:
                record.write(json.dumps({"dir": direction, "t": time.time(),
                                         "hex": data.hex()}) + "\n")
            if not data:
                for sock in (dst, src):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    outgoing: list[threading.Thread] = []

    def accept() -> None:
        worker_side, _ = listener.accept()
        os.unlink(tap_path)
        runtime_side = socket.socket(socket.AF_UNIX)
        runtime_side.connect(endpoint)
        thread = threading.Thread(target=relay, args=(worker_side, runtime_side, "out"),
                                  daemon=True)
        outgoing.append(thread)
        thread.start()
        relay(runtime_side, worker_side, "in")

    threading.Thread(target=accept, daemon=True).start()
    tapped = list(argv)
    tapped[tapped.index("--endpoint") + 1] = tap_path
    status = serve(tapped)
    for thread in outgoing:  # the worker closed its socket: let the last bytes through
        thread.join(5)
    return status


def serve_http(argv: list[str]) -> int:
    from cocaine_http.cli import main

    return main(["tests.conformance.apps.raw_asgi:app", *argv])


def serve_freezer(argv: list[str]) -> int:
    from cocaine_http.aio.worker import Session, Worker

    worker = Worker(argv, heartbeat_interval=1.0)

    @worker.on("ping")
    async def ping(session: Session) -> None:
        async for chunk in session:
            session.write(chunk)
        session.end()

    @worker.on("freeze")
    async def freeze(session: Session) -> None:
        time.sleep(6)  # blocks the loop: no heartbeat leaves for 6 s
        session.write(b"thawed")
        session.end()

    return worker.run()
