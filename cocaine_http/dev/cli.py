# Strategy: `cocaine-http dev` parses only its own options (parse_known_args) and hands
# everything else, the module:attr and the app's options, to the worker command unchanged, so
# the workers run exactly the command a real deployment would run. Profile options default to
# None, meaning "the runtime's default" from Profile. Ctrl-C and SIGTERM trigger the graceful
# shutdown; errors become one line on stderr and an exit code, never a traceback.
"""`cocaine-http dev`: run an app locally under the dev runtime, with an HTTP front."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shlex
import signal
import sys

from ..errors import ConfigError
from .profile import Profile
from .runtime import DevRuntime

log = logging.getLogger("cocaine_http.dev")

_PROFILE_OPTIONS = {
    "pool_limit": int,
    "concurrency": int,
    "queue_limit": int,
    "startup_timeout": float,
    "heartbeat_timeout": float,
    "idle_timeout": float,
    "termination_timeout": float,
}

USAGE = "cocaine-http dev [options] (module:attr [app options...] | --slave COMMAND)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cocaine-http dev", usage=USAGE, allow_abbrev=False,
        description="Run an app under a local imitation of cocaine-runtime v0.11, with an "
                    "HTTP front. Options not listed here are passed on to the app.")
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address of the HTTP front and the services")
    add("--port", type=int, default=8080, help="HTTP front port (0: any free port)")
    add("--app-name", help="app name (default: derived from the module or the script)")
    add("--slave", metavar="COMMAND", help="run this worker command instead of module:attr")
    defaults = Profile()
    for name, kind in _PROFILE_OPTIONS.items():
        add("--" + name.replace("_", "-"), type=kind, default=None,
            help=f"profile {name.replace('_', '-')} (default {getattr(defaults, name)})")
    add("--request-timeout", type=float, default=30.0, help="HTTP timeout in seconds (504)")
    add("--max-body-size", type=int, default=16 * 1024 * 1024, help="request body limit (413)")
    add("--locator-port", type=int, default=10053, help="locator port (falls back if busy)")
    add("--storage", metavar="DIR", help="storage service directory (default: in memory)")
    add("--workdir", metavar="DIR", help="workers' working directory (default: current)")
    add("--env", metavar="NAME=VALUE", action="append", default=[],
        help="extra environment for the workers (the manifest's environment); repeatable")
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def derive_app_name(app_args: list[str], slave: str | None) -> str:
    """"examples.flask_app.app:app" -> "app"; "python examples/echo_worker.py" -> "echo_worker"."""
    if slave is not None:
        words = shlex.split(slave)
        scripts = [w for w in words if w.endswith(".py")] or words[-1:]
        base = os.path.splitext(os.path.basename(scripts[-1]))[0] if scripts else "app"
    else:
        target = next((a for a in app_args if ":" in a and not a.startswith("-")), "app")
        base = target.split(":")[0].rsplit(".", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", base) or "app"


def worker_command(app_args: list[str], slave: str | None) -> list[str]:
    """The worker command; the runtime arguments are appended to it by the engine."""
    if slave is None:
        return [sys.executable, "-m", "cocaine_http", *app_args]
    words = shlex.split(slave)
    if not words:
        raise ConfigError("--slave needs a command")
    if words[0].endswith(".py"):
        words.insert(0, sys.executable)
    elif words[0] in ("python", "python3"):
        words[0] = sys.executable  # the interpreter that has cocaine_http and its dependencies
    return [*words, *app_args]


def build_runtime(argv: list[str]) -> tuple[DevRuntime, str]:
    """Parse the dev options (the rest of argv is the app's); returns the runtime and the
    log level."""
    args, app_args = build_parser().parse_known_args(argv)
    if args.slave is None and not any(":" in a and not a.startswith("-") for a in app_args):
        raise ConfigError(f"usage: {USAGE}")
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--env expects NAME=VALUE, got {item!r}")
        env[name] = value
    env.setdefault("PYTHONUNBUFFERED", "1")  # worker output reaches the console line by line
    overrides = {n: getattr(args, n) for n in _PROFILE_OPTIONS if getattr(args, n) is not None}
    profile = Profile(log_output=True, environment=env, **overrides)
    return DevRuntime(
        worker_command(app_args, args.slave),
        app=args.app_name or derive_app_name(app_args, args.slave),
        profile=profile, host=args.host, port=args.port, locator_port=args.locator_port,
        storage_dir=args.storage, workdir=args.workdir or os.getcwd(),
        request_timeout=args.request_timeout, max_body_size=args.max_body_size,
        services=_services_available(),
    ), args.log_level


def _services_available() -> bool:
    try:
        import cocaine_http.dev.services  # noqa: F401
    except ImportError as exc:
        log.warning("dev services unavailable (%s); running without locator/logging/storage",
                    exc)
        return False
    return True


async def serve(runtime: DevRuntime) -> int:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await runtime.start()
    try:
        print(f"Serving {runtime.app} on {runtime.url}", flush=True)
        await stop.wait()
        print("Shutting down (waiting for workers to finish)", flush=True)
    finally:
        await runtime.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cocaine-http dev ...`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        runtime, level = build_runtime(argv)
    except ConfigError as exc:
        print(f"cocaine-http dev: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help or a bad option (it printed why)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        return asyncio.run(serve(runtime))
    except ConfigError as exc:
        print(f"cocaine-http dev: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cocaine-http dev: cannot start: {exc}", file=sys.stderr)
        return 1
