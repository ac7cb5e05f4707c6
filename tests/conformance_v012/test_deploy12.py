"""`cocaine-http deploy --protocol 1` against the real cocaine-runtime v0.12.14: the example
Flask app deployed with the profile and the command of docs/deploy.md §8 as written, served
through its app service; a redeploy restarting the app; the errors of a wrong protocol and of a
v0.11 profile; what the runtime does with the worker's output; an app of a runlist at boot."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import pytest

from cocaine_http.dev.deploy import main as deploy_main
from cocaine_http.errors import ServiceError, ServiceTimeoutError
from cocaine_http.protocol.dialect import pack
from cocaine_http.services import Client
from cocaine_http.services.definitions import unpack_value

from .conftest import ROOT, VENV_PYTHON, Runtime12

DOCS = ROOT / "docs" / "deploy.md"
WEBAPP = '''import os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = "%s " + environ["PATH_INFO"] + " " + os.getcwd() + " " + os.environ.get("MARK", "")
    return [body.encode()]
'''


def docs_section() -> str:
    """docs/deploy.md's v0.12 section."""
    text = DOCS.read_text()
    return text[text.index("## 8. cocaine-runtime v0.12"):]


def docs_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", docs_section(), re.S)


def docs_profile() -> dict[str, Any]:
    (profile,) = [json.loads(b) for b in docs_blocks("json") if '"isolate"' in b]
    return profile


def docs_command() -> list[str]:
    (line,) = [line for b in docs_blocks("sh") for line in b.splitlines()
               if line.startswith("cocaine-http deploy")]
    return line.split()


def init12(folder: Path, target: str, *options: str) -> Path:
    """`cocaine-http init TARGET --dir FOLDER --python <the project's venv>` (and options)."""
    assert deploy_main(["init", target, "--dir", str(folder), "--python", str(VENV_PYTHON),
                        *options]) == 0
    return folder


def edit_json(path: Path, **changes: Any) -> dict[str, Any]:
    value = json.loads(path.read_text())
    value.update(changes)
    path.write_text(json.dumps(value))
    return value


def spooled(runtime: Runtime12, profile: dict[str, Any]) -> dict[str, Any]:
    """`profile` with its isolate's spool under the runtime's root (not /var/spool)."""
    isolate = dict(profile["isolate"], args={"spool": str(runtime.root / "spool")})
    return {**profile, "isolate": isolate}


def webapp(folder: Path, version: str, runtime: Runtime12, **manifest: Any) -> Path:
    """A small WSGI app answering its version, path, cwd and $MARK, set up by init."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "webapp.py").write_text(WEBAPP % version)
    init12(folder, "webapp:app", "--protocol", "1", "--force")
    edit_json(folder / "profile.json", **spooled(runtime, json.loads(
        (folder / "profile.json").read_text())))
    if manifest:
        edit_json(folder / "manifest.json", **manifest)
    return folder


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    """`cocaine-http deploy ARGS` as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    return subprocess.run([str(VENV_PYTHON), "-m", "cocaine_http", "deploy", *args], env=env,
                          capture_output=True, text=True, timeout=90)


async def get(runtime: Runtime12, app: str, path: str = "/", timeout: float = 20.0
              ) -> tuple[int, bytes]:
    """GET through the app service, with a client of its own: (status, body)."""
    async with Client(runtime.locator, protocol=1, timeout=timeout) as client:
        svc = await client.service(app)
        chunks = await svc.enqueue("http", pack(["GET", path, "1.1", [["Host", "h"]], b""]))
    status, _ = msgpack.unpackb(chunks[0], raw=False)
    return status, b"".join(chunks[1:])


