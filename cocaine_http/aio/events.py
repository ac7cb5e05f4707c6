# Strategy: the seed design's `Worker.events` is a Node.js EventEmitter; this is the smallest
# Python equivalent. Listeners are plain callables run in registration order; a listener that
# returns an awaitable gets it scheduled as a task; a listener that raises is logged and the
# others still run, so a faulty listener never breaks the worker. `wait(name)` turns the next
# emission into a future, which is how tests and shutdown code wait without polling.
"""A tiny event emitter for worker control events (connect, error, terminate, disown)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cocaine_http.worker")

Listener = Callable[..., Any]


class EventEmitter:
    """Named events with any number of listeners each."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, name: str, listener: Listener | None = None) -> Any:
        """Add `listener` for `name`; without a listener, returns a decorator."""
        if listener is None:
            return lambda fn: self.on(name, fn)
        self._listeners.setdefault(name, []).append(listener)
        return listener

    def once(self, name: str, listener: Listener) -> Listener:
        """Add a listener that is removed after its first call."""

        def wrapper(*args: Any) -> Any:
            self.off(name, wrapper)
            return listener(*args)

        return self.on(name, wrapper)  # type: ignore[no-any-return]

    def off(self, name: str, listener: Listener) -> None:
        """Remove one registration of `listener`; unknown listeners are ignored."""
        listeners = self._listeners.get(name, [])
        if listener in listeners:
            listeners.remove(listener)

    def listeners(self, name: str) -> list[Listener]:
        return list(self._listeners.get(name, ()))

    def emit(self, name: str, *args: Any) -> int:
        """Call every listener of `name` with `args`; returns how many were called."""
        listeners = self.listeners(name)
        for listener in listeners:
            try:
                result = listener(*args)
            except Exception:
                log.exception("listener for %r raised", name)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
        return len(listeners)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("listener task failed", exc_info=task.exception())

    def wait(self, name: str) -> asyncio.Future[tuple[Any, ...]]:
        """A future resolved with the arguments of the next `name` emission."""
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

        def resolve(*args: Any) -> None:
            if not future.done():
                future.set_result(args)

        self.once(name, resolve)
        return future
