"""`cocaine-http init`, `pack`, `deploy` and `dev --manifest`: the deploy files, the archive,
the upload through the storage service and the start through the node service, against the dev
runtime in both generations (v0.11, and v0.12 with `--protocol 1`)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from cocaine_http.dev.deploy import (V11, V12, DeployError, DeployOptions, Node, generation, main,
                                     profile_warnings, upload)
from cocaine_http.errors import ConfigError
from cocaine_http.services import Client
from tests.test_dev_cli import interrupt, start_dev

ROOT = Path(__file__).resolve().parent.parent
APP = '''import os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = "%s " + environ["PATH_INFO"] + " " + os.getcwd() + " " + os.environ.get("MARK", "")
    return [body.encode()]
'''


def make_app(folder: Path, version: str = "v1", *options: str) -> Path:
    """An app folder written by `cocaine-http init` (slave with this interpreter) plus its
    module."""
    folder.mkdir(exist_ok=True)
    (folder / "webapp.py").write_text(APP % version)
    code = main(["init", "webapp:app", "--dir", str(folder), "--python", sys.executable,
                 *options])
    assert code == 0
    return folder


class TestInit:
    def test_writes_an_executable_slave_a_manifest_and_a_profile(self, tmp_path: Path) -> None:
        """The slave has the given #! line and the execute bit; worker options given to init
        land in the manifest's environment."""
        make_app(tmp_path, "v1", "--threads", "4", "--no-access-log")

        slave = tmp_path / "worker"
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        profile = json.loads((tmp_path / "profile.json").read_text())
        assert slave.read_text().startswith(f"#!{sys.executable}\n")
        assert os.access(slave, os.X_OK)
        assert manifest == {"slave": "worker", "environment": {
            "COCAINE_HTTP_THREADS": "4", "COCAINE_HTTP_ACCESS_LOG": "0"}}
        assert profile["isolate"]["type"] == "process"
        assert profile["pool-limit"] == 10

    def test_venv_names_the_interpreter_of_the_slave(self, tmp_path: Path) -> None:
        """--venv /srv/venvs/shop: the slave runs that venv's Python on the nodes."""
        assert main(["init", "webapp:app", "--dir", str(tmp_path), "--venv",
                     "/srv/venvs/shop"]) == 0

        assert (tmp_path / "worker").read_text().startswith("#!/srv/venvs/shop/bin/python\n")

    def test_refuses_to_overwrite(self, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
        """A second init without --force changes nothing and says why."""
        make_app(tmp_path)
        capsys.readouterr()

        code = main(["init", "other:app", "--dir", str(tmp_path)])

        assert code == 2
        assert "already exist" in capsys.readouterr().err
        assert "webapp:app" in (tmp_path / "worker").read_text()


class TestPack:
    def test_archive_holds_the_folder_relative_without_caches(self, tmp_path: Path) -> None:
        """pack: a tar.gz of the folder's files, paths relative to it, caches left out."""
        app = make_app(tmp_path / "myapp")
        (app / "__pycache__").mkdir()
        (app / "__pycache__" / "webapp.cpython-311.pyc").write_bytes(b"x")
        (app / "static").mkdir()
        (app / "static" / "site.css").write_text("body {}")
        output = tmp_path / "out.tar.gz"

        assert main(["pack", str(app), "--output", str(output)]) == 0

        with tarfile.open(output, "r:gz") as tar:
            names = sorted(tar.getnames())
            mode = tar.getmember("worker").mode
        assert names == ["manifest.json", "profile.json", "static/site.css", "webapp.py",
                         "worker"]
        assert mode & 0o111

    def test_a_manifest_naming_a_missing_slave_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The slave is checked as the runtime would execute it."""
        (tmp_path / "manifest.json").write_text('{"slave": "nothere"}')

        assert main(["pack", str(tmp_path)]) == 2
        assert "no slave file" in capsys.readouterr().err


@pytest.fixture
async def bare_runtime(dev_runtime_factory: Any) -> Any:
    """A dev runtime without an app of its own, as a fresh cocaine-runtime: apps come through
    its storage and node services."""
    return await dev_runtime_factory(None, app="none")


def locator_of(runtime: Any) -> str:
    host, port = runtime.services.locator_endpoint
    return f"{host}:{port}"


class TestDeploy:
    async def test_deploy_uploads_starts_and_serves(self, tmp_path: Path,
                                                    bare_runtime: Any) -> None:
        """Upload archive, manifest and profile as cocaine-tool does, start through the node,
        then HTTP reaches the app, run from its unpacked archive with the manifest's env."""
        app = make_app(tmp_path / "shop")
        manifest = json.loads((app / "manifest.json").read_text())
        manifest["environment"]["MARK"] = "from-manifest"
        (app / "manifest.json").write_text(json.dumps(manifest))
        progress: list[str] = []

        result = await upload(str(app), DeployOptions(locator=locator_of(bare_runtime)),
                              say=progress.append)
        async with httpx.AsyncClient(base_url=bare_runtime.url, timeout=30) as client:
            response = await client.get("/shop/http/hello")

        storage = bare_runtime.services.storage
        assert result == {"shop": "the app has been started"}
        assert msgpack.unpackb(storage.read("manifests", "shop"), raw=False) == manifest
        archive = msgpack.unpackb(storage.read("apps", "shop"), raw=True)
        assert tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz").getmember("webapp.py")
        assert storage.find("manifests", ["app"]) == ["shop"]
        assert storage.find("profiles", ["profile"]) == ["shop"]
        assert response.status_code == 200
        version, path, cwd, mark = response.text.split(" ")
        assert (version, path, mark) == ("v1", "/hello", "from-manifest")
        assert cwd.endswith(os.path.join("spool", "shop")) and cwd != str(app)
        assert progress[-1] == "shop: the app has been started"

    async def test_a_second_deploy_restarts_with_the_new_code(self, tmp_path: Path,
                                                              bare_runtime: Any) -> None:
        """Deploying again pauses the running app and starts the new archive."""
        app = make_app(tmp_path)
        options = DeployOptions(name="shop", locator=locator_of(bare_runtime))
        await upload(str(app), options, say=lambda line: None)
        (app / "webapp.py").write_text(APP % "v2")

        progress: list[str] = []
        await upload(str(app), options, say=progress.append)
        async with httpx.AsyncClient(base_url=bare_runtime.url, timeout=30) as client:
            response = await client.get("/shop/http/")

        assert response.text.startswith("v2 ")
        assert "stopping the running shop" in progress

    async def test_node_service_lists_pauses_and_reports_per_app(self, tmp_path: Path,
                                                                 bare_runtime: Any) -> None:
        """list, pause_app and start_app answer as the v0.11 node does, per app."""
        await upload(str(make_app(tmp_path)), DeployOptions(
            name="shop", locator=locator_of(bare_runtime)), say=lambda line: None)
        async with Client(locator_of(bare_runtime), timeout=10) as client:
            node = await client.service("node")
            listed = await node.list()
            again = await node.start_app({"shop": "shop"})
            missing = await node.start_app({"ghost": "shop"})
            paused = await node.pause_app(["shop", "ghost"])
            after = await node.list()

        assert listed == ["shop"]
        assert again == {"shop": "the app is already running"}
        assert "has not been found" in missing["ghost"]
        assert paused == {"shop": "the app has been stopped", "ghost": "the app is not running"}
        assert after == []

    async def test_unreachable_runtime_is_one_clear_error(self, tmp_path: Path) -> None:
        """No locator: the failing step is named, no traceback."""
        app = make_app(tmp_path)

        with pytest.raises(DeployError, match="cannot reach the storage service through "
                                              "127.0.0.1:1"):
            await upload(str(app), DeployOptions(locator="127.0.0.1:1", timeout=5),
                         say=lambda line: None)

    async def test_the_command_prints_progress_and_exits_0(self, tmp_path: Path,
                                                           bare_runtime: Any) -> None:
        """`cocaine-http deploy DIR --locator H:P` as a user runs it."""
        app = make_app(tmp_path)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cocaine_http", "deploy", str(app), "--name", "shop",
            "--locator", locator_of(bare_runtime), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)

        assert process.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert lines[0].startswith("packed 4 files")
        assert "uploading the manifest to manifests/shop" in lines
        assert lines[-1] == "shop: the app has been started"


