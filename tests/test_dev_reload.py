"""`cocaine-http dev --reload`: code changes restart the workers; requests in flight finish."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cocaine_http.dev.cli import reload_filter
from tests.test_dev_cli import interrupt, start_dev

APP = '''import os, time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        open("entered", "w").close()
        while not os.path.exists("release"):
            time.sleep(0.02)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [VERSION + environ["PATH_INFO"].encode()]

VERSION = b"%s"
'''


class TestFilter:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            pytest.param("/app/views.py", True, id="python-file"),
            pytest.param("/app/notes.txt", False, id="not-included"),
            pytest.param("/app/__pycache__/views.cpython-311.pyc", False, id="bytecode"),
            pytest.param("/app/.git/config.py", False, id="hidden-folder"),
            pytest.param("/app/skip/me.py", False, id="user-exclude"),
        ],
    )
    def test_include_and_exclude_globs(self, path: str, expected: bool) -> None:
        """A path counts when its name matches an include glob and no part an exclude glob."""
        accept = reload_filter(["*.py"], [".*", "*.py[cod]", "__pycache__", "skip"])

        assert accept(None, path) is expected

    def test_excludes_apply_below_the_watched_folder_only(self) -> None:
        """A project under a hidden folder (~/.local/app) is still watched."""
        accept = reload_filter(["*.py"], [".*"], ["/home/u/.local/app"])

        assert accept(None, "/home/u/.local/app/views.py") is True
        assert accept(None, "/home/u/.local/app/.venv/x.py") is False


async def test_a_code_change_restarts_the_workers_after_requests_in_flight(
    tmp_path: Path,
) -> None:
    """Edit the app: new requests get the new code, the request in flight ends normally."""
    source = tmp_path / "reloadapp.py"
    source.write_text(APP % "v1")
    process, url, _ = await start_dev("--reload", "reloadapp:app", cwd=tmp_path)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/")).text == "v1/"
            in_flight = asyncio.ensure_future(client.get("/slow"))
            while not (tmp_path / "entered").exists():  # the old worker has it
                assert not in_flight.done()
                await asyncio.sleep(0.02)
            source.write_text(APP % "v2")

            async def new_code() -> bool:
                return (await client.get("/")).text == "v2/"

            deadline = asyncio.get_running_loop().time() + 30
            while not await new_code():
                assert asyncio.get_running_loop().time() < deadline, "no reload"
                await asyncio.sleep(0.1)
            assert not in_flight.done()
            (tmp_path / "release").touch()
            slow = await in_flight
    finally:
        code, output = await interrupt(process)

    assert (slow.status_code, slow.text) == (200, "v1/slow")
    assert "reloadapp.py changed: restarting the workers" in output
    assert code == 0


async def test_manifest_mode_reload_runs_a_fresh_archive(tmp_path: Path) -> None:
    """--manifest --reload: an edit is packed and unpacked again before the new workers start;
    they run from the new spool, not from the source folder."""
    from tests.test_deploy import make_app

    app = make_app(tmp_path / "shop")
    process, url, _ = await start_dev("--manifest", str(app / "manifest.json"), "--reload",
                                      cwd=tmp_path)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = (await client.get("/")).text.split(" ")
            (app / "webapp.py").write_text((app / "webapp.py").read_text().replace("v1", "v2"))
            deadline = asyncio.get_running_loop().time() + 30
            while (second := (await client.get("/")).text.split(" "))[0] != "v2":
                assert asyncio.get_running_loop().time() < deadline, "no reload"
                await asyncio.sleep(0.1)
    finally:
        code, _ = await interrupt(process)

    assert first[0] == "v1"
    assert first[2] != second[2] and str(app) not in (first[2], second[2])
    assert code == 0
