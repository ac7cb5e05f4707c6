"""The adapter tests' hello apps, in a worker that counts the access-log lines Python formatted
(those the C line declined): at exit it prints "python-formatted lines: N" on stderr."""

from __future__ import annotations

import atexit
import sys
from typing import Any

from cocaine_http.adapters import accesslog
from tests.workers.adapter_apps import hello_asgi, hello_wsgi

_formatted: list[None] = []  # one item per line (list.append is atomic across pool threads)
_reference = accesslog.record_line


def _counted(*args: Any) -> str:
    _formatted.append(None)
    return _reference(*args)


accesslog.record_line = _counted
atexit.register(lambda: print(f"python-formatted lines: {len(_formatted)}", file=sys.stderr,
                              flush=True))

__all__ = ["hello_asgi", "hello_wsgi"]
