# Strategy: the dev runtime is three parts started in dependency order and closed in reverse:
# the services (locator, logging, storage, and the app service once the engine exists), the
# engine (whose workers get the locator's address as --locator) and the HTTP front. One async
# context manager owns them all, so the CLI and the tests start and stop a runtime the same way.
# The services module is imported lazily: the engine and front work without it (services=False).
"""The dev runtime: services + engine + HTTP front for one app, as an async context manager."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from ..aio.channel import Channel
from ..protocol.dialect import pack
from .engine import Engine
from .front import Front
from .profile import Profile

log = logging.getLogger("cocaine_http.dev")


class DevRuntime:
    """A cocaine-runtime look-alike for one app.

    Args:
        command: the worker command (runtime arguments are appended).
        app: the app name.
        profile: engine settings (runtime defaults).
        host: address of the front and the services.
        port: the front's TCP port (0: any free port; read `front.port`).
        locator_port: the locator's port (the services fall back to a free one if busy).
        storage_dir: directory for the storage service (None: in memory).
        workdir: the workers' working directory (None: the current directory).
        run_dir: where the worker socket lives (None: a fresh temporary directory).
        request_timeout: HTTP front timeout in seconds (504).
        max_body_size: HTTP front request body limit in bytes (413).
        services: start locator/logging/storage/app services.
        on_wire: optional tap of every read from a worker socket (tests).
    """

    def __init__(
        self,
        command: list[str],
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
    ) -> None:
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
        self.services: Any = None
        self.engine: Engine | None = None
        self.front: Front | None = None
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

            self.services = DevServices(host=self.host, locator_port=self.locator_port,
                                        storage_dir=self.storage_dir)
            await self.services.start()
        self.engine = Engine(self.app, self.command, profile=self.profile, run_dir=self.run_dir,
                             workdir=self.workdir, locator=self.locator, on_wire=self.on_wire)
        await self.engine.start()
        if self.services is not None:
            self.services.register_app(self.engine)
            self.engine.on_crashlog = self._save_crashlog
        self.front = Front(self.engine, host=self.host, port=self.port,
                           request_timeout=self.request_timeout,
                           max_body_size=self.max_body_size)
        await self.front.start()

    def _save_crashlog(self, key: str, lines: list[str]) -> None:
        # The storage service holds msgpack values, tagged with the app name (CORE11 slave.cpp).
        self.services.storage.write("crashlogs", key, pack(lines), [self.app])

    async def close(self) -> None:
        """Graceful stop: the front stops accepting, workers get terminate, services close."""
        if self.front is not None:
            self.front.stop_accepting()
        if self.engine is not None:
            await self.engine.close()
        if self.front is not None:
            await self.front.close()
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