class TestDevManifest:
    async def test_dev_runs_the_archive_that_deploy_would_upload(self, tmp_path: Path) -> None:
        """--manifest --profile: the slave of the unpacked archive, not the source folder,
        with the manifest's environment."""
        app = make_app(tmp_path / "shop")
        manifest = json.loads((app / "manifest.json").read_text())
        manifest["environment"]["MARK"] = "m"
        (app / "manifest.json").write_text(json.dumps(manifest))

        process, url, before = await start_dev(
            "--manifest", str(app / "manifest.json"), "--profile", str(app / "profile.json"),
            cwd=tmp_path)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                response = await client.get("/x")
        finally:
            code, _ = await interrupt(process)

        version, path, cwd, mark = response.text.split(" ")
        assert (version, path, mark) == ("v1", "/x", "m")
        assert cwd != str(app)
        assert "Serving shop on " in before
        assert code == 0


async def deploy_with_the_printed_command(app: Path, *dev_args: str) -> tuple[
        list[str], int | None, str, httpx.Response, int]:
    """`cocaine-http dev --bare` as the runtime and the deploy command it prints, run as a
    command: (that command, deploy's exit status, its output, the front's answer, dev's exit
    status)."""
    process, url, before = await start_dev("--bare", *dev_args, cwd=app.parent)
    try:
        command = before.split("deploy with `")[1].split("`")[0].split()
        assert command[:2] == ["cocaine-http", "deploy"]
        deploy = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cocaine_http", *command[1:], str(app),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(deploy.communicate(), 60)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.get("/shop/http/x")
    finally:
        code, _ = await interrupt(process)
    return command, deploy.returncode, out.decode(), response, code


