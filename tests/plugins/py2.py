"""Shared pytest fixtures: the reference Cocaine v0.11 Python framework under Python 2.7.

`py2_cocaine` finds a Python 2.7 interpreter and installs PyPI cocaine==0.11.1.17 (with the
tornado and msgpack-python it was released against) into a site directory once, cached in
.venv (or at COCAINE_HTTP_PY2_SITE). Tests run the reference client and worker with it to prove
that our runtime pieces speak the real protocol, not only our own dialect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Where a Python 2.7 may be, first found wins.
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
