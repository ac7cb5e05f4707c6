"""A `cocaine-http` command (dev, proxy) as a real child process, for the fixtures that need one.

`ServerProcess(args, ready)` starts `python -m cocaine_http <args>` in the repository, reads its
output (stdout and stderr together) until a line matches `ready`, whose first group is the port it
listens on, then keeps collecting the output in a thread so the process never blocks on a full
pipe. `.said(text)` looks through what it printed, `.kib(key)` reads a /proc/<pid>/status figure
(VmRSS, VmHWM), `.children()` lists its worker processes, `.stop()` sends SIGTERM and waits
(SIGKILL after 30 s).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class ServerProcess:
    """One `python -m cocaine_http ...` child; its output is collected."""

    def __init__(self, args: Sequence[str], ready: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cocaine_http", *args],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.port = 0
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(ready, line)
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
        """A /proc/<pid>/status figure (VmRSS, VmHWM) in KiB, of this process or of `pid`."""
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
        """SIGTERM and wait (SIGKILL after 30 s); returns the exit code (None when killed)."""
        self.terminate()
        try:
            code: int | None = self.wait()
        except subprocess.TimeoutExpired:
            code = None
        self._collector.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code
