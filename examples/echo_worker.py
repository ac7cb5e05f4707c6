#!/usr/bin/env python3
"""A raw Cocaine worker: `ping` echoes the request, `upper` answers it in upper case.

Run it the way cocaine-runtime does (the runtime's options last, in any order):

    python examples/echo_worker.py --app echo --endpoint /run/cocaine/echo.sock \
        --locator 127.0.0.1:10053 --uuid 0e7f4b9c-5d1a-4c2e-9a57-3f6c2b8d1e40

or let the dev runtime spawn it: `cocaine-http dev --slave examples/echo_worker.py`.

The file is executable, so a manifest's `slave` may name it directly (cocaine-runtime execs the
slave file itself). Its shebang takes the first `python3` on the runtime's own PATH, which must
have cocaine_http installed; a PATH in the manifest's `environment` does not change that (the
runtime passes its own PATH first). Otherwise point the shebang at the venv's interpreter
(`#!/srv/venv/bin/python`).
"""

from __future__ import annotations

import logging
import sys

from cocaine_http.aio.worker import Session, Worker


def make_worker(argv: list[str] | None = None) -> Worker:
    """The echo worker: one handler per event, each a plain async function."""
    worker = Worker(argv)

    @worker.on("ping")
    async def ping(session: Session) -> None:
        async for chunk in session:
            session.write(chunk)
        session.end()

    @worker.on("upper")
    async def upper(session: Session) -> None:
        body = b"".join([chunk async for chunk in session])
        session.write(body.upper())
        session.end()

    return worker


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return make_worker(argv).run()


if __name__ == "__main__":
    sys.exit(main())
