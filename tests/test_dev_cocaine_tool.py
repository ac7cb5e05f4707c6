"""cocaine-tool v0.11 (Python 2, PyPI cocaine-tools==0.11.7.5) deploys into the dev runtime as
into cocaine-runtime: `app upload`, `profile upload`, `app start` through the node service, then
HTTP through the front, then `app stop`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocaine_http.dev.deploy import main as deploy_main
from tests.plugins.py2 import find_python2

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cocaine-tools==0.11.7.5", "opster==4.1", "cocaine==0.11.1.17", "tornado==4.5.3",
            "msgpack-python==0.4.8")


@pytest.fixture(scope="session")
def cocaine_tool() -> list[str]:
    """argv prefix running cocaine-tool from a site dir installed once (cached in .venv)."""
    python = find_python2()
    if python is None:
        pytest.skip("no Python 2.7 interpreter found")
    target = ROOT / ".venv" / "py2-cocaine-tools-0.11"
    marker = target / ".complete"
    if not marker.exists():
        done = subprocess.run(
            [python, "-m", "pip", "install", "--disable-pip-version-check",
             "--no-warn-conflicts", "--target", str(target), *PACKAGES],
            capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"cannot install cocaine-tools:\n{done.stderr[-3000:]}"
        marker.write_text("ok\n")
    script = target / "bin" / "cocaine-tool"
    launcher = (f"import site, sys; site.addsitedir({str(target)!r}); "
                f"sys.argv = ['cocaine-tool'] + sys.argv[1:]; execfile({str(script)!r})")
    return [python, "-c", launcher]


async def tool(prefix: list[str], *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    process = await asyncio.create_subprocess_exec(
        *prefix, *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


async def test_cocaine_tool_uploads_and_starts_an_app_in_the_dev_runtime(
    cocaine_tool: list[str], dev_runtime_factory: Any, tmp_path: Path
) -> None:
    """The files `cocaine-http init` and `pack` write are the ones cocaine-tool takes."""
    app = tmp_path / "shop"
    app.mkdir()
    (app / "webapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'deployed by cocaine-tool ' + environ['PATH_INFO'].encode()]\n")
    assert deploy_main(["init", "webapp:app", "--dir", str(app), "--python",
                        sys.executable]) == 0
    archive = tmp_path / "shop.tar.gz"
    assert deploy_main(["pack", str(app), "--output", str(archive)]) == 0
    runtime = await dev_runtime_factory(None, app="none")
    port = str(runtime.services.locator_endpoint[1])
    where = ["--host", "127.0.0.1", "--port", port]

    await tool(cocaine_tool, "app", "upload", "--name", "shop", "--manifest",
               str(app / "manifest.json"), "--package", str(archive), *where)
    await tool(cocaine_tool, "profile", "upload", "--name", "shop", "--profile",
               str(app / "profile.json"), *where)
    started = await tool(cocaine_tool, "app", "start", "--name", "shop", "--profile", "shop",
                         *where)
    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
        response = await client.get("/shop/http/hello")
    stopped = await tool(cocaine_tool, "app", "stop", "--name", "shop", *where)

    assert json.loads(started) == {"shop": "the app has been started"}
    assert (response.status_code, response.text) == (200, "deployed by cocaine-tool /hello")
    assert json.loads(stopped) == {"shop": "the app has been stopped"}
    assert runtime.running_apps() == []