def test_the_docs_profile_and_command_deploy_the_flask_example(
    runtime12: Runtime12, tmp_path: Path
) -> None:
    """init --protocol 1 writes the profile of docs/deploy.md §8; that profile (its spool moved
    under the test's runtime) and the command shown there deploy examples/flask_app, shipped
    in the archive, and the app answers through its service."""
    app = init12(tmp_path / "myapp", "flask_app.app:app", "--protocol", "1")
    shutil.copytree(ROOT / "examples" / "flask_app", app / "flask_app")
    written = json.loads((app / "profile.json").read_text())
    (app / "profile.json").write_text(json.dumps(spooled(runtime12, docs_profile())))
    command = docs_command()
    assert command[:3] == ["cocaine-http", "deploy", "myapp"] and "--protocol" in command
    args = [str(app) if a == "myapp" else a for a in command[2:]]
    args[args.index("--locator") + 1] = runtime12.locator

    done = deploy(*args)
    status, body = asyncio.run(get(runtime12, "myapp"))

    assert written == docs_profile()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert not [line for line in lines if line.startswith("warning")], lines
    assert lines[-2:] == ["starting myapp with profile myapp", "myapp: the app has been started"]
    assert (status, body) == (200, b"Hello from Flask on Cocaine!\n")
    assert (runtime12.root / "spool" / "myapp" / "flask_app" / "app.py").is_file()


async def test_a_second_deploy_restarts_the_app_with_the_new_code(
    runtime12: Runtime12, tmp_path: Path
) -> None:
    """The app runs from the unpacked archive with the manifest's environment; deploying again
    pauses it and starts the new archive, which a new connection reaches, while a connection
    to the app's service made before the restart still reaches the stopped app and fails with
    [12, 32]; log-output puts the worker's lines in the runtime's log at debug."""
    folder = tmp_path / "shop"
    webapp(folder, "v1", runtime12, environment={"MARK": "m12"})
    # the runtime loses its terminate now and then (docs/v012.md): pause_app then answers
    # after terminate-timeout, kept short here
    edit_json(folder / "profile.json", **{"log-output": True, "terminate-timeout": 2})
    first = await asyncio.to_thread(deploy, str(folder), "--protocol", "1", "--locator",
                                    runtime12.locator)
    before = await get(runtime12, "shop", "/first")
    (folder / "webapp.py").write_text(WEBAPP % "v2")
    async with Client(runtime12.locator, protocol=1, timeout=20) as held:
        old = await held.service("shop")
        await old.enqueue("http", pack(["GET", "/", "1.1", [], b""]))

        second = await asyncio.to_thread(deploy, str(folder), "--protocol", "1", "--locator",
                                         runtime12.locator)
        after = await get(runtime12, "shop", "/second")
        with pytest.raises(ServiceError) as stale:
            await old.enqueue("http", pack(["GET", "/", "1.1", [], b""]))
    log = await runtime12.wait_log("GET /second")

    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "stopping the running shop" in second.stdout.splitlines()
    assert before == (200, f"v1 /first {runtime12.root / 'spool' / 'shop'} m12".encode())
    assert after[1].startswith(b"v2 /second ")
    assert (stale.value.category, stale.value.code) == (12, 32)  # the stopped app's EPIPE
    access = [line for line in log.splitlines() if "GET /second" in line]
    assert access and all(line.startswith("D, ") and "slave's output: `" in line
                          and "source=shop/slave" in line for line in access), access


def test_protocol_0_on_the_v012_runtime_fails_and_names_the_option(
    runtime12: Runtime12, tmp_path: Path
) -> None:
    """The runtime drops the v0.11 request; the error says so and which option to use."""
    folder = webapp(tmp_path / "wrong", "v1", runtime12)

    done = deploy(str(folder), "--locator", runtime12.locator, "--timeout", "10")

    assert done.returncode == 1
    (error,) = done.stderr.splitlines()
    assert error.startswith("cocaine-http deploy: error: cannot reach the storage service")
    assert "closed the connection without answering resolve('storage')" in error
    assert error.endswith("this client speaks v0.11 (protocol 0) (deploying to v0.11; "
                          "--protocol 1 for v0.12)")


