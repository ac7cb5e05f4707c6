# Strategy: the dev runtime imitates cocaine-runtime v0.11 for one app on one machine: an engine
# that spawns and drives real worker processes (engine.py, slave.py), an HTTP front that packs
# requests like Cocaine's proxy (front.py), and the services a worker expects (services.py). The
# names below are the public surface; submodules are imported lazily so that `import
# cocaine_http.dev` stays cheap for the CLI.
"""Local imitation of cocaine-runtime v0.11: engine, HTTP front and services for one app."""

from __future__ import annotations

from typing import Any

__all__ = ["DevRuntime", "Engine", "Front", "Profile", "ReplySink"]

_WHERE = {
    "DevRuntime": "runtime",
    "Engine": "engine",
    "Front": "front",
    "Profile": "profile",
    "ReplySink": "slave",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(name)
