# Strategy: the command line is generated from the fields of `Config` (one option per field,
# booleans as --x/--no-x), plus the runtime's own arguments (--app --endpoint --locator --uuid
# --protocol), which cocaine-runtime appends and which may appear anywhere. argparse is told to
# raise instead of exiting, so every user mistake becomes one line on stderr and exit code 2.
# The subcommands (dev, init, pack, deploy in cocaine_http.dev; proxy in cocaine_http.proxy) follow
# the same rules.
"""`cocaine-http [options] module:attr`: serve a WSGI or ASGI app as a Cocaine worker."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import RUNTIME_ARGS, Config, OptionParser, runtime_argv, split_runtime_args
from .errors import ConfigError, LifespanError

PROG = "cocaine-http"

EXIT_USAGE = 2
EXIT_STARTUP = 3

NOT_SPAWNED = (
    "no --endpoint given: this command is started by cocaine-runtime (which passes --app "
    "--endpoint --locator --uuid); to run the app locally use `cocaine-http dev {target}`"
)

#: Subcommands: name -> module with a `main(argv) -> int`.
SUBCOMMANDS = {
    "dev": "cocaine_http.dev.cli",
    "proxy": "cocaine_http.proxy.server",
    "init": "cocaine_http.dev.deploy",
    "pack": "cocaine_http.dev.deploy",
    "deploy": "cocaine_http.dev.deploy",
}


def build_parser() -> OptionParser:
    """The parser: app target, every Config field, and the runtime's arguments."""
    parser = OptionParser(
        prog=PROG,
        usage=f"{PROG} [options] module:attr\n       {PROG} {{dev,proxy,init,pack,deploy}} ... "
              "(each with its own --help)",
        description="Serve a WSGI or ASGI app as a Cocaine worker. Every option can also be "
        "set with a COCAINE_HTTP_<OPTION> environment variable (e.g. COCAINE_HTTP_THREADS=4).",
        epilog="To run an app locally behind an HTTP front: cocaine-http dev module:app",
    )
    parser.add_argument("target", nargs="?", metavar="module:attr", help="the app to serve")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_table(Config, "worker options", env=True)
    runtime = parser.add_argument_group("runtime arguments (passed by cocaine-runtime)")
    for name in RUNTIME_ARGS:
        runtime.add_argument(f"--{name}", default=None)
    return parser


def parse(argv: Sequence[str]) -> tuple[str | None, Config, list[str]]:
    """Split argv into (target, Config, runtime argv for the Worker).

    Raises:
        ConfigError: a bad option or value, in the variable's or option's own words.
    """
    found, rest = split_runtime_args(argv)
    ns = build_parser().parse_args(rest)
    config = Config.from_sources(OptionParser.values(ns, Config), os.environ)
    return ns.target, config, runtime_argv(found)


#: The logger tree the worker configures; the app's own loggers are the app's (or --log-config's).
OWN_LOGGER = "cocaine_http"
TRACE = 5


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, pid, level, logger, message (and exc_info, a traceback
    kept inside the line)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record), "pid": record.process,
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text", config_file: str = "") -> None:
    """Log our own records (`cocaine_http.*`) to stderr, which cocaine-runtime keeps as the
    crashlog; the root logger and the app's loggers are left alone, so an app's own logging
    configuration (Django's LOGGING) is not doubled. `config_file` is applied last.

    Raises:
        ConfigError: the logging configuration file cannot be read or applied.
    """
    from .adapters.accesslog import STDERR_HANDLER
    from .http.accesslog import RECORD_FORMAT

    logging.addLevelName(TRACE, "TRACE")
    logger = logging.getLogger(OWN_LOGGER)
    handler = next((h for h in logger.handlers if h.get_name() == STDERR_HANDLER), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(STDERR_HANDLER)  # the access log's fast path recognises it
        logger.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(RECORD_FORMAT))
    logger.setLevel(TRACE if level == "trace" else getattr(logging, level.upper()))
    logger.propagate = False
    if config_file:
        apply_log_config(config_file)


def apply_log_config(path: str) -> None:
    """A dictConfig file (.json, .yaml/.yml) or a fileConfig file (anything else, e.g. .ini),
    keeping the loggers that already exist (as uvicorn's --log-config does).

    Raises:
        ConfigError: the file is missing, malformed, or names what logging cannot build.
    """
    import logging.config

    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise ConfigError(f"--log-config {path}: YAML needs PyYAML installed") from None
            with open(path, encoding="utf-8") as f:
                config = yaml.safe_load(f)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
            return
        if not isinstance(config, dict):
            raise ConfigError(f"--log-config {path}: expected a dictConfig mapping")
        config.setdefault("version", 1)
        config.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(config)
    except ConfigError:
        raise
    except Exception as exc:  # OSError, JSON/YAML/ini parse errors, dictConfig's ValueError
        raise ConfigError(f"--log-config {path}: {' '.join(str(exc).split())}") from None


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cocaine-http` and `python -m cocaine_http`; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[args[0]])
        if args[0] in ("dev", "proxy"):
            return int(module.main(args[1:]))
        return int(module.main(args))
    try:
        target, config, runtime = parse(args)
    except SystemExit as exc:  # --help and --version print and stop here
        return exc.code if isinstance(exc.code, int) else 0
    except ConfigError as exc:
        return _fail(str(exc))
    if not target:
        return _fail("missing the app to serve, as module:attr (see --help)")
    return _serve(target, config, runtime)


def _serve(target: str, config: Config, runtime: list[str]) -> int:
    from .adapters import app as app_module
    from .adapters.importer import load_app

    try:
        setup_logging(config.log_level, config.log_format, config.log_config)
        application = load_app(target, factory=config.factory)
    except ConfigError as exc:
        return _fail(str(exc))
    if "--endpoint" not in runtime:
        return _fail(NOT_SPAWNED.format(target=target))
    try:
        return app_module.serve(application, config, runtime)
    except LifespanError as exc:
        return _fail(f"application startup failed: {exc}", EXIT_STARTUP)
    except ConfigError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
