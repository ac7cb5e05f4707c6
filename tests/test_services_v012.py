"""The services client on the v0.12 dialect against in-test servers that answer as the real
runtime does (frames carry the headers element; resolve returns graphs; errors are
[category, code]). The real runtime itself is in tests/conformance_v012."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cocaine_http.aio.channel import Channel, serve
from cocaine_http.errors import (
    RemoteProtocolError,
    ServiceError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from cocaine_http.protocol.dialect import V0_11, V0_12, pack
from cocaine_http.protocol.service import (
    CallTable,
    MethodProtocol,
    ReplyStep,
    follow,
    parse_graph,
)
from cocaine_http.services import Client, dialect_from_argv, locators_from_argv
from cocaine_http.services.logger import DEBUG, ERROR, INFO

HEADERS = [[False, "trace_id", b"\0" * 8], [False, "span_id", b"\0" * 8],
           [False, "parent_id", b"\0" * 8]]
VALUE = {0: ["value", {}], 1: ["error", {}]}
STREAM = {0: ["write", None], 1: ["error", {}], 2: ["close", {}]}


def frame(channel: int, mid: int, args: list[Any]) -> bytes:
    """A frame as the v0.12 runtime sends it: with the headers element."""
    return pack([channel, mid, args, HEADERS])


class Runtime12Stub:
    """Locator, storage-like and app-like services on one port each, v0.12 framing."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}
        self.seen: list[tuple[str, int, int, list[Any]]] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.ports: dict[str, int] = {}

    async def start(self) -> Runtime12Stub:
        for name in ("locator", "storage", "echo", "logging"):
            server = await serve(("127.0.0.1", 0), lambda ch, n=name: self._accept(n, ch),
                                 dialect=V0_12, raw=True)
            self.servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        return self

    def _accept(self, name: str, channel: Channel) -> None:
        channel.on_message = lambda mid, ch, args: self._on(name, channel, mid, ch, args)

    def _on(self, name: str, channel: Channel, mid: int, ch: int, args: list[Any]) -> None:
        self.seen.append((name, ch, mid, args))
        if name == "locator":
            target = args[0].decode()
            if target == "storage":
                graph = {0: ["read", {}, VALUE], 1: ["write", {}, VALUE]}
            elif target == "echo":
                graph = {0: ["enqueue", STREAM, STREAM]}
            elif target == "logging":
                graph = {0: ["emit", {}, {}], 1: ["verbosity", {}, VALUE]}
            else:
                channel.send(ch, frame(ch, 1, [[10, 1], "service is not available"]))
                return
            channel.send(ch, frame(ch, 0, [[["127.0.0.1", self.ports[target]]], 1, graph]))
        elif name == "storage" and mid == 0:
            key = args[1].decode()
            if key in self.store:
                channel.send(ch, frame(ch, 0, [self.store[key]]))
            else:
                channel.send(ch, frame(ch, 1, [[12, 2], f"{key}: No such file or directory"]))
        elif name == "storage" and mid == 1:
            self.store[args[1].decode()] = args[2]
            channel.send(ch, frame(ch, 0, []))
        elif name == "logging" and mid == 1:
            channel.send(ch, frame(ch, 0, [1]))  # info
        elif name == "echo" and mid == 2:  # close: answer what was written, in two writes
            data = b"".join(a[0] for n, c, m, a in self.seen if n == "echo" and c == ch and m == 0
                            and len(a) == 1 and isinstance(a[0], bytes) and a[0] != b"ping")
            channel.send(ch, [frame(ch, 0, [b"head"]), frame(ch, 0, [data]), frame(ch, 2, [])])

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def stub() -> Any:
    runtime = await Runtime12Stub().start()
    yield runtime
    await runtime.close()


class TestGraphs:
    def test_parse_and_follow_a_streaming_graph(self):
        """write stays, error and close end; a message the state lacks is the peer's fault."""
        graph = parse_graph(STREAM)

        assert follow(graph, 0) == (ReplyStep.DATA, graph)
        assert follow(graph, 1) == (ReplyStep.ERROR, {})
        assert follow(graph, 2) == (ReplyStep.END, {})
        with pytest.raises(RemoteProtocolError, match="message 7 is not allowed"):
            follow(graph, 7)

    def test_value_ends_with_data_and_emit_is_mute(self):
        """A primitive answer is one value (data that ends the call); emit answers nothing."""
        assert follow(parse_graph(VALUE), 0) == (ReplyStep.LAST, {})
        assert MethodProtocol("emit", {}, {}).mute
        assert MethodProtocol("enqueue", parse_graph(STREAM), parse_graph(STREAM)).streaming

    def test_call_table_tracks_each_call_state(self):
        """Two calls on different graphs move independently."""
        table = CallTable()
        stream = table.open(parse_graph(STREAM))
        value = table.open(parse_graph(VALUE))

        assert table.follow(stream.session, 0)[0] is ReplyStep.DATA
        assert table.follow(value.session, 0)[0] is ReplyStep.LAST
        assert table.follow(stream.session, 2)[0] is ReplyStep.END
        assert table.follow(99, 0) is None


