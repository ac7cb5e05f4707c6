# Strategy: a worker written directly on Channel and the dialect encoders, so the dev runtime is
# tested against the bare protocol (docs/protocol.md §3) and not against our Worker library. Its
# behaviour is chosen per event, plus a few environment variables (the manifest environment):
#   RAW_HEARTBEAT=<seconds>   heartbeat interval (default 0.5)
#   RAW_NO_HEARTBEAT=1        handshake, then never heartbeat (startup timeout)
#   RAW_EXIT_AT_START=<code>  exit before connecting
#   RAW_IGNORE_TERMINATE=1    ignore the engine's terminate
#   RAW_MARK=<text>           echoed back by the "info" event
"""A raw v0.11 worker for the dev runtime tests."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import msgpack

from cocaine_http.aio.channel import Channel
from cocaine_http.protocol.dialect import V0_11 as D
from cocaine_http.protocol.dialect import pack


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


class RawWorker:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.uuid = option(argv, "--uuid")
        self.endpoint = option(argv, "--endpoint")
        self.channel = Channel()
        self.wire = bytearray()
        self.requests: dict[int, tuple[str, bytearray]] = {}
        self.held: dict[int, bytes] = {}  # session -> final payload sent on release
        self.done = asyncio.Event()
        self.heartbeat: asyncio.TimerHandle | None = None
        self.interval = float(os.environ.get("RAW_HEARTBEAT", "0.5"))

    async def run(self) -> int:
        ch = self.channel
        ch.on_invoke = self.on_invoke
        ch.on_chunk = lambda sid, data: self.requests[sid][1].extend(data)
        ch.on_choke = self.on_request_end
        ch.on_terminate = self.on_terminate
        ch.on_socket_error = lambda errno: self.done.set()
        receive = ch.data_received

        def data_received(data: bytes) -> None:
            self.wire.extend(data)
            receive(data)

        ch.data_received = data_received  # type: ignore[method-assign]
        if not await ch.connect(self.endpoint):
            return 1
        ch.send(0, D.handshake(self.uuid))
        if os.environ.get("RAW_NO_HEARTBEAT") != "1":
            self.beat()
        await self.done.wait()
        await asyncio.sleep(0)
        ch.close()
        return 0

    def beat(self) -> None:
        self.channel.send(0, D.heartbeat())
        loop = asyncio.get_running_loop()
        self.heartbeat = loop.call_later(self.interval, self.beat)

    def reply(self, sid: int, *chunks: bytes, error: tuple[int, str] | None = None) -> None:
        parts = [D.chunk(sid, c) for c in chunks]
        if error is not None:
            parts.append(D.error(sid, *error))
        parts.append(D.choke(sid))
        self.channel.send(sid, parts)

    def on_invoke(self, sid: int, event: str) -> None:
        self.requests[sid] = (event, bytearray())

    def on_request_end(self, sid: int) -> None:
        event, data = self.requests.pop(sid)
        handler = getattr(self, "ev_" + event.replace("-", "_"), None)
        if handler is None:
            self.reply(sid, error=(-100, f"there is no handler for event {event}"))
        else:
            handler(sid, bytes(data))

    def on_terminate(self, session: int, code: int, reason: str) -> None:
        if os.environ.get("RAW_IGNORE_TERMINATE") == "1":
            return
        self.release_all()
        self.channel.send(0, D.terminate(1, reason))
        self.done.set()

    def release_all(self) -> int:
        held, self.held = self.held, {}
        for sid, payload in held.items():
            self.reply(sid, payload)
        return len(held)

    # -- events ----------------------------------------------------------------------------------

    def ev_echo(self, sid: int, data: bytes) -> None:
        self.reply(sid, data)

    def ev_pid(self, sid: int, data: bytes) -> None:
        self.reply(sid, str(os.getpid()).encode())

    def ev_info(self, sid: int, data: bytes) -> None:
        info = {"argv": self.argv, "cwd": os.getcwd(), "mark": os.environ.get("RAW_MARK")}
        self.reply(sid, json.dumps(info).encode())

    def ev_wire(self, sid: int, data: bytes) -> None:
        self.reply(sid, bytes(self.wire).hex().encode())

    def ev_hold(self, sid: int, data: bytes) -> None:
        self.channel.send(sid, D.chunk(sid, b"held %d" % sid))
        self.held[sid] = b"released %d" % sid

    def ev_release(self, sid: int, data: bytes) -> None:
        self.reply(sid, b"%d" % self.release_all())

    def ev_stray(self, sid: int, data: bytes) -> None:
        """Messages whose session is unusable (a string, a negative number), then the reply."""
        self.channel.send(sid, [pack([4, "abc", [b"stray"]]), pack([6, -1, []])])
        self.reply(sid, b"after strays")

    def ev_fail(self, sid: int, data: bytes) -> None:
        self.reply(sid, b"partial", error=(5, "boom"))

    def ev_mute(self, sid: int, data: bytes) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        self.reply(sid, b"muted")

    def ev_broken(self, sid: int, data: bytes) -> None:
        self.reply(sid, b"breaking")
        self.channel.send(0, D.terminate(2, "bad code"))
        self.done.set()

    def ev_http(self, sid: int, data: bytes) -> None:
        method, uri, version, headers, body = msgpack.unpackb(data, raw=True)
        path = uri.split(b"?")[0].decode()
        route = getattr(self, "http_" + path.strip("/").split("/")[0].replace("-", "_"), None)
        (route or self.http_echo)(sid, [method, uri, version, headers, body], path)

    # -- HTTP routes (uri path -> behaviour) -----------------------------------------------------

    def head(self, sid: int, status: int, headers: list[list[str]]) -> bytes:
        return pack([status, headers])

    def http_echo(self, sid: int, frame: list, path: str) -> None:
        method, uri, version, headers, body = frame
        doc = {
            "method": method.decode(),
            "uri": uri.decode(),
            "version": version.decode(),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in headers],
            "body": body.decode("latin-1"),
        }
        head = self.head(sid, 200, [["Content-Type", "application/json"], ["X-Sid", str(sid)]])
        self.reply(sid, head, pack(json.dumps(doc).encode()))

    def http_length(self, sid: int, frame: list, path: str) -> None:
        head = self.head(sid, 200, [["Content-Length", "11"]])
        self.reply(sid, head, pack(b"hello"), pack(b""), pack(b" world"))

    def http_excess(self, sid: int, frame: list, path: str) -> None:
        self.reply(sid, self.head(sid, 200, [["Content-Length", "3"]]), pack(b"abcdef"))

    def http_short(self, sid: int, frame: list, path: str) -> None:
        self.reply(sid, self.head(sid, 200, [["Content-Length", "10"]]), pack(b"abc"))

    def http_chunks(self, sid: int, frame: list, path: str) -> None:
        self.reply(sid, self.head(sid, 201, []), *[pack(b"part%d;" % i) for i in range(5)])

    def http_error_before(self, sid: int, frame: list, path: str) -> None:
        self.reply(sid, error=(1, "boom"))

    def http_error_after(self, sid: int, frame: list, path: str) -> None:
        self.reply(sid, self.head(sid, 200, []), pack(b"partial"), error=(1, "boom"))

    def http_bad_head(self, sid: int, frame: list, path: str) -> None:
        self.reply(sid, pack({"not": "a head"}))

    def http_stream(self, sid: int, frame: list, path: str) -> None:
        head = D.chunk(sid, self.head(sid, 200, []))
        self.channel.send(sid, [head, D.chunk(sid, pack(b"first;"))])
        self.held[sid] = pack(b"second")

    def http_slow(self, sid: int, frame: list, path: str) -> None:
        self.held[sid] = pack(b"late")


def main() -> int:
    code = os.environ.get("RAW_EXIT_AT_START")
    if code is not None:
        print("exiting at start as asked", flush=True)
        return int(code)
    print("raw worker started", flush=True)
    return asyncio.run(RawWorker(sys.argv[1:]).run())


if __name__ == "__main__":
    sys.exit(main())
