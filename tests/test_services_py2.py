"""Cross-implementation: the reference Cocaine v0.11 Python framework (Python 2.7, PyPI
cocaine==0.11.1.17) uses the dev runtime's locator, storage, logging and an app service."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cocaine_http.protocol.dialect import pack

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "py2" / "cocaine_v011_client.py"
PY2_CANDIDATES = ("/root/.pyenv/versions/2.7.18/bin/python", "python2.7", "python2")
PACKAGES = ("cocaine==0.11.1.17", "tornado==4.5.3", "msgpack-python==0.5.6")


def find_python2() -> str | None:
    for candidate in PY2_CANDIDATES:
        path = shutil.which(candidate) if not os.path.isabs(candidate) else candidate
        if path and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="session")
def py2_cocaine() -> tuple[str, str]:
    """(python2.7, site dir) with the reference framework installed there (cached in .venv)."""
    python = find_python2()
    if python is None:
        reason = f"no Python 2.7 interpreter found (looked for {', '.join(PY2_CANDIDATES)})"
        print(reason)
        pytest.skip(reason)
    target = Path(os.environ.get("COCAINE_HTTP_PY2_SITE", ROOT / ".venv" / "py2-cocaine-0.11"))
    marker = target / ".complete"
    if not marker.exists():
        cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-warn-conflicts",
               "--target", str(target), *PACKAGES]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"cannot install the v0.11 framework:\n{done.stderr[-3000:]}"
        marker.write_text("ok\n")
    return python, str(target)


async def test_reference_v011_framework_uses_dev_services(py2_cocaine, dev_services,
                                                           fake_engine):
    """The real PY11 client resolves, calls storage (incl. an error), enqueues to an app and
    logs through our services, seeing exactly what it would see from cocaine-runtime."""
    python, site = py2_cocaine
    dev_services.storage.write("crossns", "preset", b"value", [])
    dev_services.register_app(fake_engine("crossapp", {
        "ping": lambda data, sink: (sink.on_chunk(pack(b"pong:" + data)), sink.on_choke()),
    }))
    host, port = dev_services.locator_endpoint
    env = dict(os.environ, COCAINE_PY2_SITE=site)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)

    proc = await asyncio.create_subprocess_exec(
        python, str(SCRIPT), "--app", "crosstest", "--locator", f"{host}:{port}",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 0, err.decode(errors="replace")
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["storage_api"] == ["find", "read", "remove", "write"]
    assert seen["read"] == ["value"]
    assert seen["find"] == [["key"]]
    assert dev_services.storage.read("crossns", "key") == b"from-py2"
    assert "not been found" in seen["missing"] and "[1]" in seen["missing"]
    assert "service nosuch is not available" in seen["nosuch"]
    assert seen["enqueue"] == ["pong:hi"]
    assert seen["logger"] == "Logger"
    deadline = asyncio.get_running_loop().time() + 5
    while (1, "app/crosstest", "hello from python 2") not in dev_services.log_records:
        assert asyncio.get_running_loop().time() < deadline, list(dev_services.log_records)
        await asyncio.sleep(0.01)
