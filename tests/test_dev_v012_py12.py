"""The reference v0.12 framework (PyPI cocaine 0.12.14.5, its own venv: tests/conformance_v012/
py12.py) with the dev runtime in v0.12 mode: its worker under our engine, served over HTTP
next to ours, and its client on our services. It runs in the everyday suite: the venv is made
from the package index once and kept in ~/.cache."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import msgpack
import pytest

from cocaine_http.dev.profile import Profile
from cocaine_http.errors import ServiceError
from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.services import Client
from tests.conformance_v012.py12 import ECHO_APP, PY12_CLIENT, PY12_WORKER, py12  # noqa: F401
from tests.plugins.devruntime import REPO_ROOT

ENVELOPE = ["GET", "/x?q=1", "1.1", [["X-A", "b"]], b""]


@pytest.fixture
async def both(dev_runtime_factory, py12, tmp_path):
    """One dev runtime in v0.12 mode with two apps answering the same thing: "ref" (the
    reference framework's worker) and "ours" (our worker serving ECHO_APP)."""
    runtime = await dev_runtime_factory(None, protocol=1)
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    commands = {"ref": [str(py12), str(PY12_WORKER)],
                "ours": [sys.executable, "-m", "cocaine_http", "echo_app:app"]}
    for name, command in commands.items():
        await runtime.add_app(
            name, command, Profile(environment={"PYTHONPATH": f"{tmp_path}:{REPO_ROOT}"}),
            str(tmp_path))
    return runtime


async def test_reference_worker_serves_http_like_ours(both):
    """GET through the dev front: the reference worker under our v0.12 engine answers what
    ours answers: status, the app's headers and body."""
    async with httpx.AsyncClient(base_url=both.url, timeout=30) as http:
        answers = {name: await http.get(f"/{name}/http/x?q=1", headers={"X-A": "b"})
                   for name in ("ref", "ours")}

    ref, ours = answers["ref"], answers["ours"]
    assert (ref.status_code, ref.text, ref.headers["x-impl"]) == (200, "GET q=1 b ", "same")
    assert (ours.status_code, ours.content, ours.headers["x-impl"]) == (
        ref.status_code, ref.content, ref.headers["x-impl"])


async def test_reference_worker_through_the_app_service(both):
    """enqueue through the dev app service: the same reply chunks from both workers; a
    missing handler fails in category 42 on both, with PY12's code 200 and our -100."""
    chunks, codes = {}, {}
    async with Client(both.locator, protocol=V0_12, timeout=15.0) as client:
        for name in ("ref", "ours"):
            app = await client.service(name)
            chunks[name] = await app.enqueue("http", pack(ENVELOPE))
            with pytest.raises(ServiceError) as info:
                await app.enqueue("nosuch", b"")
            codes[name] = (info.value.category, info.value.code)

    assert msgpack.unpackb(chunks["ref"][0], raw=False) == [
        200, [["Content-Type", "text/plain"], ["X-Impl", "same"]]]
    assert chunks["ours"] == chunks["ref"]
    assert codes == {"ref": (42, 200), "ours": (42, -100)}


async def test_reference_client_on_the_dev_services(both, py12):
    """The reference client asks the dev locator, storage and an app what it asks the real
    runtime (tests/conformance_v012/test_cross12.py): the same answers as our client."""
    done = await asyncio.to_thread(
        subprocess.run, [str(py12), str(PY12_CLIENT), both.locator, "ours"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    ref = json.loads(done.stdout.strip().splitlines()[-1])

    async with Client(both.locator, protocol=V0_12, timeout=15.0) as client:
        resolved = await client.resolve("storage")
        storage = await client.service("storage")
        with pytest.raises(ServiceError) as missing:
            await storage.read("xns", "missing")
        read = await storage.read("xns", "key")
        app = await client.service("ours")
        enqueued = await app.enqueue("http", pack(ENVELOPE))

    assert ref["storage_version"] == resolved.version == 1
    assert ref["storage_methods"] == sorted(resolved.table.values())
    assert "goaway" in ref["storage_methods"]  # the session control methods, as the runtime
    assert ref["write"] == [] and ref["find"] == ["key"]
    assert bytes(ref["read"]) == read == b"\x00\xffblob"
    assert ref["error"] == [missing.value.category, missing.value.code] == [12, 2]
    assert [bytes(c) for c in ref["enqueue"]] == enqueued
