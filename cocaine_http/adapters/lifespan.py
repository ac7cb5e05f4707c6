# Strategy: the ASGI lifespan protocol runs once per worker process, as the worker's first
# startup hook (before it connects, so before any invoke) and its last shutdown hook (after the
# sessions drained). The app runs in one Task for the whole life of the process; two futures
# carry "startup finished" and "shutdown finished" back from its send() calls.
#
# Modes: "off" never calls the app; "on" treats an app that raises or returns before answering
# startup as a failure; "auto" treats that as "this app has no lifespan" (Django's ASGIHandler
# raises ValueError for it) and serves on. An explicit lifespan.startup.failed is a failure in
# every mode, and its message is what the user sees.
"""ASGI lifespan (startup/shutdown) for one worker process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import LifespanError

log = logging.getLogger("cocaine_http.lifespan")

#: Appended when an app in "on" mode raised or returned at startup instead of answering: such
#: an app (Django's ASGIHandler, for one) has no lifespan, and this is what to change.
NO_LIFESPAN_HINT = (
    "; this app does not speak the ASGI lifespan protocol: set lifespan='auto' or 'off' "
    "(--lifespan, COCAINE_HTTP_LIFESPAN)"
)

ASGIApp = Callable[..., Awaitable[None]]


class Lifespan:
    """Drive an ASGI app's lifespan scope.

    Args:
        app: the ASGI 3 application.
        mode: "auto", "on" or "off".
        state: the dict handed to the app as `scope["state"]`; request scopes get a shallow
            copy of it.
    """

    def __init__(self, app: ASGIApp, mode: str = "auto", state: dict[str, Any] | None = None):
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {} if state is None else state
        self.supported = mode != "off"
        self._task: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._startup: asyncio.Future[None] | None = None
        self._shutdown: asyncio.Future[None] | None = None
        self._failed_message = ""
        self._shutdown_requested = False

    async def startup(self) -> None:
        """Run the app's startup.

        Raises:
            LifespanError: the app reported startup failure, or ("on" mode) raised or returned
                without answering.
        """
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self._startup = loop.create_future()
        self._shutdown = loop.create_future()
        self._task = loop.create_task(self._main())
        await self._events.put({"type": "lifespan.startup"})
        await self._startup

    async def shutdown(self) -> None:
        """Run the app's shutdown, if startup ran; failures are logged, never raised (the
        worker is exiting either way)."""
        if not self.supported or self._task is None or self._task.done():
            return
        assert self._shutdown is not None
        self._shutdown_requested = True
        await self._events.put({"type": "lifespan.shutdown"})
        try:
            await self._shutdown
        except LifespanError as exc:
            log.error("lifespan shutdown failed: %s", exc)
        await asyncio.wait([self._task])

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self._app_ended(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._app_ended(None)

    def _app_ended(self, exc: BaseException | None) -> None:
        assert self._startup is not None and self._shutdown is not None
        if not self._startup.done():
            if self.mode == "auto" and not self._failed_message:
                self.supported = False
                log.debug("app does not support lifespan (%r); serving without it", exc)
                self._startup.set_result(None)
            else:
                self._startup.set_exception(LifespanError(
                    self._failed_message or _describe("startup", exc) + NO_LIFESPAN_HINT
                ))
        elif self._shutdown_requested and not self._shutdown.done():
            self._shutdown.set_exception(LifespanError(_describe("shutdown", exc)))
        elif exc is not None:
            log.error("lifespan task ended early: %s", _describe("run", exc))

    async def _receive(self) -> dict[str, Any]:
        return await self._events.get()

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._startup is not None and self._shutdown is not None
        kind = message.get("type")
        if kind == "lifespan.startup.complete" and not self._startup.done():
            self._startup.set_result(None)
        elif kind == "lifespan.startup.failed" and not self._startup.done():
            self._failed_message = str(message.get("message", "")) or "startup failed"
            self._startup.set_exception(LifespanError(self._failed_message))
        elif kind == "lifespan.shutdown.complete" and not self._shutdown.done():
            self._shutdown.set_result(None)
        elif kind == "lifespan.shutdown.failed" and not self._shutdown.done():
            text = str(message.get("message", "")) or "shutdown failed"
            self._shutdown.set_exception(LifespanError(text))
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")


def _describe(phase: str, exc: BaseException | None) -> str:
    if exc is None:
        return f"app returned during lifespan {phase} without answering"
    text = " ".join(str(exc).split())
    return f"lifespan {phase} raised {type(exc).__name__}: {text}" if text else (
        f"lifespan {phase} raised {type(exc).__name__}"
    )
