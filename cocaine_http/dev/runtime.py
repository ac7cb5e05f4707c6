# Strategy: the dev runtime is three parts started in dependency order and closed in reverse:
# the services (locator, logging, storage, node, and the app service once the engine exists), the
# engine (whose workers get the locator's address as --locator) and the HTTP front. One async
# context manager owns them all, so the CLI and the tests start and stop a runtime the same way.
# The services module is imported lazily: the engine and front work without it (services=False).
# The front is the proxy's (docs/proxy.md); with services on it reaches the apps the way
# `cocaine-http proxy` reaches a cluster, through this runtime's locator and app services (in
# the runtime's dialect, as `cocaine-http proxy --protocol` speaks the cluster's), so
# what a user tries locally is the production path; without them it hands requests to the
# engines directly.
#
# Besides its own app (the command it was given, if any), the runtime runs the apps the node
# service starts, as cocaine-runtime does: manifest, profile and archive are read from storage,
# the archive is unpacked into `<run dir>/spool/<app>` and the manifest's slave is executed
# there. Each such app gets its engine, its app service and its route in the front.
"""The dev runtime: services + engine + HTTP front for one app, as an async context manager."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import msgpack

from ..aio.channel import Channel
from ..aio.worker import message_limit
from ..errors import ConfigError
from ..protocol.dialect import Dialect, get_dialect, pack
from .engine import ALREADY_RUNNING, STARTED, Engine
from .front import ClientLimits, Front
from .profile import Profile

log = logging.getLogger("cocaine_http.dev")

#: Bytes of request line and headers an enqueue through the app service may carry besides the
#: body (the front's checks bound a head far below this).
HEAD_ROOM = 1024 * 1024
#: The runlist the node starts at boot (the v0.11 node's `runlist` argument, "default").
RUNLIST = "default"


class DevRuntime:
    """A cocaine-runtime look-alike for one app.

    Args:
        command: the worker command (runtime arguments are appended); None runs no app of its
            own (apps come through the node service).
        app: the app name.
        profile: engine settings (runtime defaults).
        host: address of the front and the services.
        port: the front's TCP port (0: any free port; read `front.port`).
        locator_port: the locator's port (the services fall back to a free one if busy).
        storage_dir: directory for the storage service (None: in memory).
        workdir: the workers' working directory (None: the current directory).
        run_dir: where the worker socket lives (None: a fresh temporary directory).
        request_timeout: HTTP front timeout in seconds (504).
        max_body_size: HTTP front request body limit in bytes (413); the CLI gives the
            workers' `body_limit`, so the front refuses what their channel could not carry.
        services: start locator/logging/storage/node/app services.
        on_wire: optional tap of every read from a worker socket (tests).
        workers: workers of the own app started (and waited for) before the front opens;
            a worker that fails to start makes `start()` raise StartupError.
        powered_by: the front adds `X-Powered-By: Cocaine` to every response.
        server_header, date_header: the front adds `Server` and `Date` when the app did not.
        limits: the front's client timeouts and response buffer bound (ClientLimits defaults).
        protocol: the runtime generation to imitate: 0 (v0.11) or 1 (v0.12: engine and
            services speak "protocol 1", workers get `--protocol 1`), or a Dialect.
    """

    def __init__(
        self,
        command: list[str] | None,
        *,
        app: str = "app",
        profile: Profile | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        locator_port: int = 10053,
        storage_dir: str | None = None,
        workdir: str | None = None,
        run_dir: str | None = None,
        request_timeout: float = 30.0,
        max_body_size: int = 16 * 1024 * 1024,
        services: bool = True,
        on_wire: Callable[[Channel, bytes], None] | None = None,
        workers: int = 0,
        powered_by: bool = True,
        server_header: bool = True,
        date_header: bool = True,
        limits: ClientLimits | None = None,
        protocol: int | Dialect = 0,
    ) -> None:
        self.dialect = protocol if isinstance(protocol, Dialect) else get_dialect(protocol)
        self.command = command
        self.app = app
        self.profile = profile or Profile()
        self.host = host
        self.port = port
        self.locator_port = locator_port
        self.storage_dir = storage_dir
        self.workdir = workdir
        self.run_dir = run_dir
        self.request_timeout = request_timeout
        self.max_body_size = max_body_size
        self.use_services = services
        self.on_wire = on_wire
        self.workers = workers
        self.powered_by = powered_by
        self.server_header = server_header
        self.date_header = date_header
        self.limits = limits
        self.services: Any = None
        self.engine: Engine | None = None
        self.front: Front | None = None
        #: Apps started through the node service, by name.
        self.apps: dict[str, Engine] = {}
        self._own_run_dir = False

    @property
    def url(self) -> str:
        """The front's base URL, e.g. http://127.0.0.1:8080."""
        assert self.front is not None, "the runtime is not started"
        return self.front.url

    @property
    def locator(self) -> str:
        """The `--locator` value given to workers."""
        if self.services is not None:
            host, port = self.services.locator_endpoint
            return f"{host}:{port}"
        return f"{self.host}:{self.locator_port}"

    async def start(self) -> None:
        """Start services, engine and front; on failure, whatever started is closed again."""
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        if self.run_dir is None:
            self.run_dir = tempfile.mkdtemp(prefix="cocaine-http-")
            self._own_run_dir = True
        if self.use_services:
            from .services import DevServices  # lazily: the engine does not need it

            # An enqueue carries a whole request: room for the body limit and its head.
            self.services = DevServices(
                host=self.host, locator_port=self.locator_port, storage_dir=self.storage_dir,
                dialect=self.dialect, message_limit=message_limit(self.max_body_size, HEAD_ROOM))
            self.services.serve_node(self)
            await self.services.start()
        if self.command is not None:
            self.engine = await self._start_engine(self.app, self.command, self.profile,
                                                   self.workdir)
            if self.workers:
                await self.engine.warm(self.workers)
        if self.services is not None:
            await self._start_runlist(RUNLIST)
        cluster = None
        if self.services is not None:  # the production path: locator, app service, enqueue
            from ..proxy.upstream import ClusterUpstream

            cluster = ClusterUpstream([self.locator], dialect=self.dialect)
        self.front = Front(self.engine, host=self.host, port=self.port,
                           request_timeout=self.request_timeout,
                           max_body_size=self.max_body_size, apps=self.apps,
                           powered_by=self.powered_by, server_header=self.server_header,
                           date_header=self.date_header, limits=self.limits,
                           cluster=cluster)
        await self.front.start()

    async def _start_engine(self, name: str, command: list[str], profile: Profile,
                            workdir: str | None) -> Engine:
        assert self.run_dir is not None
        engine = Engine(name, command, profile=profile, run_dir=self.run_dir, workdir=workdir,
                        locator=self.locator, on_wire=self.on_wire, dialect=self.dialect)
        await engine.start()
        if self.services is not None:
            self.services.register_app(engine)
            engine.on_crashlog = lambda key, lines: self._save_crashlog(name, key, lines)
        return engine

    def _save_crashlog(self, app: str, key: str, lines: list[str]) -> None:
        # The storage service holds msgpack values, tagged with the app name (CORE11 slave.cpp).
        self.services.storage.write("crashlogs", key, pack(lines), [app])

    # -- NodeHost: apps started through the node service ----------------------------------------

    async def _start_runlist(self, name: str) -> None:
        """Start the apps of `runlists/<name>` ({app: profile}), as the node does at boot."""
        try:
            runlist = self._stored("runlists", name)
        except Exception:  # no runlist: nothing to start, as the runtime says at info level
            return
        if not isinstance(runlist, dict):
            log.warning("runlist %s is not a map of apps to profiles; ignored", name)
            return
        for app, profile in runlist.items():
            outcome = await self.start_app(str(app), str(profile))
            log.info("runlist %s: %s: %s", name, app, outcome)

    def running_apps(self) -> list[str]:
        """The running apps, as the node's `list` answers."""
        own = [self.app] if self.engine is not None and self.engine.state == "running" else []
        return sorted({*own, *self.apps})

    async def start_app(self, name: str, profile_name: str) -> str:
        """Start an app from storage (manifest, profile, archive), as the node's start_app."""
        if name in self.running_apps():
            return ALREADY_RUNNING
        if self.engine is not None and name == self.app:
            self.engine.resume()
            return STARTED
        try:
            manifest = self._stored("manifests", name)
            settings = self._stored("profiles", profile_name)
            archive = self._stored("apps", name)
            if not isinstance(manifest, dict) or not isinstance(manifest.get("slave"), str):
                raise ConfigError("the manifest names no slave")
            if not isinstance(archive, bytes) or not isinstance(settings, dict):
                raise ConfigError("the archive or the profile has the wrong type")
            from .deploy import unpack

            assert self.run_dir is not None
            spool = os.path.join(self.run_dir, "spool", name)
            shutil.rmtree(spool, ignore_errors=True)
            unpack(archive, spool)
            env = {str(k): str(v) for k, v in (manifest.get("environment") or {}).items()}
            env.setdefault("PYTHONUNBUFFERED", "1")
            profile = Profile.from_runtime(settings, environment=env,
                                           log_output=self.profile.log_output)
            slave = os.path.join(spool, manifest["slave"])
            await self.add_app(name, [slave], profile, spool)
        except Exception as exc:  # the node reports every failure per app, as text
            log.error("unable to start the '%s' app - %s", name, exc)
            return str(exc) or type(exc).__name__
        log.info("started the '%s' app from storage", name)
        return STARTED

    async def add_app(self, name: str, command: list[str], profile: Profile,
                      workdir: str | None) -> Engine:
        """Run another app under this runtime: its engine, its app service and its route in
        the front (what start_app does with an app from storage)."""
        engine = self.apps[name] = await self._start_engine(name, command, profile, workdir)
        return engine

    async def pause_app(self, name: str) -> str:
        """Stop an app, as the node's pause_app."""
        if self.engine is not None and name == self.app and self.engine.state == "running":
            await self.engine.stop()
            return "the app has been stopped"
        engine = self.apps.pop(name, None)
        if engine is None:
            return "the app is not running"
        if self.services is not None:  # unpublished first, as both runtimes do
            await self.services.unregister_app(name)
        await engine.close()
        return "the app has been stopped"

    def _stored(self, namespace: str, key: str) -> Any:
        blob = self.services.storage.read(namespace, key)
        return msgpack.unpackb(blob, raw=False, strict_map_key=False) \
            if namespace != "apps" else msgpack.unpackb(blob, raw=True)

    def kill(self) -> None:
        """SIGKILL every worker of every app (a second Ctrl-C); `close()` then ends quickly."""
        for engine in (self.engine, *self.apps.values()):
            if engine is not None:
                engine.kill()

    async def close(self) -> None:
        """Graceful stop: the front stops accepting, workers get terminate, services close."""
        if self.front is not None:
            self.front.stop_accepting()
        if self.engine is not None:
            await self.engine.close()
        for name in list(self.apps):
            await self.apps.pop(name).close()
        if self.front is not None:
            await self.front.close()
            await self.front.upstream.close()
        if self.services is not None:
            await self.services.close()
            self.services = None
        if self._own_run_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self._own_run_dir = False

    async def __aenter__(self) -> DevRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
