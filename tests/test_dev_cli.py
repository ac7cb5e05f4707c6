"""`cocaine-http dev`: option parsing, worker commands, and a real run ended by Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from cocaine_http.dev.cli import build_runtime, derive_app_name, main, worker_command
from tests.plugins.devruntime import RAW_WORKER

ROOT = Path(__file__).resolve().parent.parent


class TestParsing:
    @pytest.mark.parametrize(
        ("app_args", "slave", "expected"),
        [
            pytest.param(["examples.flask_app.app:app"], None, "app", id="module"),
            pytest.param(["myproject.wsgi:application", "--interface", "wsgi"], None, "wsgi",
                         id="module-with-options"),
            pytest.param([], "python examples/echo_worker.py", "echo_worker", id="slave"),
            pytest.param([], "./bin/my worker", "worker", id="slave-no-py"),
        ],
    )
    def test_app_name_is_derived(self, app_args: list[str], slave: str | None,
                                 expected: str) -> None:
        """The default app name comes from the module or the script name."""
        assert derive_app_name(app_args, slave) == expected

    def test_worker_command_for_a_module_runs_cocaine_http(self) -> None:
        """module:attr and app options become `python -m cocaine_http module:attr ...`."""
        command = worker_command(["pkg.mod:app", "--interface", "asgi"], None)

        assert command == [sys.executable, "-m", "cocaine_http", "pkg.mod:app", "--interface",
                           "asgi"]

    @pytest.mark.parametrize("slave", ["python w.py --x 1", "w.py --x 1"])
    def test_slave_command_uses_this_interpreter(self, slave: str) -> None:
        """A `python` or bare .py slave command runs with the interpreter of the runtime."""
        assert worker_command([], slave) == [sys.executable, "w.py", "--x", "1"]

    def test_dev_options_are_taken_and_the_rest_goes_to_the_app(self) -> None:
        """Dev options anywhere in argv are consumed; app options are passed on in order."""
        runtime, level = build_runtime(["--port", "0", "pkg.mod:app", "--interface", "wsgi",
                                        "--concurrency", "3", "--env", "A=b"])

        assert runtime.command[3:] == ["pkg.mod:app", "--interface", "wsgi"]
        assert runtime.profile.concurrency == 3
        assert runtime.profile.environment["A"] == "b"
        assert (runtime.port, runtime.app, level) == (0, "mod", "info")

    @pytest.mark.parametrize(
        "argv",
        [
            pytest.param([], id="no-app"),
            pytest.param(["--pool-limit", "0", "m:a"], id="bad-profile"),
            pytest.param(["--env", "novalue", "m:a"], id="bad-env"),
        ],
    )
    def test_bad_arguments_exit_2(self, argv: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
        """Usage errors print one line and return 2."""
        assert main(argv) == 2
        assert "cocaine-http dev:" in capsys.readouterr().err


async def run_dev(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start `python -m cocaine_http dev ...`; return it and the URL it prints."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cocaine_http", "dev", "--port", "0", "--locator-port", "0",
        *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, "the dev runtime exited before serving"
        match = re.match(r"Serving (\S+) on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return process, match.group(2)


async def interrupt(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Ctrl-C the runtime; return its exit code and the rest of its output."""
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None
    output = await asyncio.wait_for(process.stdout.read(), 30)
    return await asyncio.wait_for(process.wait(), 30), output.decode()


class TestRun:
    async def test_slave_runtime_serves_http_and_stops_gracefully_on_ctrl_c(self) -> None:
        """--slave COMMAND serves on the printed URL; Ctrl-C terminates workers, exit 0."""
        process, url = await run_dev("--slave", f"python {RAW_WORKER}")
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get("/length")
        finally:
            code, output = await interrupt(process)

        assert (response.status_code, response.content) == (200, b"hello world")
        assert code == 0
        assert "terminated itself (1, the engine is shutting down)" in output

    async def test_make_run_target_serves_the_flask_example(self) -> None:
        """The `make run` command line serves examples/flask_app on the printed URL."""
        process, url = await run_dev("examples.flask_app.app:app")
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get("/")
        finally:
            code, _ = await interrupt(process)

        assert response.status_code == 200
        assert "Flask" in response.text
        assert code == 0
