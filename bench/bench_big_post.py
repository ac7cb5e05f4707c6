"""Peak memory of a big POST: the dev runtime (front and engine) and its worker.

Starts `cocaine-http dev --max-body-size 2G --workers 1` serving `tests.workers.bounds_apps:app`
(an ASGI app that reads the request body and answers its size), sends one POST of
BENCH_POST_MIB MiB (1024 by default) from this process in 1 MiB writes, and reports the peak
resident size (VmHWM, /proc/<pid>/status) of the dev runtime process and of the worker, before
and after, as a multiple of the body. The body passes through the front (HTTP parsing, the
request frame), the engine's channel to the worker (one message) and the worker's decoder,
request parser and ASGI adapter; every copy of it shows here. No timing is measured.

    python -m bench big_post                  # 1 GiB
    BENCH_POST_MIB=256 python -m bench big_post
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

MIB = 1024 * 1024
APP = "tests.workers.bounds_apps:app"
ROOT = Path(__file__).resolve().parents[1]


def kib(pid: int, key: str) -> int:
    """A /proc/<pid>/status figure in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


class Dev:
    """`cocaine-http dev` on free ports, from the checkout this module belongs to."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cocaine_http", "dev", APP, "--port", "0",
             "--locator-port", "0", "--workers", "1", "--max-body-size", "2G"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.port = 0
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(r"Serving \S+ on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        if not self.port:
            raise RuntimeError("".join(self.lines))
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def worker(self) -> int:
        deadline = time.monotonic() + 60
        while not (pids := children(self.process.pid)):
            if time.monotonic() > deadline:
                raise RuntimeError("no worker:\n" + "".join(self.lines))
            time.sleep(0.1)
        return pids[0]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._collector.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def post(port: int, size: int) -> bytes:
    """POST `size` bytes to /size; the whole response."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /size HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)  # fmt: skip
        chunk = b"y" * MIB
        for offset in range(0, size, MIB):
            sock.sendall(chunk[: size - offset])
        sock.settimeout(600)
        data = bytearray()
        while part := sock.recv(MIB):
            data += part
        return bytes(data)


def measure(size: int) -> dict[str, tuple[int, int]]:
    """{process: (VmHWM KiB before, after)} for one POST of `size` bytes."""
    dev = Dev()
    try:
        worker = dev.worker()
        # a small request first, so that the worker is connected and warm
        assert post(dev.port, 10).startswith(b"HTTP/1.1 200 "), "".join(dev.lines)
        before = {"dev runtime": kib(dev.process.pid, "VmHWM"), "worker": kib(worker, "VmHWM")}
        response = post(dev.port, size)
        body = response.partition(b"\r\n\r\n")[2]
        if not response.startswith(b"HTTP/1.1 200 ") or b"%d" % size not in body:
            raise RuntimeError(response[:300].decode(errors="replace") + "".join(dev.lines))
        after = {"dev runtime": kib(dev.process.pid, "VmHWM"), "worker": kib(worker, "VmHWM")}
        return {name: (before[name], after[name]) for name in before}
    finally:
        dev.stop()


def main() -> None:
    size = int(os.environ.get("BENCH_POST_MIB", "1024")) * MIB
    print(f"POST of {size // MIB} MiB, cocaine-http dev --max-body-size 2G (from {ROOT})")
    print(f"{'process':14s} {'VmHWM before':>14s} {'VmHWM after':>14s} {'after / body':>13s}")
    for name, (before, after) in measure(size).items():
        print(f"{name:14s} {before // 1024:11d} MB {after // 1024:11d} MB "
              f"{after * 1024 / size:12.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
