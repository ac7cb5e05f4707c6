# Strategy: the command line is generated from the fields of `Config` (one option per field,
# booleans as --x/--no-x), plus the runtime's own arguments (--app --endpoint --locator --uuid
# --protocol), which cocaine-runtime appends and which may appear anywhere. argparse is told to
# raise instead of exiting, so every user mistake becomes one line on stderr and exit code 2;
# this module is the only place in the package that decides an exit status.
"""`cocaine-http [options] module:attr`: serve a WSGI or ASGI app as a Cocaine worker."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .config import FIELDS, Config, env_name, field_type, option_name
from .errors import ConfigError, LifespanError

PROG = "cocaine-http"
RUNTIME_ARGS = ("app", "endpoint", "locator", "uuid", "protocol")

EXIT_USAGE = 2
EXIT_STARTUP = 3

NOT_SPAWNED = (
    "no --endpoint given: this command is started by cocaine-runtime (which passes --app "
    "--endpoint --locator --uuid); to run the app locally use `cocaine-http dev {target}`"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The parser: app target, every Config field, and the runtime's arguments."""
    parser = _Parser(
        prog=PROG,
        description="Serve a WSGI or ASGI app as a Cocaine worker. Every option can also be "
        "set with a COCAINE_HTTP_<OPTION> environment variable (e.g. COCAINE_HTTP_THREADS=4).",
        epilog="To run an app locally behind an HTTP front: cocaine-http dev module:app",
        allow_abbrev=False,
    )
    parser.add_argument("target", nargs="?", metavar="module:attr", help="the app to serve")
    for name, field in FIELDS.items():
        _add_option(parser, name, field.metadata)
    runtime = parser.add_argument_group("runtime arguments (passed by cocaine-runtime)")
    for name in RUNTIME_ARGS:
        runtime.add_argument(f"--{name}", dest=f"runtime_{name}", default=None)
    return parser


def _add_option(parser: argparse.ArgumentParser, name: str, meta: Any) -> None:
    kind = field_type(name)
    default = FIELDS[name].default
    help_text = f"{meta['help']} (default: {default!r}; env {env_name(name)})"
    flag = option_name(name)
    if kind is bool:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                            default=None, help=help_text)
    elif meta["choices"]:
        parser.add_argument(flag, dest=name, choices=meta["choices"], default=None,
                            help=help_text)
    else:
        parser.add_argument(flag, dest=name, default=None, metavar=kind.__name__.upper(),
                            help=help_text)


def parse(argv: Sequence[str]) -> tuple[str | None, Config, list[str]]:
    """Split argv into (target, Config, runtime argv for the Worker).

    Raises:
        ConfigError: a bad option or value, in the variable's or option's own words.
    """
    ns = build_parser().parse_args(list(argv))
    given = {name: getattr(ns, name) for name in FIELDS if getattr(ns, name) is not None}
    config = Config.from_sources(given, os.environ)
    runtime: list[str] = []
    for name in RUNTIME_ARGS:
        value = getattr(ns, f"runtime_{name}")
        if value is not None:
            runtime += [f"--{name}", value]
    return ns.target, config, runtime


def setup_logging(level: str) -> None:
    """Log lines to stderr (cocaine-runtime keeps a worker's stderr as its crashlog)."""
    logging.addLevelName(5, "TRACE")
    numeric = 5 if level == "trace" else getattr(logging, level.upper())
    root = logging.getLogger()
    if not root.handlers:
        from .adapters.accesslog import STDERR_HANDLER
        from .http.accesslog import RECORD_FORMAT

        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(STDERR_HANDLER)  # the access log's fast path recognises it
        handler.setFormatter(logging.Formatter(RECORD_FORMAT))
        root.addHandler(handler)
    root.setLevel(numeric)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cocaine-http` and `python -m cocaine_http`; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "dev":
        from .dev.cli import main as dev_main

        return int(dev_main(args[1:]))
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

    setup_logging(config.log_level)
    try:
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
