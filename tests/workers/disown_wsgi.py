"""A WSGI worker with short heartbeat timers (a disown within a second), serving
tests.workers.adapter_apps:hang_wsgi with two threads: `python disown_wsgi.py <runtime argv>`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cocaine_http.adapters.app import serve  # noqa: E402
from cocaine_http.cli import setup_logging  # noqa: E402
from cocaine_http.config import Config  # noqa: E402
from tests.workers.adapter_apps import hang_wsgi  # noqa: E402

if __name__ == "__main__":
    setup_logging("info")
    sys.exit(serve(hang_wsgi, Config(threads=2, access_log=False), sys.argv[1:],
                   heartbeat_interval=0.2, disown_timeout=1.0, termination_grace=1.0))
