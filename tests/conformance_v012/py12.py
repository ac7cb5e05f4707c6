"""The reference v0.12 Python framework (PyPI cocaine 0.12.14.5) in a venv of its own, as a
session fixture: installed from the package index on first use into ~/.cache/py12-venv
(COCAINE_PY12_VENV moves it), never into the project's venv, since it needs msgpack 0.6.2.
Only a plain module (not a conftest), so the everyday suite can use it too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PY12_VENV = Path(os.environ.get("COCAINE_PY12_VENV", Path.home() / ".cache" / "py12-venv"))
PY12_PACKAGES = ("cocaine==0.12.14.5", "msgpack==0.6.2", "tornado==4.5.3", "six==1.10.0")
HERE = Path(__file__).resolve().parent
#: The reference framework as an HTTP worker and as a client (scripts run with its python).
PY12_WORKER = HERE / "py12_worker.py"
PY12_CLIENT = HERE / "py12_client.py"

#: Our side of the comparison: an ASGI app that answers exactly what py12_worker.py answers.
ECHO_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    message = await receive()
    headers = dict(scope["headers"])
    body = "%s %s %s %s" % (scope["method"], scope["query_string"].decode(),
                            headers.get(b"x-a", b"").decode(), message["body"].decode())
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"Content-Type", b"text/plain"), (b"X-Impl", b"same")]})
    await send({"type": "http.response.body", "body": body.encode()})
'''


@pytest.fixture(scope="session")
def py12() -> Path:
    """The python of a venv holding the reference v0.12 framework (PyPI cocaine 0.12.14.5 on
    msgpack 0.6.2), installed there once; never the project's venv (it needs an old msgpack)."""
    python = PY12_VENV / "bin" / "python"
    probe = [str(python), "-c", "import collections, collections.abc; "
             "collections.MutableMapping = collections.abc.MutableMapping; import cocaine.worker"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(PY12_VENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *PY12_PACKAGES],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"cannot install the v0.12 framework:\n{done.stderr[-3000:]}"
    return python
