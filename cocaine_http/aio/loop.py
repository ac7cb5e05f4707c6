# Strategy: one place decides which event loop runs the worker. "auto" prefers uvloop (the
# worker's per-request budget is small, docs/benchmarks.md) and falls back to asyncio when uvloop
# is not installed; asking for uvloop explicitly when it is missing is a ConfigError, never a
# silent fallback. `loop_name` gives the string the worker logs at startup.
"""Event loop selection: asyncio or uvloop."""

from __future__ import annotations

import asyncio
from typing import Literal

from ..errors import ConfigError

LoopKind = Literal["auto", "asyncio", "uvloop"]


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop of `kind`: "auto" (uvloop when installed), "asyncio" or "uvloop".

    Raises:
        ConfigError: an unknown kind, or "uvloop" when uvloop is not installed.
    """
    if kind not in ("auto", "asyncio", "uvloop"):
        raise ConfigError(f"unknown event loop {kind!r}; expected auto, asyncio or uvloop")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ConfigError("event loop uvloop asked for, but uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """"uvloop" or "asyncio" (with the class name for other loops)."""
    module = type(loop).__module__
    if module.startswith("uvloop"):
        return "uvloop"
    if module.startswith("asyncio"):
        return "asyncio"
    return f"{module}.{type(loop).__name__}"
