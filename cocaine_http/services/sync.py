# Strategy: code in threads (WSGI views run in a thread pool) must not touch the loop's objects,
# so every sync call is a coroutine submitted with run_coroutine_threadsafe to the client's loop,
# and the thread waits on the concurrent future. The coroutine enforces the call's timeout
# itself, so the thread's wait is only a safety net a little longer than that. Waiting on the
# loop's own thread would deadlock (the loop cannot run the call while blocked), so that case
# raises at once with a message that says what to do instead.
#
# A client that is bound to no loop (a WSGI app imports its module, and creates its Client,
# before any loop runs, and its views then run in pool threads) gets a private loop on a daemon
# thread the first time the facade is used: calls still run on one loop, with one connection
# per service shared by every thread.
"""Blocking facade over Client for threads: `client.sync.service("storage").read(ns, key)`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ServiceTimeoutError
from .definitions import DefinitionLike

if TYPE_CHECKING:
    from .client import Client
    from .service import Service

T = TypeVar("T")

#: Extra seconds a thread waits beyond a call's own timeout before giving up on the loop.
GRACE = 5.0


class SyncClient:
    """Blocking access to a Client from threads other than its loop's."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            loop = self._client.loop
            if loop is not None and not loop.is_closed():
                return loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._thread = threading.Thread(target=run, name="cocaine-http-client", daemon=True)
            self._thread.start()
            ready.wait()
            self._client.loop = loop
            return loop

    @property
    def private_loop(self) -> bool:
        """Whether the facade started its own loop thread (the client had none)."""
        return self._thread is not None

    def close(self) -> None:
        """Close the client and stop the private loop thread, if the facade started one."""
        if self._thread is None:
            return
        loop = self._client.loop
        assert loop is not None
        asyncio.run_coroutine_threadsafe(self._client.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._thread = None
        loop.close()

    def _run(self, factory: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        loop = self._loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError(
                "client.sync called from the event loop's own thread would deadlock; "
                "await the async API (client.service(...)) here instead"
            )

        async def call() -> T:
            return await factory()

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        limit = (self._client.timeout if timeout is None else timeout) + GRACE
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ServiceTimeoutError(f"no answer from the client's loop within {limit} s") from None

    def service(self, name: str, definition: DefinitionLike = None) -> SyncService:
        """A blocking proxy for `client.service(name, definition)` (resolved on first use)."""
        return SyncService(self, name, definition)

    def resolve(self, name: str) -> Any:
        return self._run(lambda: self._client.resolve(name), None)


class SyncService:
    """Blocking methods of a Service: each call waits in the calling thread."""

    def __init__(self, sync: SyncClient, name: str, definition: DefinitionLike) -> None:
        self._sync = sync
        self._name = name
        self._definition = definition

    async def _service(self) -> Service:
        return await self._sync._client.service(self._name, self._definition)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            async def run() -> Any:
                svc = await self._service()
                fn = getattr(svc, method)
                if timeout is not None:
                    kwargs["timeout"] = timeout
                result = fn(*args, **kwargs)
                if hasattr(result, "collect"):  # streaming: gather every chunk
                    return await result.collect()
                return await result if inspect.isawaitable(result) else result

            return self._sync._run(run, timeout)

        call.__name__ = method
        return call

    def stream(self, method: str, *args: Any, timeout: float | None = None) -> Iterator[Any]:
        """Iterate a streaming method chunk by chunk from a thread."""

        async def start() -> Any:
            svc = await self._service()
            stream = getattr(svc, method)(*args, timeout=timeout)
            return stream

        stream = self._sync._run(start, timeout)
        while True:
            try:
                yield self._sync._run(stream.__anext__, timeout)
            except StopAsyncIteration:
                return