async def test_the_user_path_init_dev_bare_deploy(tmp_path: Path) -> None:
    """init, then `cocaine-http dev --bare` as the runtime and `cocaine-http deploy` to it, all
    as commands: the app answers through the front."""
    command, returncode, out, response, code = await deploy_with_the_printed_command(
        make_app(tmp_path / "shop"))

    assert command[2] == "--locator"
    assert returncode == 0, out
    assert response.status_code == 200 and response.text.startswith("v1 /x ")
    assert code == 0


async def test_the_runtimes_own_app_is_paused_and_started_by_the_node(
    dev_runtime_factory: Any, raw_worker_command: list[str]
) -> None:
    """pause_app of the dev runtime's own app stops its engine (503), start_app resumes it."""
    runtime = await dev_runtime_factory(raw_worker_command, app="raw")
    async with Client(locator_of(runtime), timeout=10) as client, \
            httpx.AsyncClient(base_url=runtime.url, timeout=30) as http:
        node = await client.service("node")
        listed = await node.list()
        paused = await node.pause_app(["raw"])
        while_paused = await http.get("/length")
        started = await node.start_app({"raw": "any"})
        after = await http.get("/length")

    assert listed == ["raw"]
    assert paused == {"raw": "the app has been stopped"}
    assert while_paused.status_code == 503
    assert started == {"raw": "the app has been started"}
    assert (after.status_code, after.content) == (200, b"hello world")


async def test_a_runlist_app_starts_when_the_runtime_boots(
    dev_runtime_factory: Any, tmp_path: Path
) -> None:
    """deploy --runlist default --no-start, then a runtime booting on the same storage starts
    the app from it, as the node reads `runlists/default` at boot."""
    storage = tmp_path / "storage"
    first = await dev_runtime_factory(None, app="none", storage_dir=str(storage))
    progress: list[str] = []
    await upload(str(make_app(tmp_path / "shop")), DeployOptions(
        locator=locator_of(first), runlist="default", start=False), say=progress.append)
    assert first.running_apps() == []
    await first.close()

    second = await dev_runtime_factory(None, app="none", storage_dir=str(storage))
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        response = await client.get("/shop/http/")

    assert "adding shop to runlist default" in progress
    assert msgpack.unpackb((storage / "runlists" / "default").read_bytes(), raw=False) == {
        "shop": "shop"}
    assert second.running_apps() == ["shop"]
    assert response.text.startswith("v1 / ")


# -- v0.12 -------------------------------------------------------------------------------------


