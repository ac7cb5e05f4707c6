"""cocaine_http: run WSGI and ASGI apps, and native Cocaine handlers, as Cocaine workers.

The public names are imported lazily so that `python -m cocaine_http` and the sans-IO layers
do not pay for asyncio, threads or the services client until they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Channel": "cocaine_http.aio.channel",
    "Worker": "cocaine_http.aio.worker",
    "Session": "cocaine_http.aio.worker",
    "Client": "cocaine_http.services.client",
    "BaseService": "cocaine_http.services.base",
    "Service": "cocaine_http.services.service",
    "Logger": "cocaine_http.services.logger",
    "run": "cocaine_http.adapters.app",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cocaine_http' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
