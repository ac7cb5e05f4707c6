# Strategy: `cocaine-http dev` has one parser made of two option tables, its own (DevOptions)
# and the worker's (Config), so every option means one thing wherever it is placed, before or
# after the target, as with uvicorn: `dev app:app --log-level debug` sets the level of the dev
# runtime and of its workers, an unknown option is an error, and `--help` lists every option
# with its default. Worker options given to dev are checked here, then passed to every worker:
# on its command line for module:attr, as COCAINE_HTTP_* variables for a slave file (which
# reads no options of ours). The slave is executed as the runtime executes it (fork + execve
# of the file, in its folder), and one worker is started before "Serving ..." so that an app
# that cannot start is reported at once, in the worker's own words, with a non-zero exit.
# Ctrl-C and SIGTERM shut down gracefully; a second one kills the workers and exits.
"""`cocaine-http dev`: run an app locally under the dev runtime, with an HTTP front."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..aio.worker import body_limit
from ..config import Config, OptionParser, argv_for, env_for
from ..errors import ConfigError
from .deploy import check_slave, pack_dir, read_json, read_manifest, unpack
from .engine import StartupError
from .front import ClientLimits
from .options import DevOptions
from .profile import Profile
from .runtime import DevRuntime
from .slave import OUTPUT_LOGGER

log = logging.getLogger("cocaine_http.dev")

PROG = "cocaine-http dev"
USAGE = (f"{PROG} [options] module:attr\n       {PROG} [options] --slave FILE\n"
         f"       {PROG} [options] --manifest manifest.json [--profile profile.json]\n"
         f"       {PROG} [options] --bare")
EXIT_USAGE = 2
EXIT_STARTUP = 1
EXIT_FORCED = 130
#: What --reload watches and ignores unless told otherwise.
RELOAD_INCLUDE = ("*.py",)
RELOAD_EXCLUDE = (".*", "*.py[cod]", "__pycache__", "*~")


def build_parser() -> OptionParser:
    """Both option tables and the target."""
    parser = OptionParser(
        prog=PROG, usage=USAGE,
        description="Run an app under a local imitation of cocaine-runtime v0.11, with an "
                    "HTTP front. Options may come before or after the target; worker options "
                    "are checked here and passed to every worker.")
    parser.add_argument("target", nargs="?", metavar="module:attr",
                        help="the app to serve, run as `python -m cocaine_http module:attr`")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_table(DevOptions, "dev runtime options")
    parser.add_table(Config, "worker options (passed to every worker)", env=True)
    return parser


@dataclass
class DevCommand:
    """A parsed `cocaine-http dev` command line."""

    dev: DevOptions
    config: Config
    worker_options: dict[str, Any]
    target: str | None
    #: Files to delete when the runtime stops (the unpacked archive of --manifest).
    cleanup: list[str] = field(default_factory=list)


def parse(argv: Sequence[str]) -> DevCommand:
    """Parse and check the command line.

    Raises:
        ConfigError: a bad option or value, or no app to run.
    """
    ns = build_parser().parse_args(list(argv))
    dev = DevOptions(**OptionParser.values(ns, DevOptions))
    worker = OptionParser.values(ns, Config)
    config = Config.from_sources(worker, os.environ)
    given = sum(x is not None for x in (ns.target, dev.slave, dev.manifest))
    if dev.bare and given:
        raise ConfigError("--bare runs no app: give no module:attr, --slave or --manifest")
    if given != 1 and not dev.bare:
        raise ConfigError("give one app to run: module:attr, --slave FILE or --manifest FILE"
                          if given == 0 else "give module:attr, --slave or --manifest, not two")
    if dev.workdir is not None and not os.path.isdir(dev.workdir):
        raise ConfigError(f"--workdir {dev.workdir!r} is not a directory")
    return DevCommand(dev, config, worker, ns.target)


def derive_app_name(command: DevCommand) -> str:
    """"examples.flask_app.app:app" -> "app"; "bin/worker.py" -> "worker"; --manifest
    myapp/manifest.json -> "myapp"."""
    dev = command.dev
    if dev.app_name:
        base = dev.app_name
    elif dev.manifest is not None:
        base = os.path.basename(os.path.dirname(os.path.abspath(dev.manifest)))
    elif dev.slave is not None:
        base = os.path.splitext(os.path.basename(dev.slave))[0]
    else:
        base = (command.target or "app").split(":")[0].rsplit(".", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", base) or "app"


def build_runtime(argv: Sequence[str]) -> tuple[DevRuntime, DevCommand]:
    """The runtime a command line asks for (not started)."""
    command = parse(argv)
    dev = command.dev
    workdir = os.path.abspath(dev.workdir or os.getcwd())
    env = dev.environment()
    settings: dict[str, Any] = {}
    if dev.profile is not None:
        settings = read_json(dev.profile, "profile")
    worker: list[str] | None = None
    if dev.bare:
        pass
    elif dev.manifest is not None:
        manifest = read_manifest(dev.manifest)
        worker, workdir = _spool(command, os.path.dirname(os.path.abspath(dev.manifest)))
        env = {**manifest.environment, **env, **env_for(command.worker_options)}
    elif dev.slave is not None:
        worker = [check_slave(workdir, dev.slave)]
        env = {**env, **env_for(command.worker_options)}
    elif command.target is not None:
        worker = [sys.executable, "-m", "cocaine_http", command.target,
                  *argv_for(command.worker_options)]
    env.setdefault("PYTHONUNBUFFERED", "1")  # worker output reaches the console line by line
    profile = Profile.from_runtime(settings, log_output=True, environment=env,
                                   **dev.profile_overrides())
    runtime = DevRuntime(
        worker, app=derive_app_name(command), profile=profile, host=dev.host, port=dev.port,
        locator_port=dev.locator_port, storage_dir=dev.storage, workdir=workdir,
        request_timeout=dev.request_timeout,
        max_body_size=body_limit(command.config.max_body_size, command.config.max_header_size),
        services=_services_available(), workers=dev.workers, powered_by=dev.powered_by,
        server_header=dev.server_header, date_header=dev.date_header,
        limits=ClientLimits(dev.header_timeout, dev.keep_alive_timeout, dev.client_idle_timeout,
                            dev.max_response_buffer),
        protocol=dev.protocol,
    )
    return runtime, command


def _services_available() -> bool:
    try:
        import cocaine_http.dev.services  # noqa: F401
    except ImportError as exc:
        log.warning("dev services unavailable (%s); running without locator/logging/storage",
                    exc)
        return False
    return True


def setup_logging(level: str) -> None:
    """The dev runtime's console log. Relayed worker records keep their logger and level and
    are filtered by `level`; a worker's other output (print, a framework's own log format) is
    always shown, as it would be in a terminal."""
    logging.addLevelName(5, "TRACE")
    logging.basicConfig(level=5 if level == "trace" else level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger(OUTPUT_LOGGER).setLevel(logging.DEBUG)


class _Signals:
    """First SIGINT/SIGTERM: graceful stop. Second: kill the workers and leave."""

    def __init__(self, runtime: DevRuntime) -> None:
        self.runtime = runtime
        self.stop = asyncio.Event()
        self.forced = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal)

    def _on_signal(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            return
        if not self.forced:
            self.forced = True
            print("Forced exit: killing the workers", flush=True)
            self.runtime.kill()


async def serve(runtime: DevRuntime, command: DevCommand | None = None) -> int:
    """Start, serve until SIGINT/SIGTERM, then shut down (a second signal forces it)."""
    signals = _Signals(runtime)
    signals.install()
    try:
        await runtime.start()
    except StartupError as exc:
        _report_startup(exc)
        return exc.returncode if exc.returncode and exc.returncode > 0 else EXIT_STARTUP
    reloader = None
    try:
        if runtime.command is None:
            protocol = runtime.dialect.protocol
            print(f"Serving no app yet on {runtime.url}: deploy with `cocaine-http deploy "
                  f"{f'--protocol {protocol} ' if protocol else ''}--locator {runtime.locator}`",
                  flush=True)
        else:
            print(f"Serving {runtime.app} on {runtime.url}", flush=True)
        if command is not None and command.dev.reload:
            reloader = asyncio.get_running_loop().create_task(
                watch(runtime, command, signals.stop))
        await signals.stop.wait()
        print("Shutting down (waiting for workers to finish; Ctrl-C again to force)",
              flush=True)
    finally:
        if reloader is not None:
            reloader.cancel()
        await runtime.close()
    return EXIT_FORCED if signals.forced else 0


def _report_startup(exc: StartupError) -> None:
    """The worker's own one-line error when it printed one, else the reason and its output."""
    summary = exc.summary
    if summary.startswith("cocaine-http: error: "):
        print(summary, file=sys.stderr, flush=True)
        return
    print(f"{PROG}: error: the worker did not start: {summary}", file=sys.stderr)
    tail = [line for line in exc.output[-20:] if line.strip()]
    if tail:
        print("its last output:\n  " + "\n  ".join(tail), file=sys.stderr, flush=True)


