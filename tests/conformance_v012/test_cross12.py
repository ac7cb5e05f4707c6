"""The reference v0.12 framework (PyPI cocaine 0.12.14.5) next to ours on the real runtime:
as a client (the same answers from the same services) and as a worker (the same reply bytes
for the same HTTP envelope)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import msgpack
import pytest

from cocaine_http.errors import ServiceError
from cocaine_http.protocol.dialect import V0_12, pack
from cocaine_http.services import Client

from .conftest import OUR_SLAVE
from .py12 import ECHO_APP

HERE = Path(__file__).resolve().parent
ENVELOPE = ["GET", "/x?q=1", "1.1", [["X-A", "b"]], b""]

PY12_SLAVE = """
os.execv(sys.executable, [sys.executable, {script!r}, *sys.argv[1:]])
"""


@pytest.fixture(scope="module")
def both(runtime12, py12):
    """Two apps on the runtime answering the same thing: "ours12" (our worker, ECHO_APP) and
    "ref12" (the reference framework's worker)."""

    async def deploy() -> None:
        async with Client(runtime12.locator, protocol=V0_12, timeout=20.0) as client:
            ours = runtime12.slave_script("ours12", OUR_SLAVE.format(target="echo_app:app"))
            (ours / "echo_app.py").write_text(ECHO_APP)
            await runtime12.deploy(client, "ours12", ours)
            ref = runtime12.slave_script("ref12", PY12_SLAVE.format(
                script=str(HERE / "py12_worker.py")), python=py12)
            await runtime12.deploy(client, "ref12", ref)

    asyncio.run(deploy())
    return runtime12


async def chunks_of(client: Client, app: str, envelope: list | None = None) -> list[bytes]:
    svc = await client.service(app)
    return list(await svc.enqueue("http", pack(envelope or ENVELOPE)))


class TestAsWorker:
    async def test_same_reply_bytes_for_the_same_envelope(self, both, client12):
        """Head `[200, [[name, value], ...]]`, then the body's bytes: chunk for chunk the
        same from both workers."""
        ours = await chunks_of(client12, "ours12")
        ref = await chunks_of(client12, "ref12")

        assert msgpack.unpackb(ref[0], raw=False) == [
            200, [["Content-Type", "text/plain"], ["X-Impl", "same"]]]
        assert b"".join(ref[1:]) == b"GET q=1 b "
        assert ours == ref

    @pytest.mark.parametrize("envelope", [
        ["POST", "/form?a=1&b=%20x", "1.1",
         [["X-A", "v"], ["Content-Type", "text/plain"], ["Content-Length", "9"]], b"some body"],
        ["PUT", "/", "1.1", [["X-A", "\u00e9"], ["Content-Length", "0"]], b""],
    ], ids=["post-with-body", "put-empty"])
    async def test_same_reply_bytes_with_bodies_and_queries(self, both, client12, envelope):
        """Body, query string and a header reach both handlers alike: the same bytes back."""
        assert await chunks_of(client12, "ours12", envelope) == await chunks_of(
            client12, "ref12", envelope)

    async def test_missing_handler_differs_only_in_the_code(self, both, client12):
        """No handler for the event: both fail the call in category 42; the code is PY12's
        200 and our -100 (docs/v012.md)."""
        codes = {}
        for app in ("ours12", "ref12"):
            svc = await client12.service(app)
            with pytest.raises(ServiceError) as info:
                await svc.enqueue("nosuch", b"")
            codes[app] = (info.value.category, info.value.code)

        assert codes == {"ours12": (42, -100), "ref12": (42, 200)}


class TestAsClient:
    async def test_same_answers_as_our_client(self, both, client12, py12):
        """Storage, an error's [category, code] and an app's enqueue, asked by the reference
        client and by ours, come back the same."""
        done = await asyncio.to_thread(
            subprocess.run, [str(py12), str(HERE / "py12_client.py"), both.locator, "ref12"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        ref = json.loads(done.stdout.strip().splitlines()[-1])

        storage = await client12.service("storage")
        resolved = await client12.resolve("storage")
        await storage.write("xns", "key2", b"\x00\xffblob", ["xt2"])
        with pytest.raises(ServiceError) as info:
            await storage.read("xns", "missing")

        assert ref["storage_version"] == resolved.version
        assert ref["storage_methods"] == sorted(resolved.table.values())
        assert ref["write"] == [] and await storage.write("xns", "k3", b"") is None
        assert ref["find"] == ["key"] and await storage.find("xns", ["xt"]) == ["key"]
        assert ref["error"] == [info.value.category, info.value.code]
        assert bytes(ref["read"]) == await storage.read("xns", "key2") == b"\x00\xffblob"
        assert [bytes(c) for c in ref["enqueue"]] == await chunks_of(client12, "ref12")
