# Strategy: a Task whose first step runs at once, inside the call that creates it, instead of
# on a later loop iteration: an app that answers without suspending is then finished before
# the call returns, and the loop never schedules anything for it (on Python 3.11 the
# scheduling was about a third of a bare ASGI request's cost, docs/benchmarks.md).
#
# - Python 3.12+ has this built in: `Task(..., eager_start=True)`.
# - Python 3.11 has no such option, so the same is done by hand with the C Task: the Task is
#   created with a stand-in for the loop (`_FirstStep`) that keeps the first-step callback the
#   Task hands to call_soon instead of scheduling it; `Future.__init__` then binds the Task to
#   the real loop (it resets only the future's own fields: loop, callbacks, result, state),
#   before anything else can see the Task; and the kept callback runs now, in the Task's
#   context, with the current task swapped out as 3.12's eager start does. Nothing else of the
#   Task differs from one the loop created: it is registered (asyncio.all_tasks()), it is
#   asyncio.current_task() inside the app from the first line on, its contextvars are its own
#   copy, cancel() and later steps are the C Task's own, so anyio, Starlette and FastAPI see a
#   plain Task.
# - Anywhere else (another Python, a pure-Python Task) the Task is created as usual.
"""Tasks that start eagerly: the first step runs inside the call that creates the Task."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from contextvars import copy_context
from typing import Any

__all__ = ["EAGER_START", "eager_starter"]

_CTask: Any = getattr(sys.modules.get("_asyncio"), "Task", None)
#: True where Tasks can start eagerly: Python 3.12+, and 3.11 with the C Task.
EAGER_START = sys.version_info >= (3, 12) or (
    sys.version_info >= (3, 11) and _CTask is not None and asyncio.Task is _CTask
)

Starter = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class _FirstStep:
    """Takes the loop's place while a Task is created: keeps the first-step callback that the
    Task would schedule (Task.__init__ calls only get_debug() and call_soon() on its loop)."""

    __slots__ = ("get_debug", "step")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.get_debug = loop.get_debug
        self.step: Callable[[], Any] | None = None

    def call_soon(self, callback: Callable[[], Any], *args: Any, context: Any = None) -> None:
        self.step = callback


def eager_starter(loop: asyncio.AbstractEventLoop) -> Starter:
    """A function that makes an eagerly started Task of a coroutine on `loop` (the loop must
    be running, and the function called from its thread); where eager starts are not
    available (`EAGER_START` false), it is loop.create_task."""
    if sys.version_info >= (3, 12):
        task_type: Any = asyncio.Task

        def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
            return task_type(coro, loop=loop, eager_start=True)  # type: ignore[no-any-return]

        return start
    if not EAGER_START:
        return loop.create_task
    return _starter_311(loop)


def _starter_311(loop: asyncio.AbstractEventLoop) -> Starter:
    first = _FirstStep(loop)
    stand_in: Any = first
    task_type: Any = _CTask
    future_init = asyncio.Future.__init__
    current_task = asyncio.current_task
    from asyncio.tasks import _enter_task, _leave_task

    def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        context = copy_context()
        task: asyncio.Task[None] = task_type(coro, loop=stand_in, context=context)
        future_init(task, loop=loop)
        step = first.step
        first.step = None
        outer = current_task(loop)
        if outer is None:
            context.run(step)  # type: ignore[arg-type]
        else:  # called from inside a task: that one is not current while this one steps
            _leave_task(loop, outer)
            try:
                context.run(step)  # type: ignore[arg-type]
            finally:
                _enter_task(loop, outer)
        return task

    return start
