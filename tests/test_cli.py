"""The cocaine-http command line: options, env vars, app loading errors, exit codes."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from cocaine_http import __version__, cli
from cocaine_http.protocol.worker import parse_options
from cocaine_http.services.client import locator_from_argv
from cocaine_http.services.logger import default_source
from cocaine_http.config import Config, env_name
from cocaine_http.errors import AppImportError, ConfigError
from cocaine_http.adapters.importer import detect_interface, load_app

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT):
    """Run `python -m cocaine_http` in a subprocess and return the completed process."""
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cocaine_http", *args],
        capture_output=True, text=True, timeout=60, env=full_env, cwd=cwd,
    )


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding small apps to import (WSGI, ASGI, broken, factory)."""
    (tmp_path / "wsgiapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'hi']\n"
        "def make():\n"
        "    return app\n"
    )
    (tmp_path / "asgiapp.py").write_text("async def app(scope, receive, send):\n    pass\n")
    (tmp_path / "failing.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'database unreachable'})\n"
    )
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    (tmp_path / "raising.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    return tmp_path


class TestExitsWithOneLine:
    def test_unknown_option_prints_one_line_and_exits_2(self, app_dir: Path) -> None:
        """An unknown option is a usage error: one stderr line, exit status 2."""
        result = run_cli("--no-such-option", "wsgiapp:app", cwd=app_dir)

        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "--no-such-option" in result.stderr

    def test_bad_option_value_prints_one_line(self, app_dir: Path) -> None:
        """A non-integer --threads names the option in one line."""
        result = run_cli("--threads", "many", "wsgiapp:app", cwd=app_dir)

        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "cocaine-http: error: invalid value 'many' for --threads (int expected)"
        ]

    def test_bad_choice_prints_one_line(self, app_dir: Path) -> None:
        """A value outside --lifespan's choices is refused in one line."""
        result = run_cli("--lifespan", "maybe", "wsgiapp:app", cwd=app_dir)

        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "maybe" in result.stderr

    def test_missing_module_prints_one_line(self, app_dir: Path) -> None:
        """A module that does not exist: one line naming it, no traceback."""
        result = run_cli("nosuchmodule:app", "--endpoint", "/tmp/x", cwd=app_dir)

        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "cocaine-http: error: cannot import module 'nosuchmodule': not found"
        ]

    def test_missing_attribute_prints_one_line(self, app_dir: Path) -> None:
        """A module without the attribute: one line naming both."""
        result = run_cli("wsgiapp:nothing", cwd=app_dir)

        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "cocaine-http: error: attribute 'nothing' not found in module 'wsgiapp'"
        ]

    def test_module_with_a_missing_import_names_the_missing_import(self, app_dir: Path) -> None:
        """An import error inside the app's module is reported as that module's error."""
        result = run_cli("broken:app", cwd=app_dir)

        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "error importing 'broken'" in lines[0]
        assert "does_not_exist_anywhere" in lines[0]

    def test_module_raising_multiline_error_still_prints_one_line(self, app_dir: Path) -> None:
        """An exception with newlines in its message is folded into one line."""
        result = run_cli("raising:app", cwd=app_dir)

        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "cocaine-http: error: error importing 'raising': RuntimeError: boom second line"
        ]

    def test_target_without_colon_is_refused(self, app_dir: Path) -> None:
        """`module` alone is not a target: the line says module:attribute."""
        result = run_cli("wsgiapp", cwd=app_dir)

        assert result.returncode == 2
        assert "module:attribute" in result.stderr

    def test_missing_target_is_refused(self) -> None:
        """No app at all is a usage error."""
        result = run_cli()

        assert result.returncode == 2
        assert "module:attr" in result.stderr

    def test_without_endpoint_says_how_to_run_locally(self, app_dir: Path) -> None:
        """Run by hand (no --endpoint) it points at cocaine-runtime and `cocaine-http dev`."""
        result = run_cli("wsgiapp:app", cwd=app_dir)

        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "cocaine-runtime" in lines[0]
        assert "cocaine-http dev wsgiapp:app" in lines[0]

    def test_lifespan_startup_failure_exits_3_with_app_message(self, app_dir: Path) -> None:
        """A failing lifespan startup stops the worker before it connects, with the app's words."""
        result = run_cli("failing:app", "--endpoint", str(app_dir / "none.sock"),
                         "--uuid", "u", "--app", "a", cwd=app_dir)

        assert result.returncode == 3
        assert result.stderr.strip().splitlines()[-1] == (
            "cocaine-http: error: application startup failed: database unreachable"
        )

    def test_bad_env_var_names_the_variable(self, app_dir: Path) -> None:
        """A bad COCAINE_HTTP_* value is reported with the variable's name."""
        result = run_cli("wsgiapp:app", env={"COCAINE_HTTP_MAX_BODY_SIZE": "huge"}, cwd=app_dir)

        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "COCAINE_HTTP_MAX_BODY_SIZE" in result.stderr

    def test_help_exits_0(self) -> None:
        """--help lists every option with its default and env var, and exits 0."""
        result = run_cli("--help")

        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        for name in Config.__dataclass_fields__:
            flag = "--" + name.replace("_", "-")
            assert re.search(re.escape(flag) + r"\b.*?\(default: [^;]*; env "
                             + env_name(name) + r"\)", text), flag

    def test_version(self) -> None:
        """--version prints the package version."""
        result = run_cli("--version")

        assert (result.returncode, result.stdout.strip()) == (0, f"cocaine-http {__version__}")


