# Strategy: one function builds the whole HTTP worker: a Config (from keyword options and
# COCAINE_HTTP_* variables), the app object (imported if given as "module:attr"), a Worker
# parsed from the runtime's argv, and the ASGI or WSGI adapter registered as the low-level
# (raw) handler of the HTTP event. Lifespan and the WSGI thread pool hang on the worker's
# startup and shutdown hooks, so they run once per process, before the first invoke and after
# the last session. The CLI and a manifest's slave script both end up in `serve()`.
"""`cocaine_http.run(app, **options)`: serve a WSGI or ASGI app as a Cocaine worker."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..aio.allocator import keep_freed_memory
from ..config import Config, runtime_argv, split_runtime_args
from ..errors import ConfigError
from . import accesslog
from .importer import detect_interface, load_app

log = logging.getLogger("cocaine_http")


def run(app: Any, *, argv: Sequence[str] | None = None, **options: Any) -> int:
    """Serve `app` (an ASGI/WSGI callable or a "module:attr" string) as a Cocaine worker.

    Meant for a manifest's slave script: `sys.exit(cocaine_http.run(app))`. The runtime's
    arguments (--app --endpoint --locator --uuid [--protocol]) are read from `argv`
    (default: sys.argv[1:]); `options` are the fields of `cocaine_http.config.Config`
    (threads=4, lifespan="on", ...), and COCAINE_HTTP_<OPTION> variables fill in the rest.

    Returns:
        The worker's exit status: 0 after the runtime's terminate, non-zero otherwise.

    Raises:
        ConfigError: an unknown option or bad value, or an app that cannot be imported.
        LifespanError: the ASGI app's lifespan startup failed.
    """
    config = Config.from_sources(options)
    if isinstance(app, str):
        app = load_app(app, factory=config.factory)
    found, _ = split_runtime_args(sys.argv[1:] if argv is None else argv)
    if "endpoint" not in found:
        raise ConfigError("no --endpoint: the worker must be started by cocaine-runtime")
    return serve(app, config, runtime_argv(found))


def serve(app: Any, config: Config, runtime_argv: Sequence[str], **timers: float) -> int:
    """Build the worker for `app` and run it on a fresh event loop until it exits; `timers`
    are the Worker's (heartbeat_interval, disown_timeout, termination_grace)."""
    if config.keep_memory:
        keep_freed_memory()
    worker = build_worker(app, config, runtime_argv, **timers)
    stopped: list[float] = []

    async def mark_stop() -> None:  # the first shutdown hook: the grace counts from here
        stopped.append(time.monotonic())

    worker.shutdown_hooks.insert(0, mark_stop)
    code = int(worker.run(config.loop))
    grace = worker.termination_grace
    left = grace - (time.monotonic() - stopped[0]) if stopped else grace
    exit_within(max(left, 0.0), code)
    return code


def exit_within(grace: float, code: int) -> None:
    """The worker is done: make sure the process ends within `grace` seconds even if threads
    the app started (or a request that never returns) would keep the interpreter alive."""
    accesslog.flush()
    main = threading.main_thread()
    if not any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return

    def force() -> None:
        log.error("threads still running a termination grace after the worker stopped: "
                  "exiting")
        accesslog.flush()
        sys.stderr.flush()
        os._exit(code)

    if grace <= 0:
        force()
    timer = threading.Timer(grace, force)
    timer.daemon = True
    timer.start()


def build_worker(app: Any, config: Config, runtime_argv: Sequence[str], **timers: float) -> Any:
    """A Worker with the app's adapter on `config.event` and its hooks installed."""
    from ..aio.worker import Worker, message_limit

    worker = Worker(list(runtime_argv), session_timeout=config.timeout or None,
                    max_message_size=message_limit(config.max_body_size, config.max_header_size),
                    **timers)
    interface = detect_interface(app, config.interface)
    adapter = make_adapter(app, interface, config, worker)
    worker.on(config.event, adapter.session_factory, raw=True)
    worker.startup_hooks.append(adapter.startup)
    worker.shutdown_hooks.append(adapter.shutdown)
    log.info("serving %s app %s on event %r", interface.upper(), _name(app), config.event)
    return worker


def make_adapter(app: Any, interface: str, config: Config, worker: Any) -> Any:
    """The session factory for `interface` ("asgi" or "wsgi")."""
    if interface == "asgi":
        from .asgi import ASGIAdapter

        return ASGIAdapter(app, config, worker)
    from .wsgi import WSGIAdapter

    return WSGIAdapter(app, config, worker)


def _name(app: Any) -> str:
    return getattr(app, "__qualname__", None) or type(app).__qualname__
