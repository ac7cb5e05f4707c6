"""The worker's logging: only our own loggers are configured, `--log-format json` keeps one
record a line, `--log-config` configures the rest; errors in it are one line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocaine_http.dev.profile import Profile
from tests.plugins.devruntime import wait_for

SCRIPT = """
import logging, sys
from cocaine_http.cli import setup_logging
setup_logging(*sys.argv[1:])
logging.getLogger("cocaine_http.worker").info("ours")
app = logging.getLogger("app")
app.addHandler(logging.StreamHandler(sys.stdout))
app.error("theirs")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("cocaine_http.wsgi").exception("failed")
print("root handlers:", len(logging.getLogger().handlers))
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True,
                          text=True, timeout=60)


def test_only_our_loggers_are_configured() -> None:
    """Our records are formatted on stderr; the app's record goes to its own handler once;
    the root logger is left alone."""
    result = run("info")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["theirs", "root handlers: 0"]
    assert " INFO cocaine_http.worker: ours" in result.stderr
    assert "theirs" not in result.stderr


def test_json_format_keeps_a_record_with_its_traceback_on_one_line() -> None:
    """--log-format json: every stderr line is a JSON object; the traceback is inside it."""
    result = run("info", "json")

    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "cocaine_http.worker", "ours"), ("ERROR", "cocaine_http.wsgi", "failed")]
    assert "ValueError: boom" in records[1]["exc_info"]


def test_log_config_json_configures_the_apps_loggers(tmp_path: Path) -> None:
    """A dictConfig JSON file is applied after ours and keeps existing loggers."""
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1,
        "formatters": {"tagged": {"format": "APP %(levelname)s %(message)s"}},
        "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "tagged",
                             "stream": "ext://sys.stdout"}},
        "loggers": {"app": {"handlers": ["out"], "level": "ERROR"}},
    }))

    result = run("info", "text", str(config))

    assert "APP ERROR theirs" in result.stdout.splitlines()
    assert " INFO cocaine_http.worker: ours" in result.stderr


def test_log_config_ini_file(tmp_path: Path) -> None:
    """Any other suffix is a fileConfig file."""
    config = tmp_path / "logging.ini"
    config.write_text(
        "[loggers]\nkeys=root,app\n[handlers]\nkeys=out\n[formatters]\nkeys=f\n"
        "[logger_root]\nhandlers=\n[logger_app]\nhandlers=out\nqualname=app\npropagate=0\n"
        "[handler_out]\nclass=StreamHandler\nformatter=f\nargs=(sys.stdout,)\n"
        "[formatter_f]\nformat=INI %(message)s\n")

    result = run("info", "text", str(config))

    assert "INI theirs" in result.stdout.splitlines()


def test_a_bad_log_config_is_one_line(tmp_path: Path) -> None:
    """The worker command exits 2 naming the file."""
    (tmp_path / "app.py").write_text("def app(environ, start_response):\n    return []\n")
    (tmp_path / "bad.json").write_text("{not json")

    result = subprocess.run(
        [sys.executable, "-m", "cocaine_http", "--log-config", "bad.json", "app:app"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cocaine-http: error: --log-config bad.json")


def test_access_log_format_is_the_workers_option(tmp_path: Path) -> None:
    """--access-log-format is checked at start: a broken format is one line, exit 2."""
    (tmp_path / "app.py").write_text("def app(environ, start_response):\n    return []\n")

    result = subprocess.run(
        [sys.executable, "-m", "cocaine_http", "--access-log-format", "%(h", "app:app"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "cocaine-http: error: invalid --access-log-format: incomplete format key")


async def test_access_log_format_shapes_the_access_lines(
    dev_app_runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker given --access-log-format writes its access lines in it."""
    caplog.set_level(logging.INFO)
    runtime = await dev_app_runtime("examples.flask_app.app:app", "--access-log-format",
                                    "ACCESS %(m)s %(U)s %(s)s", profile=Profile(log_output=True))
    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
        assert (await client.get("/")).status_code == 200

    await wait_for(lambda: any(r.name == "cocaine_http.access"
                               and r.getMessage().endswith("] ACCESS GET / 200")
                               for r in caplog.records))


def test_the_access_log_fast_path_finds_our_handler() -> None:
    """With only our loggers configured, the default access format still takes the buffered
    stderr path; another format takes the record path."""
    script = (
        "from cocaine_http.cli import setup_logging\n"
        "from cocaine_http.adapters.accesslog import AccessLog\n"
        "setup_logging('info')\n"
        "print(AccessLog(True).fast, AccessLog(True, '%(s)s').fast)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)

    assert result.stdout.split() == ["True", "False"], result.stderr
