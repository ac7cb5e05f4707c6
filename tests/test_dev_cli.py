"""`cocaine-http dev`: one option table with the worker, failing before "Serving", slaves run as
the runtime runs them, Ctrl-C (twice), and log records relayed with their level."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cocaine_http import cli
from cocaine_http.config import Config, option_name
from cocaine_http.dev.cli import build_parser, build_runtime, main, parse
from cocaine_http.dev.options import DevOptions
from tests.plugins.devruntime import RAW_SLAVE, write_slave

ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"Serving (.+?) on (http://127\.0\.0\.1:\d+)")


def run_dev_to_exit(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run `cocaine-http dev` expecting it to exit by itself (a startup failure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "cocaine_http", "dev", "--port", "0", "--locator-port", "0",
         *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """Small apps: a WSGI app that logs and raises, a factory, a syntax error."""
    (tmp_path / "wsgiapp.py").write_text(
        "def app(environ, start_response):\n"
        "    if environ['PATH_INFO'] == '/boom':\n"
        "        raise ValueError('boom from the app')\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'hi']\n"
        "def make():\n"
        "    return app\n")
    (tmp_path / "syntax.py").write_text("def app(environ, start_response:\n")
    return tmp_path


class TestOneOptionTable:
    def test_options_after_the_target_are_options_of_dev_and_its_workers(self) -> None:
        """`app:app --log-level debug`: the level of dev and of the workers alike."""
        runtime, command = build_runtime(["--port", "0", "pkg.mod:app", "--log-level", "debug",
                                          "--threads", "3", "--concurrency", "4"])

        assert command.config.log_level == "debug"
        assert runtime.command == [sys.executable, "-m", "cocaine_http", "pkg.mod:app",
                                   "--threads", "3", "--log-level", "debug"]
        assert runtime.profile.concurrency == 4
        assert (runtime.port, runtime.app) == (0, "mod")

    def test_sizes_are_taken_like_the_worker_takes_them(self) -> None:
        """--max-body-size 16M is the front's limit and the workers' alike."""
        runtime, command = build_runtime(["--max-body-size", "16M", "m:a"])

        assert runtime.max_body_size == 16 * 1024 * 1024
        assert runtime.command[-2:] == ["--max-body-size", "16777216"]

    def test_trace_level_is_accepted_by_dev_and_by_the_worker(self) -> None:
        """--log-level trace parses in both commands."""
        assert parse(["--log-level", "trace", "m:a"]).config.log_level == "trace"
        assert cli.parse(["--log-level", "trace", "m:a"])[1].log_level == "trace"

    def test_env_file_fills_the_worker_environment_and_env_wins(self, tmp_path: Path) -> None:
        """--env-file: NAME=VALUE lines, comments, quotes, `export`; --env overrides."""
        env_file = tmp_path / ".env"
        env_file.write_text("# settings\nA=1\nexport B='two words'\n\nC=\"x\"\n")

        runtime, _ = build_runtime(["--env-file", str(env_file), "--env", "A=9", "m:a"])

        env = runtime.profile.environment
        assert (env["A"], env["B"], env["C"]) == ("9", "two words", "x")

    def test_a_bad_env_file_line_is_named(self, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
        """A line that is not NAME=VALUE is reported with its file and line number."""
        env_file = tmp_path / ".env"
        env_file.write_text("A=1\nnot a pair\n")

        assert main(["--env-file", str(env_file), "m:a"]) == 2
        assert f"{env_file}:2: expected NAME=VALUE" in capsys.readouterr().err

    def test_help_shows_every_option_of_both_tables_with_its_default(self) -> None:
        """Every field of DevOptions and Config is in --help, each with a default."""
        text = " ".join(build_parser().format_help().split())
        for table in (DevOptions, Config):
            for field in dataclasses.fields(table):
                flag = option_name(field.name)
                match = re.search(re.escape(flag) + r"\b.*?\(default: ([^)]*)", text)
                assert match is not None, flag

    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            pytest.param([], "give one app", id="no-app"),
            pytest.param(["--port", "99999", "m:a"], "--port must be between 0 and 65535",
                         id="port-range"),
            pytest.param(["--pool-limit", "0", "m:a"], "pool-limit", id="bad-profile"),
            pytest.param(["--env", "novalue", "m:a"], "NAME=VALUE", id="bad-env"),
            pytest.param(["--threads", "many", "m:a"], "--threads", id="bad-worker-value"),
            pytest.param(["m:a", "--no-such-option"], "--no-such-option", id="mistyped"),
            pytest.param(["--workdir", "/nonexistent/dir", "m:a"], "--workdir", id="workdir"),
            pytest.param(["--slave", "nothing-here", "--workdir", "/"], "no slave file",
                         id="missing-slave"),
        ],
    )
    def test_bad_arguments_exit_2_with_one_line(
        self, argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Usage errors print one line, no traceback, and return 2."""
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("cocaine-http dev: error: ")
        assert words in err[0]

    def test_port_out_of_range_prints_no_traceback(self) -> None:
        """The real command: one line on stderr for --port 99999."""
        result = run_dev_to_exit("--port", "99999", "m:a")

        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "cocaine-http dev: error: --port must be between 0 and 65535, got 99999"]