class TestDialectRules:
    def test_resolution_layouts(self):
        """v0.11 and v0.12 answers both unpack as ((host, port), version, table)."""
        v11 = V0_11.resolution([["h", 1], 3, {0: "read"}])
        v12 = V0_12.resolution([[["h", 1], ["h2", 2]], 3, {0: [b"read", {}, VALUE]}])

        assert tuple(v11) == tuple(v12) == (("h", 1), 3, {0: "read"})
        assert (v12[0], v12[2], len(v12)) == (("h", 1), {0: "read"}, 3)
        assert v12.endpoints == (("h", 1), ("h2", 2))
        with pytest.raises(RemoteProtocolError, match="v0.12 resolve answer"):
            V0_12.resolution([["h", 1], 3, {0: "read"}])

    def test_errors_keep_category_and_code(self):
        """[category, code] stays two numbers; a bare code has no category."""
        assert V0_12.service_error([[12, 2], b"gone"]) == (12, 2, "gone")
        assert V0_11.service_error([5, "boom"]) == (None, 5, "boom")
        with pytest.raises(RemoteProtocolError):
            V0_12.service_error([[12, 2]])

    def test_log_levels(self):
        """Library levels map to blackhole's 0 debug .. 3 error; a message goes out when its
        wire level is at least the verbosity (v0.12) or its level at most it (v0.11)."""
        assert [V0_12.log_level(lv) for lv in (ERROR, INFO, DEBUG)] == [3, 1, 0]
        assert V0_12.log_enabled(ERROR, 2) and not V0_12.log_enabled(DEBUG, 1)
        assert V0_11.log_enabled(INFO, 3) and not V0_11.log_enabled(DEBUG, 3)
        assert V0_12.emit_args(INFO, "app/a", "m", [("k", 1)]) == [1, "app/a", "m", [["k", 1]]]
        assert V0_11.emit_args(INFO, "app/a", "m", [("k", 1)]) == [3, "app/a", "m"]

    def test_locator_lists(self):
        """--locator under protocol 1 is a comma list; IPv6 hosts come in brackets."""
        argv = ["x", "--locator", "[::1]:10053,127.0.0.1:10054", "--protocol", "1"]

        assert locators_from_argv(argv) == ["[::1]:10053", "127.0.0.1:10054"]
        assert locators_from_argv(["x"]) == ["127.0.0.1:10053"]

    def test_client_dialect_from_argv_or_argument(self, monkeypatch):
        """Client() inside a worker takes --protocol and every --locator entry; an explicit
        protocol wins."""
        monkeypatch.setattr("sys.argv", ["slave", "--locator", "[::1]:1,127.0.0.1:2",
                                         "--protocol", "1"])
        inside = Client()
        explicit = Client(protocol="v0.11")

        assert inside.dialect is V0_12 and explicit.dialect is V0_11
        assert [str(e) for e in inside.locator_endpoints] == ["[::1]:1", "127.0.0.1:2"]
        assert dialect_from_argv(["slave"]) is V0_11
        with pytest.raises(ValueError, match="unknown protocol"):
            Client("127.0.0.1:1", protocol=7)


