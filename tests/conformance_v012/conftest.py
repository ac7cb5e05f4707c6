"""The real cocaine-runtime v0.12.14 as a pytest fixture: the oracle for our v0.12 dialect.

These tests run with `make conformance12`, which builds the runtime (build12.sh, cached) and
sets COCAINE_CONFORMANCE12=1; the everyday `make test` leaves this directory out, since it
needs the runtime's build. Each test module gets its own runtime: a fresh root under tmp, a
locator port and a shared port range picked free for the run, stopped with SIGTERM at the end.
Apps are deployed the way the runtime expects them, through its own storage service (called
with our Client): manifest, profile and app archive, then `node.start_app`.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.services import Client
from tests.conformance.realruntime import free_ports

from .py12 import PY12_VENV, py12  # noqa: F401  (the fixture, for the cross tests)

if os.environ.get("COCAINE_CONFORMANCE12") != "1":
    collect_ignore_glob = ["test_*.py"]

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
#: Where `make conformance12` builds the runtime (COCAINE_CACHE/v0.12, as build12.sh is told).
RUNTIME_ROOT = Path(os.environ.get("COCAINE_CACHE", Path.home() / ".cache" / "cocaine-runtime")) / "v0.12"


class Runtime12:
    """One cocaine-runtime v0.12 process under `root`."""

    def __init__(self, root: Path) -> None:
        binary = os.environ.get("COCAINE_RUNTIME12") or str(RUNTIME_ROOT / "bin" / "cocaine-runtime")
        plugins = os.environ.get("COCAINE_PLUGINS12") or str(RUNTIME_ROOT / "lib" / "cocaine")
        assert Path(binary).exists(), (
            f"no v0.12 runtime at {binary}: run `make conformance12` (it builds it)"
        )
        self.root = root
        self.binary = binary
        self.plugins = plugins
        ports = free_ports(41)
        self.locator_port, self.shared = ports[0], (ports[1], ports[-1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "runtime.log"
        for sub in ("runtime", "spool", "exits", "storage/runlists"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "storage" / "runlists" / "default").write_bytes(pack({}))

    @property
    def locator(self) -> str:
        return f"127.0.0.1:{self.locator_port}"

    def config(self) -> dict[str, Any]:
        root = str(self.root)
        return {
            "version": 4,
            "logging": {"loggers": {"core": [{
                "formatter": {"type": "string",
                              "pattern": "{severity}, {timestamp:.23s}: {message} "
                                         "[{...:{{name}={value}:p}s}]",
                              "sevmap": ["D", "I", "W", "E"]},
                "sinks": [{"type": "console"}]}]}, "severity": "debug"},
            "network": {"endpoint": "127.0.0.1", "hostname": "localhost",
                        "pinned": {"locator": self.locator_port}, "shared": list(self.shared)},
            "paths": {"plugins": [self.plugins], "runtime": f"{root}/runtime"},
            "services": {"locator": {"type": "locator"}, "logging": {"type": "logging"},
                         "storage": {"type": "storage", "args": {"backend": "core"}},
                         "node": {"type": "node::v2", "args": {"runlist": "default"}}},
            "storages": {"core": {"type": "files", "args": {"path": f"{root}/storage"}}},
            "authentications": {"core": {"type": "promiscuous"}},
            "authorizations": {"event": {"type": "disabled"}, "storage": {"type": "disabled"},
                               "unicorn": {"type": "disabled"}},
        }

    def start(self) -> None:
        path = self.root / "config.json"
        path.write_text(json.dumps(self.config()))
        env = dict(os.environ)
        lib = str(Path(self.plugins).parent)
        env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary, "-c", str(path)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the runtime exited:\n{self.log()[-3000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.locator_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the runtime's locator never listened:\n{self.log()[-3000:]}")

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(5)
        self._log.close()
        return rc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_log(self, text: str, timeout: float = 15.0) -> str:
        """The log once it contains `text` (fails with the log's tail after `timeout`); it
        sleeps on the loop, so our own pending writes go out meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            await asyncio.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared in the runtime log:\n{self.log()[-3000:]}")

    # -- deploying -----------------------------------------------------------------------------

    def slave_script(self, name: str, body: str, python: Path = VENV_PYTHON) -> Path:
        """An executable slave: a shebang to `python`, then `body`. The body may use EXITS
        (a directory where it records its exit status) and ROOT (the project)."""
        app_dir = self.root / "apps" / name
        app_dir.mkdir(parents=True, exist_ok=True)
        script = app_dir / "slave"
        script.write_text(
            f"#!{python}\nimport os, sys\nROOT = {str(ROOT)!r}\nEXITS = {str(self.root / 'exits')!r}\n"
            + body
        )
        script.chmod(0o755)
        return app_dir

    def deploy_ours(self, apps: dict[str, str]) -> None:
        """Deploy each {name: module:attr} with our worker as its slave (blocking)."""

        async def deploy() -> None:
            async with Client(self.locator, protocol=V0_12, timeout=20.0) as client:
                for name, target in apps.items():
                    app_dir = self.slave_script(name, OUR_SLAVE.format(target=target))
                    await self.deploy(client, name, app_dir)

        asyncio.run(deploy())

    async def deploy(self, client: Client, name: str, app_dir: Path,
                     profile: dict[str, Any] | None = None, env: dict[str, str] | None = None
                     ) -> None:
        """Upload manifest, profile and archive through the storage service; start the app."""
        profile = {
            "isolate": {"type": "legacy_process", "args": {"spool": str(self.root / "spool")}},
            "heartbeat-timeout": 30, "idle-timeout": 600, "pool-limit": 1, "concurrency": 10,
            "log-output": True, **(profile or {}),
        }
        manifest = {"slave": "slave", "environment": env or {}}  # in the unpacked archive
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            tar.add(app_dir, arcname=".")
        storage = await client.service("storage")
        await storage.write("manifests", name, pack(manifest), ["apps"])
        await storage.write("profiles", name, pack(profile), ["profiles"])
        await storage.write("apps", name, pack(archive.getvalue()), ["apps"])  # a msgpack raw
        node = await client.service("node")
        await node.start_app(name, name)


#: The body of a slave that serves `target` with our worker and records its exit status.
OUR_SLAVE = """
sys.path.insert(0, ROOT)
from cocaine_http.cli import main
rc = main([{target!r}, *sys.argv[1:]])
uuid = sys.argv[sys.argv.index("--uuid") + 1]
with open(os.path.join(EXITS, uuid), "w") as f:
    f.write(str(rc))
sys.exit(rc)
"""


@pytest.fixture(scope="module")
def runtime12(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime12]:
    """A running cocaine-runtime v0.12 (one per test module)."""
    runtime = Runtime12(tmp_path_factory.mktemp("rt12"))
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture
async def client12(runtime12: Runtime12) -> AsyncIterator[Client]:
    """Our Client on the runtime's locator, speaking v0.12."""
    client = Client(runtime12.locator, protocol=V0_12, timeout=15.0)
    yield client
    await client.close()