class TestFailsBeforeServing:
    @pytest.mark.parametrize(
        ("target", "line"),
        [
            pytest.param("nosuchmodule:app",
                         "cocaine-http: error: cannot import module 'nosuchmodule': not found",
                         id="module"),
            pytest.param("wsgiapp:nothing",
                         "cocaine-http: error: attribute 'nothing' not found in module "
                         "'wsgiapp'", id="attribute"),
            pytest.param("syntax:app", "cocaine-http: error: error importing 'syntax': "
                         "SyntaxError", id="syntax"),
            pytest.param("wsgiapp:make", "cocaine-http: error: 'wsgiapp:make' looks like an "
                         "app factory (it takes no arguments): add --factory", id="factory"),
        ],
    )
    def test_an_app_that_cannot_start_exits_with_the_workers_line(
        self, app_dir: Path, target: str, line: str
    ) -> None:
        """The worker's own one-line error, its exit status, and no "Serving"."""
        result = run_dev_to_exit(target, cwd=app_dir)

        assert result.returncode == 2
        assert "Serving" not in result.stdout
        assert result.stderr.strip().splitlines()[-1].startswith(line)

    @pytest.mark.parametrize(
        ("content", "mode", "words"),
        [
            pytest.param("#!/bin/sh\nexit 0\n", 0o644, "is not executable", id="no-x-bit"),
            pytest.param("print('no shebang')\n", 0o755, "has no #! line", id="no-shebang"),
        ],
    )
    def test_a_slave_the_runtime_could_not_execute_is_refused(
        self, tmp_path: Path, content: str, mode: int, words: str
    ) -> None:
        """As under the runtime, the slave file itself is executed: no interpreter is guessed."""
        slave = tmp_path / "worker.py"
        slave.write_text(content)
        slave.chmod(mode)

        result = run_dev_to_exit("--slave", "worker.py", "--workdir", str(tmp_path))

        assert result.returncode == 2
        assert words in result.stderr
        assert "Serving" not in result.stdout

    def test_a_slave_that_exits_at_start_shows_its_output(self, tmp_path: Path) -> None:
        """A slave that dies before its handshake: exit code and last output, before Serving."""
        write_slave(tmp_path / "worker", "print('cannot find the database')\nsys.exit(5)\n")

        result = run_dev_to_exit("--slave", "worker", "--workdir", str(tmp_path))

        assert result.returncode == 5
        assert "Serving" not in result.stdout
        assert "the process exited with code 5" in result.stderr
        assert "cannot find the database" in result.stderr


