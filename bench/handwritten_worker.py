"""The floor of any Python worker: a hand-written v0.11 worker with no sessions and no HTTP.

It handshakes, then answers every choke with a fixed response (a head chunk, a body chunk and
a choke), all the answers of one read in one write, decoded and encoded with msgpack. It keeps
no session state, checks nothing and ignores every other message, so it is not a server: it is
what the interpreter, the event loop and the socket cost per request by themselves. The bench
runs it beside the real worker (`python -m bench http` on the socket, `python -m bench
instructions` in process) so that what the worker adds above it shows in every run.

Usage: python -m bench.handwritten_worker --endpoint PATH --uuid ID [other worker options]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgpack

HEAD = msgpack.packb([200, [["Content-Type", "text/plain"], ["Content-Length", "12"]]])
BODY = b"Hello world!"
_CHOKE = 6


class HandwrittenWorker(asyncio.Protocol):
    """The whole worker: one Unpacker, one write per read."""

    def __init__(self, uuid: str = "bench") -> None:
        self.uuid = uuid
        self.transport: Any = None
        self.unpacker = msgpack.Unpacker(raw=True)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(msgpack.packb([0, 0, [self.uuid]]) + msgpack.packb([1, 0, []]))

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        answers = [
            msgpack.packb([4, sid, [HEAD]]) + msgpack.packb([4, sid, [BODY]])
            + msgpack.packb([6, sid, []])
            for kind, sid, _args in self.unpacker if kind == _CHOKE
        ]
        if answers:
            self.transport.write(b"".join(answers))


async def _serve(endpoint: str, uuid: str) -> None:
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    class Connection(HandwrittenWorker):
        def connection_lost(self, exc: BaseException | None) -> None:
            if not closed.done():
                closed.set_result(None)

    await loop.create_unix_connection(lambda: Connection(uuid), endpoint)
    await closed


def main(argv: list[str]) -> None:
    options = dict(zip(argv[::2], argv[1::2]))
    from cocaine_http.aio.loop import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve(options["--endpoint"], options.get("--uuid", "bench")))
    finally:
        loop.close()


if __name__ == "__main__":
    main(sys.argv[1:])