# -- reload ------------------------------------------------------------------------------------


def reload_filter(include: Sequence[str], exclude: Sequence[str],
                  roots: Sequence[str] = ()) -> Callable[[Any, str], bool]:
    """A watchfiles filter: a path counts when its name matches an include glob and no part of
    it below the watched folder (`roots`) matches an exclude glob."""
    def accept(change: Any, path: str) -> bool:
        root = next((r for r in roots if path.startswith(r.rstrip(os.sep) + os.sep)), None)
        parts = (os.path.relpath(path, root) if root else path).split(os.sep)
        if any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in exclude):
            return False
        return any(fnmatch.fnmatch(parts[-1], pattern) for pattern in include)

    return accept


async def watch(runtime: DevRuntime, command: DevCommand, stop: asyncio.Event) -> None:
    """Restart the workers whenever a watched file changes (they finish their sessions)."""
    try:
        import watchfiles
    except ImportError:
        log.error("--reload needs watchfiles: pip install 'cocaine-http[reload]'")
        return
    dev = command.dev
    source = (os.path.dirname(os.path.abspath(dev.manifest)) if dev.manifest
              else os.path.abspath(dev.workdir or os.getcwd()))
    dirs = [os.path.abspath(d) for d in dev.reload_dir] or [source]
    include = dev.reload_include or RELOAD_INCLUDE
    if dev.manifest:
        include = (*include, "*.json", os.path.basename(read_manifest(dev.manifest).slave))
    accept = reload_filter(include, (*RELOAD_EXCLUDE, *dev.reload_exclude), dirs)
    log.info("watching %s for changes to %s", ", ".join(dirs), ", ".join(include))
    async for changes in watchfiles.awatch(*dirs, watch_filter=accept, stop_event=stop):
        names = sorted({os.path.relpath(path, dirs[0]) for _, path in changes})
        log.warning("%s changed: restarting the workers", ", ".join(names))
        if dev.manifest is not None and runtime.engine is not None:
            try:
                _respool(runtime.engine, command, source)
            except ConfigError as exc:
                log.error("cannot run the app again: %s", exc)
                continue
        if runtime.engine is not None:
            runtime.engine.restart()


def _spool(command: DevCommand, source: str) -> tuple[list[str], str]:
    """Pack the app folder and unpack it into a fresh spool folder, as deploy and the runtime
    would; returns (slave command, spool). Every spool is removed when dev exits."""
    assert command.dev.manifest is not None
    manifest = read_manifest(command.dev.manifest)
    spool = tempfile.mkdtemp(prefix="cocaine-http-spool-")
    try:
        archive, _ = pack_dir(source)
        unpack(archive, spool)
        slave = check_slave(spool, manifest.slave)
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise
    command.cleanup.append(spool)
    return [slave], spool


def _respool(engine: Any, command: DevCommand, source: str) -> None:
    """A fresh spool for the next workers; the old ones keep theirs until they leave."""
    engine.command, engine.workdir = _spool(command, source)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cocaine-http dev ...`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    command = None
    try:
        runtime, command = build_runtime(argv)
        setup_logging(command.config.log_level)
        return asyncio.run(serve(runtime, command))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{PROG}: error: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    finally:
        for path in command.cleanup if command is not None else ():
            shutil.rmtree(path, ignore_errors=True)