async def start_dev(*args: str, cwd: Path = ROOT) -> tuple[asyncio.subprocess.Process, str, str]:
    """Start `python -m cocaine_http dev ...`; return it, its URL and what it printed before."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    env["PYTHONPATH"] = str(ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cocaine_http", "dev", "--port", "0", "--locator-port", "0",
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    before = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, "the dev runtime exited before serving: " + "".join(before)
        before.append(line)
        match = SERVING.match(line)
        if match:
            return process, match.group(2), "".join(before)


async def interrupt(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Ctrl-C the runtime; return its exit code and the rest of its output."""
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None
    output = await asyncio.wait_for(process.stdout.read(), 30)
    return await asyncio.wait_for(process.wait(), 30), output.decode()


class TestRun:
    async def test_slave_file_serves_http_and_stops_gracefully_on_ctrl_c(
        self, tmp_path: Path
    ) -> None:
        """--slave FILE (executed itself, in --workdir) serves on the printed URL; Ctrl-C
        terminates the workers, exit 0."""
        write_slave(tmp_path / "raw_slave", RAW_SLAVE)
        process, url, _ = await start_dev("--slave", "raw_slave", "--workdir", str(tmp_path))
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get("/length")
        finally:
            code, output = await interrupt(process)

        assert (response.status_code, response.content) == (200, b"hello world")
        assert code == 0
        assert "terminated itself (1, the engine is shutting down)" in output

    async def test_workers_are_started_before_serving(self) -> None:
        """--workers 2: both workers are active when "Serving" is printed."""
        process, url, before = await start_dev("--workers", "2", "--log-level", "info",
                                               "examples.flask_app.app:app")
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get("/")
        finally:
            code, _ = await interrupt(process)

        assert before.count(" is active") == 2
        assert response.status_code == 200 and "Flask" in response.text
        assert code == 0

    @pytest.mark.parametrize("log_format", ["text", "json"])
    async def test_app_tracebacks_keep_their_level_and_logger(self, app_dir: Path,
                                                              log_format: str) -> None:
        """Under --log-level warning the app's traceback is relayed at ERROR, by its logger,
        from text lines as from JSON ones."""
        process, url, _ = await start_dev("--log-level", "warning", "--log-format", log_format,
                                          "wsgiapp:app", cwd=app_dir)
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get("/boom")
        finally:
            code, output = await interrupt(process)

        assert response.status_code == 500
        lines = output.splitlines()
        record = next(i for i, line in enumerate(lines) if "exception in WSGI app" in line)
        assert " ERROR   cocaine_http.wsgi: [" in lines[record]
        assert any(line.endswith("ValueError: boom from the app") for line in lines[record:])
        if log_format == "text":  # each traceback line is relayed by the record's logger
            assert all(" ERROR   cocaine_http.wsgi: [" in line
                       for line in lines if "boom from the app" in line)
        assert " INFO " not in output
        assert code == 0

    async def test_plain_output_is_shown_whatever_the_level(self, tmp_path: Path) -> None:
        """print() and a framework's own log lines are not our records: shown even under
        --log-level error, as in a terminal."""
        write_slave(tmp_path / "raw_slave", "print('plain words from the slave')\n" + RAW_SLAVE)
        process, _, before = await start_dev("--slave", "raw_slave", "--workdir",
                                             str(tmp_path), "--log-level", "error")
        code, _ = await interrupt(process)

        assert "cocaine_http.dev.worker: [" in before
        assert "plain words from the slave" in before
        assert code == 0

    async def test_second_ctrl_c_forces_the_exit(self, tmp_path: Path) -> None:
        """A worker that ignores terminate is killed by a second Ctrl-C; exit status 130."""
        write_slave(tmp_path / "raw_slave", RAW_SLAVE)
        process, url, _ = await start_dev("--slave", "raw_slave", "--workdir", str(tmp_path),
                                          "--env", "RAW_IGNORE_TERMINATE=1",
                                          "--termination-timeout", "600")
        assert process.stdout is not None
        process.send_signal(signal.SIGINT)
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"Shutting down")
        process.send_signal(signal.SIGINT)
        output = await asyncio.wait_for(process.stdout.read(), 30)
        code = await asyncio.wait_for(process.wait(), 30)

        assert b"Forced exit" in output
        assert code == 130
