"""Cross-implementation: the reference Cocaine v0.11 Python framework (Python 2.7, PyPI
cocaine==0.11.1.17) uses the dev runtime's locator, storage, logging and an app service."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from cocaine_http.protocol.dialect import pack

SCRIPT = Path(__file__).resolve().parent / "py2" / "cocaine_v011_client.py"


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