class TestGenerations:
    """The table of what differs between v0.11 and v0.12 for a deploy (no I/O)."""

    def test_the_node_calls_of_each_generation(self) -> None:
        """v0.11's node takes maps and lists of apps and answers per app in words; v0.12's
        takes one app per call and answers nothing when it started."""
        assert V11.start_args("shop", "web") == ({"shop": "web"},)
        assert V12.start_args("shop", "web") == ("shop", "web")
        assert V11.stop_args("shop") == (["shop"],)
        assert V12.stop_args("shop") == ("shop",)
        assert V11.start_failure({"shop": "the app has been started"}, "shop") is None
        assert V11.start_failure({"shop": b"profile has not been found"}, "shop") == (
            "profile has not been found")
        assert V12.start_failure(None, "shop") is None

    def test_protocol_names_the_generation(self) -> None:
        assert generation("1") is V12 and generation(0) is V11
        with pytest.raises(ConfigError, match="protocol must be 0 .* or 1"):
            generation("2")

    def test_each_init_profile_suits_its_runtime_and_not_the_other(self) -> None:
        """The profile init writes for one runtime draws no warning there, and the other
        runtime's check names the isolate and each key it would not read."""
        assert profile_warnings(V11.profile, V11) == []
        assert profile_warnings(V12.profile, V12) == []

        on_v12 = profile_warnings(V11.profile, V12)
        on_v11 = profile_warnings(V12.profile, V11)

        assert on_v12 == [
            "profile: isolate type 'process' is v0.12's client of an external isolate daemon "
            "(start_app fails without one); the isolate that executes the slave is "
            "'legacy_process'",
            "profile: v0.12 does not read 'startup-timeout'; it reads 'handshake-timeout' for "
            "that",
            "profile: v0.12 does not read 'termination-timeout'; it reads 'terminate-timeout' "
            "for that"]
        assert on_v11[0] == ("profile: isolate type 'legacy_process' is not one of v0.11's own "
                             "(a plugin's, or unknown); the isolate that executes the slave is "
                             "'process'")
        assert len(on_v11) == 3

    def test_a_profile_without_isolate_gets_the_runtimes_default_process(self) -> None:
        """Both runtimes default to "process", which under v0.12 is the external one."""
        assert profile_warnings({}, V11) == []
        assert "'process' is v0.12's client of an external" in profile_warnings({}, V12)[0]

    def test_init_protocol_1_writes_the_v012_profile(self, tmp_path: Path) -> None:
        """init --protocol 1: legacy_process with a spool, v0.12's key names."""
        make_app(tmp_path, "v1", "--protocol", "1")

        profile = json.loads((tmp_path / "profile.json").read_text())

        assert profile["isolate"] == {"type": "legacy_process",
                                      "args": {"spool": "/var/spool/cocaine"}}
        assert profile["handshake-timeout"] == 10 and "startup-timeout" not in profile


def make_app12(folder: Path, version: str = "v1") -> Path:
    """An app folder from `init --protocol 1`, its spool moved under the test's folder."""
    make_app(folder, version, "--protocol", "1")
    profile = json.loads((folder / "profile.json").read_text())
    profile["isolate"]["args"]["spool"] = str(folder.parent / "spool12")
    (folder / "profile.json").write_text(json.dumps(profile))
    return folder


@pytest.fixture
async def bare_runtime12(dev_runtime_factory: Any) -> Any:
    """A dev runtime in v0.12 mode without an app of its own."""
    return await dev_runtime_factory(None, app="none", protocol=1)