class TestClient:
    async def test_resolve_and_call_with_headers_in_every_frame(self, stub):
        """Frames with the headers element are accepted; write/read round trip; the first
        channel on each connection is 1 and ids grow."""
        async with Client(f"127.0.0.1:{stub.ports['locator']}", protocol=1, timeout=5) as client:
            storage = await client.service("storage")
            assert await storage.write("ns", "k", b"\x00\xff") is None
            assert await storage.read("ns", "k") == b"\x00\xff"

        assert [(n, ch, mid) for n, ch, mid, _ in stub.seen] == [
            ("locator", 1, 0), ("storage", 1, 1), ("storage", 2, 0)]

    async def test_errors_map_to_classes_with_both_numbers(self, stub):
        """[12, 2] is a ServiceError with category and code; [10, 1] from the locator is
        ServiceNotFoundError."""
        async with Client(f"127.0.0.1:{stub.ports['locator']}", protocol=V0_12, timeout=5) as client:
            storage = await client.service("storage")
            with pytest.raises(ServiceError) as info:
                await storage.read("ns", "missing")
            with pytest.raises(ServiceNotFoundError):
                await client.service("nosuch")

        assert (info.value.category, info.value.code) == (12, 2)
        assert str(info.value).endswith("[12, 2]")

    async def test_enqueue_streams_up_and_down(self, stub):
        """An app's enqueue: [event], then write(data) and close upstream; write chunks and
        close downstream, as a stream."""
        async with Client(f"127.0.0.1:{stub.ports['locator']}", protocol=V0_12, timeout=5) as client:
            echo = await client.service("echo")
            chunks = [c async for c in echo.enqueue("ping", b"body")]

        assert chunks == [b"head", b"body"]
        sent = [(mid, args) for n, _, mid, args in stub.seen if n == "echo"]
        assert sent == [(0, [b"ping"]), (0, [b"body"]), (2, [])]

    async def test_dead_locators_are_skipped_and_reported(self, stub, unused_tcp_port):
        """The next locator is tried after a dead one; when all fail, each is named."""
        dead = f"127.0.0.1:{unused_tcp_port}"
        async with Client(f"{dead},127.0.0.1:{stub.ports['locator']}", protocol=V0_12,
                          timeout=5, policy="none") as client:
            assert (await client.resolve("storage")).version == 1
        async with Client([dead], protocol=V0_12, timeout=5, policy="none") as client:
            with pytest.raises(ServiceUnavailableError, match=f"locator at {dead}"):
                await client.resolve("storage")

    async def test_v011_request_dropped_says_so(self, stub):
        """A server that drops the connection on a request it cannot read (what the v0.12
        runtime does with v0.11 framing): the error says it closed without answering."""

        async def dropper() -> asyncio.AbstractServer:
            return await serve(("127.0.0.1", 0),
                               lambda ch: setattr(ch, "on_message", lambda *a: ch.close()),
                               raw=True)

        server = await dropper()
        port = server.sockets[0].getsockname()[1]
        try:
            async with Client(f"127.0.0.1:{port}", protocol=V0_11, timeout=5) as client:
                with pytest.raises(ServiceUnavailableError) as info:
                    await client.resolve("storage")
        finally:
            server.close()
            await server.wait_closed()

        assert "closed the connection without answering resolve('storage')" in str(info.value)
        assert "this client speaks v0.11" in str(info.value)


class TestLogger:
    async def test_levels_and_attributes(self, stub):
        """Verbosity 1 (info): debug is dropped locally, info goes out as priority 1 with its
        attributes, error as 3; emit gets no reply and needs none."""
        async with Client(f"127.0.0.1:{stub.ports['locator']}", protocol=V0_12, timeout=5) as client:
            logger = client.logger("app/t")
            assert await logger.wait_ready(5)
            logger.debug("hidden")
            logger.info("shown %d", 1, attributes={"k": "v", "n": 2, "o": object})
            logger.error("bad")
            for _ in range(100):
                if len([x for x in stub.seen if x[0] == "logging" and x[2] == 0]) == 2:
                    break
                await asyncio.sleep(0.01)

        emits = [args for n, _, mid, args in stub.seen if n == "logging" and mid == 0]
        assert logger.verbosity == 1
        assert emits[0][:3] == [1, b"app/t", b"shown 1"]
        assert emits[0][3][:2] == [[b"k", b"v"], [b"n", 2]]
        assert emits[0][3][2][1].startswith(b"<class")
        assert emits[1] == [3, b"app/t", b"bad", []]


async def test_service_with_a_plain_table_on_v012(stub):
    """Service(..., dialect=V0_12) given endpoint and a plain {id: name} table: methods
    without a graph answer one value or an error, the common v0.12 shape."""
    from cocaine_http.services import Service

    svc = Service("storage", endpoint=("127.0.0.1", stub.ports["storage"]),
                  table={0: "read", 1: "write"}, dialect=V0_12, timeout=5)
    try:
        await svc.write("ns", "plain", b"v")
        assert await svc.read("ns", "plain") == b"v"
    finally:
        svc.close()
