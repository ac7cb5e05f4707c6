# Strategy: `cocaine-http proxy` is one option table (ProxyOptions, the same `option()` fields and
# parser as the worker's Config and dev's DevOptions), a serving loop and, for --workers N > 1,
# a parent that forks N processes which each listen on the same port with SO_REUSEPORT (the
# kernel spreads connections over them; each has its own upstream connections). The parent
# binds the port first (without listening) so that port 0 gives every worker the same port, waits
# until each worker says it listens, prints one "Listening on" line, forwards SIGTERM/SIGINT to
# the workers and starts a new one for a worker that dies. Shutdown is graceful: the first
# SIGTERM/SIGINT stops accepting, closes idle connections and lets the requests in flight finish
# for up to --graceful-timeout (each connection closes after its response); a second one closes
# everything at once.
"""`cocaine-http proxy`: the options, the serving loop, worker processes and signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..adapters.accesslog import STDERR_HANDLER, AccessLog
from ..adapters.accesslog import flush as flush_access_log
from ..aio.loop import new_event_loop
from ..config import OptionParser, option
from ..errors import ConfigError
from ..http.accesslog import RECORD_FORMAT
from ..protocol.dialect import get_dialect
from .connection import ClientLimits, Front
from .forwarded import ForwardedPolicy
from .routing import Router
from .upstream import ClusterUpstream

log = logging.getLogger("cocaine_http.proxy")

PROG = "cocaine-http proxy"
EXIT_USAGE = 2
EXIT_STARTUP = 1
#: The environment variable of --forwarded-allow-ips (uvicorn's name).
FORWARDED_ENV = "FORWARDED_ALLOW_IPS"


@dataclass(frozen=True)
class ProxyOptions:
    """The options of `cocaine-http proxy`."""

    locator: str = option(
        "127.0.0.1:10053", "the cluster's locators, HOST:PORT[,HOST:PORT...] (IPv6 as "
        "[::1]:10053); every one is asked, and the endpoints they name are pooled",
        metavar="LOCATORS")
    host: str = option("127.0.0.1", "address to listen on")
    port: int = option(8080, "port to listen on; 0 picks a free one")
    workers: int = option(
        1, "processes serving the port (SO_REUSEPORT); each has its own upstream connections")
    protocol: str = option("0", "the cluster's protocol: 0 (v0.11) or 1 (v0.12)",
                           choices=("0", "1"))
    request_timeout: float = option(
        30.0, "seconds the app may stay silent (until the head, then between body chunks) "
        "before 504 (or a closed connection after the head); 0 means no limit")
    header_timeout: float = option(
        10.0, "seconds from a request's first byte until its headers are complete (408 "
        "above); 0 means no limit")
    keep_alive_timeout: float = option(
        5.0, "seconds an idle client connection is kept open; 0 means no limit")
    client_idle_timeout: float = option(
        10.0, "seconds a client may stay silent while sending a body (408 above) or leave its "
        "response unread (dropped above); 0 means no limit")
    max_body_size: int = option(64 * 1024 * 1024, "largest request body in bytes (413 above)",
                                shown="64M")
    max_response_buffer: int = option(
        16 * 1024 * 1024, "bytes of response held for a client that reads slower than the app "
        "writes; above, the upstream connection is paused when the request is its only "
        "session, else the request fails and the connection is dropped; 0 means no limit",
        shown="16M")
    pool_size: int = option(4, "most connections per app endpoint")
    queue_retries: int = option(
        2, "other connections a request refused with 'the queue is full' tries before 503")
    connect_timeout: float = option(5.0, "seconds for a resolve or a connect to an app")
    resolve_ttl: float = option(
        10.0, "seconds an app's endpoints are used before the locators are asked again")
    graceful_timeout: float = option(
        30.0, "seconds requests in flight may take to finish after SIGTERM; 0 waits for them")
    forwarded_allow_ips: str | None = option(
        None, "comma list of peers trusted to set X-Forwarded-For/-Proto and X-Real-IP ('*': "
        f"any); other peers' values are replaced (env {FORWARDED_ENV})", kind=str,
        metavar="IPS", shown="127.0.0.1")
    access_log: bool = option(True, "log one line per request to cocaine_http.access")
    loop: str = option("auto", "event loop; auto: uvloop when installed",
                       choices=("auto", "asyncio", "uvloop"))
    log_level: str = option(
        "info", "logging level", choices=("critical", "error", "warning", "info", "debug"))
    powered_by: bool = option(True, "add X-Powered-By: Cocaine, as Cocaine's native proxy does")
    server_header: bool = option(
        True, "add Server: cocaine-http/<version> when the app sends none")
    date_header: bool = option(True, "add Date when the app sends none")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.pool_size < 1:
            raise ConfigError("--pool-size must be at least 1")
        for name in ("request_timeout", "header_timeout", "keep_alive_timeout",
                     "client_idle_timeout", "max_body_size", "max_response_buffer",
                     "queue_retries", "connect_timeout", "resolve_ttl", "graceful_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if not self.locators:
            raise ConfigError("--locator names no locator")

    @property
    def locators(self) -> list[str]:
        return [entry.strip() for entry in self.locator.split(",") if entry.strip()]

    def allow_ips(self) -> list[str]:
        """The trusted peers: the option, else FORWARDED_ALLOW_IPS, else 127.0.0.1."""
        value = self.forwarded_allow_ips
        if value is None:
            value = os.environ.get(FORWARDED_ENV, "127.0.0.1")
        return [entry.strip() for entry in value.split(",") if entry.strip()]


def build_parser() -> OptionParser:
    parser = OptionParser(
        prog=PROG, usage=f"{PROG} --locator HOST:PORT[,HOST:PORT...] [options]",
        description="The HTTP front of a Cocaine cluster: routes requests to apps' services "
                    "(X-Cocaine-Service + X-Cocaine-Event, else /<app>/<event><rest>; /ping "
                    "answers 200) and streams their responses back. See docs/proxy.md.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_table(ProxyOptions, "proxy options")
    return parser


def parse(argv: Sequence[str]) -> ProxyOptions:
    """The options of a command line.

    Raises:
        ConfigError: a bad option or value.
    """
    ns = build_parser().parse_args(list(argv))
    return ProxyOptions(**OptionParser.values(ns, ProxyOptions))


def setup_logging(level: str) -> None:
    """Our records (`cocaine_http.*`) to stderr in the worker's format, on the handler the
    access log's fast path recognises."""
    logger = logging.getLogger("cocaine_http")
    if not any(h.get_name() == STDERR_HANDLER for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(STDERR_HANDLER)
        handler.setFormatter(logging.Formatter(RECORD_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def build_front(options: ProxyOptions, *, reuse_port: bool = False) -> Front:
    """The front and its cluster upstream (not started)."""
    upstream = ClusterUpstream(
        options.locators, dialect=get_dialect(options.protocol), pool_size=options.pool_size,
        retries=options.queue_retries, timeout=options.connect_timeout,
        resolve_ttl=options.resolve_ttl)
    limits = ClientLimits(options.header_timeout, options.keep_alive_timeout,
                          options.client_idle_timeout, options.max_response_buffer)
    return Front(
        upstream, host=options.host, port=options.port, router=Router(),
        request_timeout=options.request_timeout, max_body_size=options.max_body_size,
        powered_by=options.powered_by, server_header=options.server_header,
        date_header=options.date_header, limits=limits,
        access_log=AccessLog(options.access_log),
        rewrite_headers=ForwardedPolicy(options.allow_ips()).rewrite, reuse_port=reuse_port)


async def serve(options: ProxyOptions, *, reuse_port: bool = False,
                ready: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then shut down gracefully (a second signal: at once).
    `ready`: a pipe's write end, told once the port listens (worker processes)."""
    front = build_front(options, reuse_port=reuse_port)
    stop = asyncio.Event()
    forced = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (forced if stop.is_set() else stop).set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        await front.start()
    except OSError as exc:
        print(f"{PROG}: error: cannot listen on {options.host}:{options.port}: {exc.strerror}",
              file=sys.stderr, flush=True)
        await front.upstream.close()
        return EXIT_STARTUP
    if ready is not None:
        os.write(ready, b"1")
        os.close(ready)
    else:
        print(f"Listening on {front.url}, locators {', '.join(options.locators)}", flush=True)
    try:
        await stop.wait()
        log.info("shutting down: %d request(s) in flight", front.busy)
        shutdown = loop.create_task(front.shutdown(options.graceful_timeout))
        await asyncio.wait([shutdown, loop.create_task(forced.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if not shutdown.done():
            shutdown.cancel()
            await front.close()
    finally:
        await front.upstream.close()
        flush_access_log()
    return 0


class Supervisor:
    """The parent of --workers N processes sharing one port."""

    def __init__(self, options: ProxyOptions) -> None:
        self.options = options
        self.children: dict[int, float] = {}
        self.stopping = False
        self.port = options.port
        self._reserve: socket.socket | None = None

    def run(self) -> int:
        self._reserve_port()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        try:
            for _ in range(self.options.workers):
                if not self._spawn():
                    self._stop_all()
                    return EXIT_STARTUP
            host = self.options.host
            shown = f"[{host}]" if ":" in host else host
            print(f"Listening on http://{shown}:{self.port}, {self.options.workers} workers, "
                  f"locators {', '.join(self.options.locators)}", flush=True)
            return self._watch()
        finally:
            if self._reserve is not None:
                self._reserve.close()

    def _reserve_port(self) -> None:
        """Bind (not listen) with SO_REUSEPORT, so port 0 names one port for every worker."""
        family = socket.AF_INET6 if ":" in self.options.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.options.host, self.options.port))
        self.port = sock.getsockname()[1]
        self._reserve = sock

    def _spawn(self) -> bool:
        """Fork one worker and wait until it listens; False if it could not."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read)
            code = 1
            try:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(signum, signal.SIG_DFL)
                if self._reserve is not None:
                    self._reserve.close()
                options = _with_port(self.options, self.port)
                code = run(options, serve(options, reuse_port=True, ready=write))
            finally:
                os._exit(code)
        os.close(write)
        ok = os.read(read, 1) == b"1"
        os.close(read)
        if ok:
            self.children[pid] = time.monotonic()
        else:
            os.waitpid(pid, 0)
        return ok

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _watch(self) -> int:
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.warning("worker %d exited (%d); starting another", pid, code)
            if time.monotonic() - started < 1.0:
                time.sleep(1.0)  # a worker that dies at once must not make a fork loop
            if not self.stopping and not self._spawn():
                self._stop_all()
                return EXIT_STARTUP
        return 0

    def _stop_all(self) -> None:
        self._on_signal(signal.SIGTERM, None)
        for pid in list(self.children):
            os.waitpid(pid, 0)
        self.children.clear()


def _with_port(options: ProxyOptions, port: int) -> ProxyOptions:
    from dataclasses import replace

    return replace(options, port=port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cocaine-http proxy ...`; returns the exit code."""
    try:
        options = parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(options.log_level)
    if options.workers > 1:
        return Supervisor(options).run()
    try:
        return run(options, serve(options))
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def run(options: ProxyOptions, main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on a new loop of `--loop`, closed afterwards.

    Raises:
        ConfigError: --loop uvloop without uvloop installed.
    """
    try:
        loop = new_event_loop(options.loop)
    except ConfigError:
        main.close()
        raise
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
