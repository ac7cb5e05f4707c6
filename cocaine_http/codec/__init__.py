# Strategy: pick the decoder once at import. The C decoder is the default; falling back to the
# Python reference is never silent: IMPLEMENTATION says which one is live, the worker logs it,
# COCAINE_HTTP_PUREPYTHON=1 forces Python and COCAINE_HTTP_REQUIRE_C=1 makes a missing C build an
# ImportError instead of a fallback. The other C fast paths of the package (request frames,
# response framing, access-log lines) follow the same two switches through `native()`, so the
# pure-Python run of the suite exercises every Python reference at once.
"""Incremental decoders of the Cocaine wire format (C, with a pure-Python reference)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from ..errors import DecodeError, FrameError, LimitExceededError
from . import _python
from .records import DEFAULT_MAX_DEPTH, DEFAULT_MAX_MESSAGE_SIZE, Message

PythonDecoder = _python.Decoder

Decoder: type[Any]
CDecoder: type[Any] | None
if os.environ.get("COCAINE_HTTP_PUREPYTHON") == "1":
    Decoder = PythonDecoder
    IMPLEMENTATION = "python"
    CDecoder = None
else:
    try:
        from ._c import Decoder as _CDecoder
    except ImportError:
        if os.environ.get("COCAINE_HTTP_REQUIRE_C") == "1":
            raise
        CDecoder = None
        Decoder = PythonDecoder
        IMPLEMENTATION = "python"
    else:
        CDecoder = Decoder = _CDecoder
        IMPLEMENTATION = "c"



def native(module: str) -> ModuleType | None:
    """A compiled fast path of the package (`module` by its full dotted name), or None when
    Python must serve: under COCAINE_HTTP_PUREPYTHON=1, or when the build is missing (which
    under COCAINE_HTTP_REQUIRE_C=1 raises the ImportError instead)."""
    if os.environ.get("COCAINE_HTTP_PUREPYTHON") == "1":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("COCAINE_HTTP_REQUIRE_C") == "1":
            raise
        return None


__all__ = [
    "CDecoder",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DecodeError",
    "Decoder",
    "FrameError",
    "IMPLEMENTATION",
    "LimitExceededError",
    "Message",
    "PythonDecoder",
    "native",
]
