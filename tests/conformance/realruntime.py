# Strategy: the real cocaine-runtime v0.11, its tornado HTTP proxy and `cocaine-http dev`, each a
# subprocess started on free loopback ports and stopped with SIGTERM then a wait. Apps are
# deployed the way /work/shared/cocaine-runtime/README.md shows: msgpack files in the `files`
# storage (manifests, profiles, tar.gz archives, the runlist), written before the runtime starts;
# each app's slave is a generated executable Python script whose shebang is the project's
# interpreter, so the runtime's fork + execve runs exactly what a deployment would.
"""Processes of the conformance suite: the real runtime, its proxy, the dev runtime."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(Path(sys.executable))
#: Ports are drawn from here: under the kernel's ephemeral range (32768-60999 by default), so a
#: client socket of another test can never hold one of them.
PORT_LOW, PORT_HIGH = 20000, 32000


def _bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """`count` consecutive free loopback ports outside the ephemeral range."""
    for _ in range(200):
        start = random.randrange(PORT_LOW, PORT_HIGH - count)
        ports = list(range(start, start + count))
        if all(_bindable(port, host) for port in ports):
            return ports
    raise RuntimeError("no free port block found")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str,
              host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> int | None:
    """SIGTERM, wait; SIGKILL only if it outlives the timeout. Returns the exit status."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"pid {proc.pid} ignored SIGTERM for {timeout}s") from None


def pack(value: Any) -> bytes:
    """The files storage's encoding: msgpack with old-style raw strings."""
    return msgpack.packb(value, use_bin_type=False)


def slave_script(body: str) -> str:
    """An executable slave: the project's interpreter, the checkout importable."""
    return f"#!{PYTHON}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n{body}\n"


def http_slave(target: str, *args: str) -> str:
    """The slave of an HTTP app: `cocaine-http target args` plus the runtime's arguments."""
    argv = [target, *args]
    return slave_script(
        "from cocaine_http.cli import main\n"
        f"sys.exit(main({argv!r} + sys.argv[1:]))"
    )


def script_slave(path: Path) -> str:
    """The slave of a worker script: run it as `python path` with the runtime's arguments."""
    return slave_script(
        "import runpy\n"
        f"sys.argv[0] = {str(path)!r}\n"
        f"runpy.run_path({str(path)!r}, run_name='__main__')"
    )


@dataclass
class AppSpec:
    """One app: its slave script, extra files, manifest environment and profile name."""

    slave: str
    profile: str = "default"
    environment: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    #: started at boot (in the runlist), else only stored, for `node.start_app`
    runlist: bool = True


def app_archive(spec: AppSpec) -> bytes:
    """The tar.gz the runtime unpacks into <spool>/<app>: the slave (mode 755) and files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text, mode in [("slave", spec.slave, 0o755),
                                 *((n, t, 0o644) for n, t in spec.files.items())]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


PROFILE: dict[str, Any] = {
    "heartbeat-timeout": 30, "startup-timeout": 20, "idle-timeout": 600,
    "termination-timeout": 5, "pool-limit": 2, "concurrency": 10, "log-output": True,
}


class RealRuntime:
    """cocaine-runtime v0.11 in `root` (config, storage, spool, run dir, log), on `host` (a
    loopback address: two runtimes on 127.0.0.1 and 127.0.0.2 make a cluster on one machine)."""

    def __init__(self, binary: str, root: Path, apps: dict[str, AppSpec],
                 profiles: dict[str, dict[str, Any]] | None = None,
                 host: str = "127.0.0.1") -> None:
        self.binary = binary
        self.root = root
        self.apps = apps
        self.host = host
        self.profiles = {"default": {}, **(profiles or {})}
        self.locator_port, *self.service_ports = free_ports(21, host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "log" / "cocaine.log"

    @property
    def locator(self) -> str:
        return f"{self.host}:{self.locator_port}"

    def write_config(self) -> Path:
        for sub in ("run", "spool", "log", "plugins"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        config = {
            "version": 2,
            "paths": {"plugins": str(self.root / "plugins"), "runtime": str(self.root / "run")},
            "locator": {"hostname": self.host, "endpoint": self.host,
                        "port": self.locator_port,
                        "port-range": [self.service_ports[0], self.service_ports[-1]]},
            "services": {"logging": {"type": "logging"},
                         "storage": {"type": "storage", "args": {"backend": "core"}},
                         "node": {"type": "node", "args": {"runlist": "default"}}},
            "storages": {"core": {"type": "files", "args": {"path": str(self.root / "storage")}}},
            "loggers": {"core": {"type": "files",
                                 "args": {"path": str(self.log_path), "verbosity": "debug"}}},
        }
        path = self.root / "cocaine.conf"
        path.write_text(json.dumps(config, indent=2))
        return path

    def write_storage(self) -> None:
        storage = self.root / "storage"
        for sub in ("manifests", "profiles", "apps", "runlists"):
            (storage / sub).mkdir(parents=True, exist_ok=True)
        spool = {"isolate": {"type": "process", "args": {"spool": str(self.root / "spool")}}}
        for name, overrides in self.profiles.items():
            (storage / "profiles" / name).write_bytes(pack({**PROFILE, **spool, **overrides}))
        for name, spec in self.apps.items():
            manifest = {"slave": "slave", "environment": spec.environment}
            (storage / "manifests" / name).write_bytes(pack(manifest))
            (storage / "apps" / name).write_bytes(pack(app_archive(spec)))
        runlist = {name: spec.profile for name, spec in self.apps.items() if spec.runlist}
        (storage / "runlists" / "default").write_bytes(pack(runlist))

    def start(self) -> None:
        config = self.write_config()
        self.write_storage()
        out = open(self.root / "log" / "stdout.log", "wb")
        self.proc = subprocess.Popen([self.binary, "-c", str(config)], stdout=out,
                                     stderr=subprocess.STDOUT, cwd=self.root)
        out.close()
        wait_port(self.locator_port, self.proc, 20, "cocaine-runtime", self.host)

    def stop(self) -> int | None:
        return stop(self.proc, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def leftovers(self, timeout: float = 10.0) -> list[int]:
        """Live processes still working in this runtime's spool (its workers), after a wait."""
        spool = str(self.root / "spool")
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(spool):
                        if (entry / "stat").read_text().split()[2] != "Z":
                            found.append(int(entry.name))
                except OSError:
                    continue
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