class TestParse:
    def test_runtime_args_mixed_in_any_order(self) -> None:
        """The runtime's arguments may come before, after or between the app's options."""
        target, config, runtime = cli.parse([
            "--uuid", "u-1", "--threads", "3", "mod:app", "--endpoint", "/tmp/s",
            "--app", "name", "--locator", "h:10053", "--protocol", "1",
        ])

        assert target == "mod:app"
        assert config.threads == 3
        assert runtime == [
            "--app", "name", "--endpoint", "/tmp/s", "--locator", "h:10053",
            "--uuid", "u-1", "--protocol", "1",
        ]

    @pytest.mark.parametrize("argv", [
        ["--app=echo", "--locator=h:1,g:2", "--uuid=u"],
        ["--app", "echo", "--locator", "h:1,g:2", "--uuid", "u"],
    ], ids=["equals", "separate"])
    def test_every_reader_of_the_runtime_arguments_agrees(self, argv: list[str]) -> None:
        """The CLI, the Worker's options, the Logger's source and the client's locator read
        `--app=echo` and `--app echo` alike."""
        _, _, runtime = cli.parse(["m:a", *argv])

        assert runtime == ["--app", "echo", "--locator", "h:1,g:2", "--uuid", "u"]
        assert parse_options(argv).app == "echo"
        assert default_source(argv) == "app/echo"
        assert locator_from_argv(argv) == "h:1"

    def test_env_vars_fill_options(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """COCAINE_HTTP_<OPTION> sets an option the command line does not give."""
        monkeypatch.setenv("COCAINE_HTTP_THREADS", "4")
        monkeypatch.setenv("COCAINE_HTTP_ACCESS_LOG", "off")
        monkeypatch.setenv("COCAINE_HTTP_MAX_BODY_SIZE", "2M")

        _, config, _ = cli.parse(["mod:app"])

        assert (config.threads, config.access_log, config.max_body_size) == (4, False, 2 << 20)

    def test_command_line_beats_env_vars(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An option given on the command line wins over its variable."""
        monkeypatch.setenv("COCAINE_HTTP_THREADS", "4")
        monkeypatch.setenv("COCAINE_HTTP_ACCESS_LOG", "0")

        _, config, _ = cli.parse(["--threads", "0", "--access-log", "mod:app"])

        assert config.threads == 0
        assert config.access_log is True

    def test_defaults(self) -> None:
        """The documented defaults: event http, 10 threads, 64 MiB bodies, lifespan auto."""
        config = Config()

        assert config.event == "http"
        assert config.threads == 10
        assert config.max_body_size == 64 * 1024 * 1024
        assert config.lifespan == "auto"
        assert config.interface == "auto"

    def test_every_option_has_an_env_var_name(self) -> None:
        """Env names are the upper-cased field names under the COCAINE_HTTP_ prefix."""
        assert env_name("root_path") == "COCAINE_HTTP_ROOT_PATH"

    def test_unknown_keyword_option_is_a_config_error(self) -> None:
        """run(app, thread=4) (a typo) fails loudly instead of being ignored."""
        with pytest.raises(ConfigError, match="unknown option 'thread'"):
            Config.from_sources({"thread": 4}, {})

    def test_negative_threads_refused(self) -> None:
        """A negative pool size is a ConfigError."""
        with pytest.raises(ConfigError):
            Config.from_sources({"threads": -1}, {})

    def test_dev_delegates_to_dev_cli(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`cocaine-http dev ...` hands the rest of argv to cocaine_http.dev.cli.main."""
        seen: list[list[str]] = []
        fake = types.ModuleType("cocaine_http.dev.cli")
        fake.main = lambda argv: seen.append(list(argv)) or 7  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "cocaine_http.dev.cli", fake)

        code = cli.main(["dev", "--port", "0", "mod:app"])

        assert code == 7
        assert seen == [["--port", "0", "mod:app"]]


class TestInterfaceDetection:
    def test_coroutine_function_is_asgi(self) -> None:
        """`async def app(scope, receive, send)` is ASGI."""
        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            pass

        assert detect_interface(app) == "asgi"

    def test_plain_function_is_wsgi(self) -> None:
        """A plain function is WSGI."""
        def app(environ, start_response):  # type: ignore[no-untyped-def]
            return []

        assert detect_interface(app) == "wsgi"

    def test_partial_of_coroutine_function_is_asgi(self) -> None:
        """functools.partial keeps the coroutine nature visible."""
        async def app(scope, receive, send, extra):  # type: ignore[no-untyped-def]
            pass

        assert detect_interface(functools.partial(app, extra=1)) == "asgi"

    def test_explicit_interface_wins(self) -> None:
        """--interface asgi is taken as given."""
        assert detect_interface(lambda e, s: [], "asgi") == "asgi"

    def test_flask_and_starlette(self) -> None:
        """Flask apps are WSGI; Starlette and FastAPI apps are ASGI."""
        import flask
        from fastapi import FastAPI
        from starlette.applications import Starlette

        assert detect_interface(flask.Flask("x")) == "wsgi"
        assert detect_interface(Starlette()) == "asgi"
        assert detect_interface(FastAPI()) == "asgi"

    def test_django_handlers(self) -> None:
        """Django's WSGIHandler is WSGI and its ASGIHandler is ASGI."""
        from django.core.handlers.asgi import ASGIHandler
        from django.core.handlers.wsgi import WSGIHandler

        assert detect_interface(WSGIHandler.__new__(WSGIHandler)) == "wsgi"
        assert detect_interface(ASGIHandler.__new__(ASGIHandler)) == "asgi"

    def test_factory_is_called(self, app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--factory calls the attribute and serves what it returns."""
        monkeypatch.syspath_prepend(str(app_dir))

        app = load_app("wsgiapp:make", factory=True)

        assert app.__name__ == "app"

    def test_non_callable_is_refused(self, app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A module attribute that is not callable cannot be an app."""
        monkeypatch.syspath_prepend(str(app_dir))

        with pytest.raises(AppImportError, match="not callable"):
            load_app("wsgiapp:__name__")