async def test_a_v011_profile_is_warned_about_fails_to_start_and_a_fixed_one_deploys(
    runtime12: Runtime12, tmp_path: Path
) -> None:
    """init's v0.11 profile ("process" isolate, startup-timeout) on v0.12: the warnings, the
    runtime's own error, the app left broken in the node's list; with the profile fixed the
    next deploy stops the broken app and starts it."""
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "webapp.py").write_text(WEBAPP % "v1")
    init12(folder, "webapp:app")

    failed = await asyncio.to_thread(deploy, str(folder), "--protocol", "1", "--locator",
                                     runtime12.locator)
    async with Client(runtime12.locator, protocol=1, timeout=10) as client:
        info = await (await client.service("node")).info("old")
    edit_json(folder / "profile.json", **spooled(runtime12, {"isolate": {
        "type": "legacy_process"}}))
    fixed = await asyncio.to_thread(deploy, str(folder), "--protocol", "1", "--locator",
                                    runtime12.locator)
    served = await get(runtime12, "old", "/x")

    warnings = [line for line in failed.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3 and "'legacy_process'" in warnings[0], warnings
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "cocaine-http deploy: error: cannot start old: node.start_app failed: [111] could not "
        "connect to external dispatch: Connection refused [2, 111]")
    assert info["state"] == "broken"
    assert fixed.returncode == 0, fixed.stderr
    assert "stopping the running old" in fixed.stdout.splitlines()
    assert served[0] == 200 and served[1].startswith(b"v1 /x ")


async def test_a_slave_that_exits_leaves_its_output_in_crashlogs(
    runtime12: Runtime12, tmp_path: Path
) -> None:
    """The start succeeds (workers start on the first request); the worker's exit before its
    handshake is seen at the handshake timeout, and its output is written to crashlogs."""
    folder = tmp_path / "crash"
    webapp(folder, "v1", runtime12)
    slave = folder / "worker"
    slave.write_text(f"#!{VENV_PYTHON}\nimport sys\nprint('boom from the slave')\nsys.exit(3)\n")
    edit_json(folder / "profile.json", **{"handshake-timeout": 1})

    done = await asyncio.to_thread(deploy, str(folder), "--protocol", "1", "--locator",
                                   runtime12.locator)
    with pytest.raises(ServiceTimeoutError):
        await get(runtime12, "crash", timeout=3)
    await runtime12.wait_log("unable to activate slave: timeout")
    async with Client(runtime12.locator, protocol=1, timeout=10) as client:
        storage = await client.service("storage")
        for _ in range(50):
            keys = await storage.find("crashlogs", ["crash"])
            if keys:
                break
            await asyncio.sleep(0.1)
        lines = unpack_value(await storage.read("crashlogs", keys[0]))
        await (await client.service("node")).pause_app("crash")  # no more respawns

    assert done.returncode == 0, done.stderr
    assert lines == ["boom from the slave"]


def test_a_runlist_app_starts_when_the_runtime_boots(tmp_path: Path) -> None:
    """deploy --runlist default --no-start writes the runlist the v0.12 node reads at boot."""
    runtime = Runtime12(tmp_path / "rt")
    runtime.start()
    try:
        folder = webapp(tmp_path / "boot", "v1", runtime)
        done = deploy(str(folder), "--protocol", "1", "--locator", runtime.locator,
                      "--runlist", "default", "--no-start")
        runtime.stop()
        runtime.start()
        served = asyncio.run(get(runtime, "boot", "/b"))
    finally:
        runtime.stop()

    assert done.returncode == 0, done.stderr
    assert "adding boot to runlist default" in done.stdout.splitlines()
    assert msgpack.unpackb((runtime.root / "storage" / "runlists" / "default").read_bytes(),
                           raw=False) == {"boot": "boot"}
    assert served[0] == 200 and served[1].startswith(b"v1 /b ")