PROXY_LAUNCHER = """\
import os, site, sys
site.addsitedir(os.environ["PY2SITE"])
port = int(sys.argv[1])
sys.argv[1:] = ["--locator", sys.argv[2]]  # cocaine.asio.service reads it at import
import tornado.httpserver, tornado.ioloop
from cocaine.proxy.proxy import CocaineProxy
# The default service cache (5): with cache=1 the proxy's own rotation empties the pool for
# about two seconds every 10-20 s, and requests in that gap get a reset connection.
proxy = CocaineProxy(port=port)
server = tornado.httpserver.HTTPServer(proxy.handle_request, no_keep_alive=False, xheaders=True)
server.listen(port, address="127.0.0.1")
tornado.ioloop.IOLoop.instance().start()
"""


class TornadoProxy:
    """The tornado HTTP proxy of cocaine-tools v0.11, bound to 127.0.0.1."""

    def __init__(self, py2: str, py2site: str, locator: str, root: Path) -> None:
        self.py2, self.py2site, self.locator, self.root = py2, py2site, locator, root
        (self.port,) = free_ports(1)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        launcher = self.root / "proxy_launcher.py"
        launcher.write_text(PROXY_LAUNCHER)
        out = open(self.root / "proxy.log", "wb")
        env = {**os.environ, "PY2SITE": self.py2site}
        self.proc = subprocess.Popen([self.py2, str(launcher), str(self.port), self.locator],
                                     stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        wait_port(self.port, self.proc, 20, "tornado proxy")

    def stop(self) -> int | None:
        return stop(self.proc)

    def log(self) -> str:
        return (self.root / "proxy.log").read_text(errors="replace")


class DevProcess:
    """`cocaine-http dev ...` as a user types it, on a free front port and locator port."""

    def __init__(self, args: list[str], root: Path, name: str) -> None:
        self.args, self.root, self.name = args, root, name
        self.port, self.locator_port = free_ports(2)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / f"dev-{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [str(Path(PYTHON).parent / "cocaine-http"), "dev", "--port", str(self.port),
                   "--locator-port", str(self.locator_port), "--app-name", self.name,
                   "--log-level", "debug", *self.args]
        out = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        out.close()
        wait_port(self.port, self.proc, 30, f"cocaine-http dev ({self.name})")

    def stop(self) -> int | None:
        return stop(self.proc, timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class OurProxy:
    """`cocaine-http proxy --locator ...` on a free loopback port (one process: --workers 1,
    so its RSS is the front's)."""

    def __init__(self, locators: list[str], root: Path, name: str = "proxy",
                 options: tuple[str, ...] = ()) -> None:
        self.locators, self.root, self.name, self.options = locators, root, name, options
        (self.port,) = free_ports(1)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / f"ours-{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [str(Path(PYTHON).parent / "cocaine-http"), "proxy", "--locator",
                   ",".join(self.locators), "--port", str(self.port), *self.options]
        out = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        out.close()
        wait_port(self.port, self.proc, 30, f"cocaine-http proxy ({self.name})")

    def rss_kib(self) -> int:
        """The process's resident set now, in KiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> int | None:
        return stop(self.proc, timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