class TestDeploy12:
    async def test_deploy_protocol_1_uploads_starts_and_serves(self, tmp_path: Path,
                                                               bare_runtime12: Any) -> None:
        """The same storage values as v0.11, the v0.12 node calls, the app served."""
        app = make_app12(tmp_path / "shop")
        progress: list[str] = []

        result = await upload(str(app), DeployOptions(locator=locator_of(bare_runtime12),
                                                      protocol="1"), say=progress.append)
        async with httpx.AsyncClient(base_url=bare_runtime12.url, timeout=30) as client:
            response = await client.get("/shop/http/hello")

        storage = bare_runtime12.services.storage
        assert result == {"shop": "the app has been started"}
        assert msgpack.unpackb(storage.read("profiles", "shop"), raw=False)["isolate"][
            "type"] == "legacy_process"
        assert storage.find("manifests", ["app"]) == ["shop"]
        assert response.status_code == 200 and response.text.startswith("v1 /hello ")
        assert not [line for line in progress if line.startswith("warning")]
        assert bare_runtime12.running_apps() == ["shop"]

    async def test_a_second_deploy_restarts_through_the_v012_node(self, tmp_path: Path,
                                                                  bare_runtime12: Any) -> None:
        """pause_app(name) then start_app(name, profile): the new code answers."""
        app = make_app12(tmp_path / "shop")
        options = DeployOptions(locator=locator_of(bare_runtime12), protocol="1")
        await upload(str(app), options, say=lambda line: None)
        (app / "webapp.py").write_text(APP % "v2")

        progress: list[str] = []
        await upload(str(app), options, say=progress.append)
        async with httpx.AsyncClient(base_url=bare_runtime12.url, timeout=30) as client:
            response = await client.get("/shop/http/")

        assert "stopping the running shop" in progress
        assert response.text.startswith("v2 ")

    async def test_node_start_and_stop_speak_the_v012_node(self, tmp_path: Path,
                                                           bare_runtime12: Any) -> None:
        """Node.stop, then Node.start of an app whose profile is missing: the node's error,
        in one line naming the step."""
        await upload(str(make_app12(tmp_path / "shop")), DeployOptions(
            locator=locator_of(bare_runtime12), protocol="1"), say=lambda line: None)
        async with Client(locator_of(bare_runtime12), protocol=1, timeout=10) as client:
            node = Node(await client.service("node"), V12)
            await node.stop("shop")
            stopped = await node.running()
            with pytest.raises(DeployError, match=r"^cannot start shop: node.start_app "
                                                  r"failed: .*ghost"):
                await node.start("shop", "ghost")
            await node.start("shop", "shop")
            started = await node.running()

        assert (stopped, started) == ([], ["shop"])

    async def test_protocol_0_on_a_v012_runtime_says_which_to_use(
        self, tmp_path: Path, bare_runtime12: Any
    ) -> None:
        """The services client's dialect mismatch, plus the option that fixes it."""
        with pytest.raises(DeployError) as caught:
            await upload(str(make_app(tmp_path / "shop")), DeployOptions(
                locator=locator_of(bare_runtime12), timeout=5), say=lambda line: None)

        message = str(caught.value)
        assert message.startswith("cannot reach the storage service through ")
        assert "this client speaks v0.11 (protocol 0)" in message
        assert message.endswith("(deploying to v0.11; --protocol 1 for v0.12)")

    async def test_protocol_1_on_a_v011_runtime_says_which_to_use(
        self, tmp_path: Path, bare_runtime: Any
    ) -> None:
        """A v0.11 locator drops v0.12 requests silently: the step times out, and says so."""
        with pytest.raises(DeployError) as caught:
            await upload(str(make_app12(tmp_path / "shop")), DeployOptions(
                locator=locator_of(bare_runtime), protocol="1", timeout=2),
                say=lambda line: None)

        message = str(caught.value)
        assert "this client speaks v0.12 (protocol 1)" in message
        assert message.endswith("(deploying to v0.12; --protocol 0 for v0.11)")

    async def test_a_v011_profile_deployed_to_v012_is_warned_about(
        self, tmp_path: Path, bare_runtime12: Any
    ) -> None:
        """The profile is uploaded as written; the lines say what v0.12 will do with it."""
        progress: list[str] = []
        await upload(str(make_app(tmp_path / "shop")), DeployOptions(
            locator=locator_of(bare_runtime12), protocol="1", start=False), say=progress.append)

        warnings = [line for line in progress if line.startswith("warning: ")]
        assert len(warnings) == 3 and "'legacy_process'" in warnings[0]


async def test_the_user_path_init_dev_bare_deploy_protocol_1(tmp_path: Path) -> None:
    """`init --protocol 1`, `dev --bare --protocol 1`, and the deploy command it prints: the
    app answers through the front."""
    command, returncode, out, response, code = await deploy_with_the_printed_command(
        make_app12(tmp_path / "shop"), "--protocol", "1")

    assert command[:4] == ["cocaine-http", "deploy", "--protocol", "1"]
    assert returncode == 0, out
    assert out.splitlines()[-1] == "shop: the app has been started"
    assert response.status_code == 200 and response.text.startswith("v1 /x ")
    assert code == 0
