"""Channel over real unix and tcp sockets against in-test peers, on both decoders."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bench import bench_big_post
from cocaine_http.aio import channel as channel_module
from cocaine_http.aio.channel import Channel, serve
from cocaine_http.codec import CDecoder, DecodeError, FrameError, PythonDecoder
from cocaine_http.protocol.dialect import V0_11, V11, Kind, pack
from tests.plugins.worker import LOOP_KINDS, run_on

WAIT = 10.0
DECODERS = [pytest.param(PythonDecoder, id="python")]
if CDecoder is not None:
    DECODERS.append(pytest.param(CDecoder, id="c"))


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


KINDS = ["unix", "tcp4", "localhost"] + (["tcp6"] if _ipv6_loopback() else [])


@pytest.fixture(params=DECODERS, autouse=True)
def channel_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every channel test runs on each decoder implementation (docs/design.md §7.1)."""
    monkeypatch.setattr(channel_module, "Decoder", request.param)
    return request.param


class Recorder:
    """Collects a channel's callbacks as (name, args) tuples and wakes waiters."""

    def __init__(self, channel: Channel) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()
        for name in ("on_connect", "on_invoke", "on_chunk", "on_choke", "on_error",
                     "on_terminate", "on_heartbeat", "on_message", "on_bad_message",
                     "on_dropped", "on_socket_error"):  # fmt: skip
            setattr(channel, name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.calls.append((name, *args))
            self._changed.set()

        return record

    async def until(self, predicate: Callable[[list[tuple[Any, ...]]], bool]) -> None:
        async def loop() -> None:
            while not predicate(self.calls):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), WAIT)

    @staticmethod
    async def until_true(predicate: Callable[[], bool]) -> None:
        """Poll (one loop turn at a time) until predicate() holds, with a deadline."""
        async def loop() -> None:
            while not predicate():
                await asyncio.sleep(0)

        await asyncio.wait_for(loop(), WAIT)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call[1:] for call in self.calls if call[0] == name]


class Accepted:
    """on_channel for serve(): queues each accepted Channel for the test to take."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Channel] = asyncio.Queue()

    def __call__(self, channel: Channel) -> None:
        self._queue.put_nowait(channel)

    async def get(self) -> Channel:
        return await asyncio.wait_for(self._queue.get(), WAIT)


async def listen(kind: str, tmp_path: Path, on_channel: Callable[[Channel], Any]) -> tuple[
    asyncio.AbstractServer, str
]:  # fmt: skip
    """A Channel server of `kind`; returns it and the endpoint string a client connects to."""
    if kind == "unix":
        path = str(tmp_path / "peer.sock")
        return await serve(path, on_channel), path
    host = "::1" if kind == "tcp6" else "127.0.0.1"
    server = await serve((host, 0), on_channel)
    port = server.sockets[0].getsockname()[1]
    name = {"tcp4": "127.0.0.1", "tcp6": "[::1]", "localhost": "localhost"}[kind]
    return server, f"{name}:{port}"


@pytest.fixture
async def closing() -> AsyncIterator[list[Any]]:
    """Things (channels, servers, writers) to close at teardown."""
    items: list[Any] = []
    yield items
    await close_all(items)


async def close_all(items: list[Any]) -> None:
    """Close every item, then wait for the servers: since Python 3.12 a server's wait_closed()
    waits for its connections, so they must be closed first."""
    for item in items:
        item.close()
    for item in items:
        if isinstance(item, asyncio.AbstractServer):
            await item.wait_closed()


class TestExchange:
    @pytest.mark.parametrize("kind", KINDS)
    async def test_connect_exchange_close(self, kind: str, tmp_path: Path, closing) -> None:
        """Client and accepted channels exchange messages both ways; close flushes, and the
        peer sees EOF as ESHUTDOWN."""
        accepted: asyncio.Future[Recorder] = asyncio.get_running_loop().create_future()

        def on_channel(peer: Channel) -> None:
            closing.append(peer)
            accepted.set_result(Recorder(peer))

        server, endpoint = await listen(kind, tmp_path, on_channel)
        closing.append(server)
        client = Channel()
        closing.append(client)
        mine = Recorder(client)

        assert await client.connect(endpoint) is True
        peer = await asyncio.wait_for(accepted, WAIT)
        client.send(3, [V0_11.invoke(3, "ping"), V0_11.chunk(3, b"hi"), V0_11.choke(3)])
        await peer.until(lambda calls: ("on_choke", 3) in calls)
        peer_channel = closing[-1]
        peer_channel.send(3, [V0_11.chunk(3, b"back"), V0_11.error(3, -100, "x"),
                              V0_11.choke(3), V0_11.heartbeat()])  # fmt: skip
        await mine.until(lambda calls: ("on_heartbeat",) in calls)
        client.send(0, V0_11.terminate(1, "bye"))
        client.close()
        await peer.until(lambda calls: any(c[0] == "on_socket_error" for c in calls))

        assert mine.calls == [
            ("on_connect",), ("on_chunk", 3, b"back"), ("on_error", 3, -100, "x"),
            ("on_choke", 3), ("on_heartbeat",),
        ]  # fmt: skip
        assert peer.calls == [
            ("on_invoke", 3, "ping"), ("on_chunk", 3, b"hi"), ("on_choke", 3),
            ("on_terminate", 0, 1, "bye"), ("on_socket_error", errno.ESHUTDOWN),
        ]  # fmt: skip
        assert client.closed and not client.connected

    async def test_nothing_fires_after_close(self, tmp_path: Path, closing) -> None:
        """Closing inside a callback stops delivery of the rest of the same read batch."""
        accepted = Accepted()
        server, endpoint = await listen("unix", tmp_path, accepted)
        closing.append(server)
        client = Channel()
        closing.append(client)
        mine = Recorder(client)
        seen: list[bytes] = []

        def first_only(session: int, data: bytes) -> None:
            seen.append(data)
            client.close()

        await client.connect(endpoint)
        client.on_chunk = first_only
        peer = await accepted.get()
        closing.append(peer)
        eof = Recorder(peer)
        peer.send(1, [V0_11.chunk(1, b"%d" % i) for i in range(50)])
        await eof.until(lambda calls: ("on_socket_error", errno.ESHUTDOWN) in calls)

        assert seen == [b"0"]
        assert mine.calls == [("on_connect",)]

    async def test_send_after_close_is_dropped(self, tmp_path: Path, closing) -> None:
        """send() on a closed channel neither raises nor reconnects."""
        server, endpoint = await listen("unix", tmp_path, lambda peer: None)
        closing.append(server)
        client = Channel()
        await client.connect(endpoint)

        client.close()
        client.send(1, V0_11.choke(1))

        assert client.write_buffer_size() == 0 and client.closed


class TestSocketErrors:
    async def test_connection_refused_tcp(self) -> None:
        """A bound port with no listener refuses: ECONNREFUSED, reported once."""
        with socket.socket() as bound:
            bound.bind(("127.0.0.1", 0))
            port = bound.getsockname()[1]
            client = Channel()
            mine = Recorder(client)

            ok = await client.connect(f"127.0.0.1:{port}")

        assert ok is False
        assert mine.calls == [("on_socket_error", errno.ECONNREFUSED)]

    async def test_connection_refused_unix(self, tmp_path: Path) -> None:
        """A unix socket file nobody listens on refuses: ECONNREFUSED."""
        path = str(tmp_path / "dead.sock")
        with socket.socket(socket.AF_UNIX) as bound:
            bound.bind(path)
            client = Channel()
            mine = Recorder(client)

            ok = await client.connect(path)

        assert ok is False
        assert mine.calls == [("on_socket_error", errno.ECONNREFUSED)]

    async def test_missing_unix_path_reports_enoent(self, tmp_path: Path) -> None:
        """Connecting to a path that does not exist reports ENOENT."""
        client = Channel()
        mine = Recorder(client)

        await client.connect(str(tmp_path / "nothing.sock"))

        assert mine.calls == [("on_socket_error", errno.ENOENT)]

    async def test_peer_reset_reports_econnreset(self, closing) -> None:
        """A peer that closes with SO_LINGER 0 (RST) is reported as ECONNRESET."""

        async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server = await asyncio.start_server(reset, "127.0.0.1", 0)
        closing.append(server)
        client = Channel()
        closing.append(client)
        mine = Recorder(client)

        await client.connect(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        await mine.until(lambda calls: any(c[0] == "on_socket_error" for c in calls))

        assert mine.named("on_socket_error") == [(errno.ECONNRESET,)]

    async def test_malformed_frame_closes_only_that_channel(
        self, tmp_path: Path, closing
    ) -> None:
        """Garbage from one peer closes that channel with EPROTO; another channel works on."""
        accepted = Accepted()
        good_server, good_endpoint = await listen("tcp4", tmp_path, accepted)
        closing.append(good_server)

        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(V0_11.heartbeat() + b"\xc1\x00\x00")  # 0xc1 is never valid msgpack
            closing.append(writer)

        bad_server = await asyncio.start_unix_server(garbage, str(tmp_path / "bad.sock"))
        closing.append(bad_server)
        good, bad = Channel(), Channel()
        closing.extend([good, bad])
        good_calls, bad_calls = Recorder(good), Recorder(bad)

        await good.connect(good_endpoint)
        await bad.connect(str(tmp_path / "bad.sock"))
        await bad_calls.until(lambda calls: any(c[0] == "on_socket_error" for c in calls))
        good_peer = await accepted.get()
        closing.append(good_peer)
        good_peer.send(0, V0_11.heartbeat())
        await good_calls.until(lambda calls: ("on_heartbeat",) in calls)

        assert bad_calls.calls == [("on_connect",), ("on_heartbeat",),
                                   ("on_socket_error", errno.EPROTO)]  # fmt: skip
        assert isinstance(bad.last_error, DecodeError) and bad.closed
        assert good.connected and good_calls.named("on_socket_error") == []


async def _pair(tmp_path: Path, closing: list[Any]) -> tuple[Channel, Channel]:
    """A client channel and the accepted peer channel over a unix socket."""
    accepted = Accepted()
    server, endpoint = await listen("unix", tmp_path, accepted)
    closing.append(server)
    client = Channel()
    closing.append(client)
    assert await client.connect(endpoint)
    peer = await accepted.get()
    closing.append(peer)
    return client, peer


class TestDelivery:
    """The receive path's rules, whichever path (hot loop or general) a message takes."""

    async def test_every_argument_shape_reaches_its_callback(self, tmp_path: Path, closing) -> None:
        """Short, long, empty and non-UTF-8 strings, errors, terminate, handshake and unknown
        ids arrive with the same values on both decoders."""
        client, peer = await _pair(tmp_path, closing)
        mine = Recorder(client)
        peer.send(1, [
            V0_11.invoke(1, "http"), V0_11.invoke(2, "a-much-longer-event"),
            pack([3, 3, [b"\xff\xfe"]]), V0_11.chunk(1, b""), V0_11.chunk(1, b"abc"),
            V0_11.chunk(1, b"x" * 300), V0_11.choke(1), V0_11.heartbeat(),
            V0_11.error(2, 7, "bad"), pack([5, 2, [[1, 9], b"cat"]]),
            V0_11.terminate(3, "bye"), pack([0, 0, [b"uuid"]]),
            pack([9, 4, [1, b"z"]]), pack([6, 5, [b"extra"]]),
            pack([2**63, 1, []]), V0_11.heartbeat(),
        ])  # fmt: skip
        await mine.until(lambda calls: calls.count(("on_heartbeat",)) == 2)

        assert mine.calls == [
            ("on_invoke", 1, "http"), ("on_invoke", 2, "a-much-longer-event"),
            ("on_invoke", 3, "\ufffd\ufffd"), ("on_chunk", 1, b""), ("on_chunk", 1, b"abc"),
            ("on_chunk", 1, b"x" * 300), ("on_choke", 1), ("on_heartbeat",),
            ("on_error", 2, 7, "bad"), ("on_error", 2, 9, "cat"), ("on_terminate", 0, 3, "bye"),
            ("on_message", 0, 0, [b"uuid"]), ("on_message", 9, 4, [1, b"z"]), ("on_choke", 5),
            ("on_message", 2**63, 1, []), ("on_heartbeat",),
        ]  # fmt: skip

    async def test_a_callback_set_by_a_callback_gets_the_rest_of_the_read(
        self, tmp_path: Path, closing
    ) -> None:
        """Callbacks are read per message in effect: one replaced during a read (while the
        hot loop holds the old ones) receives every later message of that read."""
        client, peer = await _pair(tmp_path, closing)
        old: list[Any] = []
        new: list[Any] = []

        def on_invoke(session: int, event: str) -> None:
            client.on_chunk = lambda session, data: new.append(data)

        client.on_invoke = on_invoke
        client.on_chunk = lambda session, data: old.append(data)
        client.on_choke = lambda session: new.append(session)
        peer.send(1, [
            V0_11.chunk(1, b"a"), V0_11.invoke(1, "x"), V0_11.chunk(1, b"b"),
            V0_11.chunk(1, b"c" * 100), V0_11.error(1, 1, "e"), V0_11.choke(1),
        ])  # fmt: skip
        await Recorder.until_true(lambda: 1 in new)

        assert old == [b"a"] and new == [b"b", b"c" * 100, 1]

    async def test_a_raising_callback_does_not_stop_the_read(
        self, tmp_path: Path, closing
    ) -> None:
        """An exception in a callback is logged; the messages after it are still delivered."""
        client, peer = await _pair(tmp_path, closing)
        got: list[Any] = []

        def on_chunk(session: int, data: bytes) -> None:
            got.append(data)
            raise RuntimeError("callback bug")

        client.on_chunk = on_chunk
        client.on_choke = got.append
        peer.send(1, [V0_11.chunk(1, b"1"), V0_11.chunk(1, b"2"), V0_11.choke(1)])
        await Recorder.until_true(lambda: 1 in got)

        assert got == [b"1", b"2", 1] and client.connected

    async def test_bad_arguments_are_reported_and_the_stream_goes_on(
        self, tmp_path: Path, closing
    ) -> None:
        """Well-framed messages whose arguments do not fit (the stream is still in sync) go to
        on_bad_message with the kind and what was wrong; the messages after them arrive, and
        the channel stays open."""
        client, peer = await _pair(tmp_path, closing)
        mine = Recorder(client)
        peer.send(1, [
            V0_11.chunk(1, b"ok"), pack([4, 1, [5]]), pack([3, 2, []]),
            pack([3, 3, [b"a", b"b"]]), pack([5, 1, [b"x", b"m"]]), pack([2, 0, []]),
            V0_11.choke(1),
        ])  # fmt: skip
        await mine.until(lambda calls: ("on_choke", 1) in calls)

        bad = mine.named("on_bad_message")
        assert [(kind, session) for kind, session, _ in bad] == [
            (Kind.CHUNK, 1), (Kind.INVOKE, 2), (Kind.INVOKE, 3), (Kind.ERROR, 1),
            (Kind.TERMINATE, 0),
        ]  # fmt: skip
        assert "chunk takes one raw string, got [5]" in bad[0][2]
        assert "invoke takes one event name" in bad[1][2]
        assert "integer code" in bad[3][2]
        assert mine.named("on_chunk") == [(1, b"ok")] and client.connected
        assert mine.named("on_socket_error") == []

    async def test_unusable_sessions_are_logged_and_dropped(
        self, tmp_path: Path, closing, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Well-framed messages whose session is no non-negative integer (a string, a negative
        number, a float, nil) have no session to fail: each is logged with its id and what was
        wrong, reported to on_dropped, and the messages after it arrive."""
        client, peer = await _pair(tmp_path, closing)
        mine = Recorder(client)
        peer.send(1, [
            V0_11.chunk(1, b"ok"), pack([4, "abc", [b"x"]]), pack([3, -5, [b"ping"]]),
            pack([4, 1.5, [b"x"]]), pack([6, None, []]), pack([4, b"s" * 10_000, [b"x"]]),
            V0_11.chunk(1, b"still"), V0_11.choke(1),
        ])  # fmt: skip
        await mine.until(lambda calls: ("on_choke", 1) in calls)

        got = "session must be a non-negative integer, got "
        assert mine.named("on_dropped") == [
            (4, got + "string b'abc'"), (3, got + "integer -5"), (4, got + "float 1.5"),
            (6, got + "nil"), (4, got + "string b'" + "s" * 32 + "'... (10000 bytes)"),
        ]  # fmt: skip
        assert mine.named("on_chunk") == [(1, b"ok"), (1, b"still")] and client.connected
        assert mine.named("on_socket_error") == mine.named("on_bad_message") == []
        warnings = [r.getMessage() for r in caplog.records if r.name == "cocaine_http.channel"]
        assert any(w.startswith("dropped message 3 from ") and w.endswith(got + "integer -5")
                   for w in warnings), warnings  # fmt: skip

    @pytest.mark.parametrize("raw", [False, True])
    async def test_unusable_sessions_are_dropped_on_the_general_path(self, raw: bool) -> None:
        """The general path (raw channels, dialects without fast ids) drops them alike: a raw
        channel's on_message never sees a message without a usable session."""
        channel = Channel(_RoutedV11(), raw=raw)
        mine = Recorder(channel)
        channel.data_received(pack([4, b"x", [b"a"]]) + pack([2**64 - 1, -1, []])
                              + V0_11.chunk(1, b"ok"))  # fmt: skip

        assert [mid for mid, _ in mine.named("on_dropped")] == [4, 2**64 - 1]
        delivered = mine.named("on_message") if raw else mine.named("on_chunk")
        assert delivered == ([(4, 1, [b"ok"])] if raw else [(1, b"ok")])
        assert not channel.closed

    async def test_broken_stream_closes_with_eproto(self, tmp_path: Path, closing) -> None:
        """A frame that is not [id, session, args] breaks the stream: EPROTO, and nothing after
        it is delivered."""
        client, peer = await _pair(tmp_path, closing)
        mine = Recorder(client)
        peer.send(1, [V0_11.chunk(1, b"ok"), pack([4, 1]), V0_11.choke(1)])
        await mine.until(lambda calls: any(c[0] == "on_socket_error" for c in calls))

        assert mine.calls == [("on_chunk", 1, b"ok"), ("on_socket_error", errno.EPROTO)]
        assert isinstance(client.last_error, FrameError) and client.closed

    async def test_big_chunks_split_across_reads_arrive_whole(
        self, tmp_path: Path, closing
    ) -> None:
        """Chunks bigger than a socket read (kept in the decoder's growing buffer) come back
        as bytes, whole and in order, with small messages between them."""
        client, peer = await _pair(tmp_path, closing)
        mine = Recorder(client)
        payloads = [bytes([i]) * (200_000 + i) for i in range(4)]
        for i, payload in enumerate(payloads):
            peer.send(i, [V0_11.chunk(i, payload), V0_11.choke(i)])
        await mine.until(lambda calls: ("on_choke", 3) in calls)

        chunks = mine.named("on_chunk")
        assert [data for _, data in chunks] == payloads
        assert all(type(data) is bytes for _, data in chunks)
        assert mine.named("on_choke") == [(0,), (1,), (2,), (3,)]


class _RoutedV11(V11):
    """v0.11 without the fast ids: every message takes the general path (router + arguments)."""

    fast_ids = False


#: Argument lists of every shape a record can have (empty, short and long raw strings, a
#: non-UTF-8 one, decoded lists that fit or do not fit a kind).
ARGUMENT_SHAPES: list[list[Any]] = [
    [], [b"ev"], [b"a-much-longer-event-name"], [b"\xff\xfe"], [b"x" * 300], [5], [b"a", b"b"],
    [7, b"reason"], [[42, 9], b"cat"], [b"x", b"m"],
]  # fmt: skip


class TestFastPath:
    async def test_fast_path_agrees_with_the_general_rule(self) -> None:
        """The fast-id loop (record kinds read straight, SHORT event names cached) delivers
        every message id 0..8 with every argument shape exactly as the general path (the
        dialect's router and argument rules) does, callback for callback."""
        messages = [pack([mid, 5, args]) for mid in range(9) for args in ARGUMENT_SHAPES]
        data = b"".join(messages) + V0_11.heartbeat()
        seen = []
        for dialect in (V0_11, _RoutedV11()):
            channel = Channel(dialect)
            recorder = Recorder(channel)
            channel.data_received(data)
            seen.append(recorder.calls)

        assert seen[0] == seen[1]
        assert len(seen[0]) == len(messages) + 1 and not channel.closed
        assert ("on_invoke", 5, "a-much-longer-event-name") in seen[0]
        assert [c for c in seen[0] if c[0] == "on_socket_error"] == []


class TestBackpressure:
    async def test_drain_blocks_on_a_peer_that_does_not_read(
        self, tmp_path: Path, closing
    ) -> None:
        """Against a peer that does not read, drain() blocks while the channel's own buffer
        stays under the transport's high-water mark plus one message; reading releases it."""
        readers: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

        async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            closing.append(writer)
            await readers.put(reader)

        path = str(tmp_path / "idle.sock")
        server = await asyncio.start_unix_server(idle, path, limit=2**16)
        closing.append(server)
        client = Channel()
        closing.append(client)
        await client.connect(path)
        peer = await asyncio.wait_for(readers.get(), WAIT)
        payload = bytes(64 * 1024)
        message = [V0_11.chunk_header(1, len(payload)), payload]
        sent = 0
        blocked: asyncio.Task[None] | None = None
        high_water = 0

        while blocked is None and sent < 100_000:
            client.send(1, message)
            sent += 1
            drain = asyncio.ensure_future(client.drain())
            await asyncio.sleep(0)  # let drain() flush and reach its wait, no readiness wait
            high_water = max(high_water, client.write_buffer_size())
            if not drain.done():
                blocked = drain
        assert blocked is not None
        still_blocked = not blocked.done()
        total = sent * (len(payload) + len(message[0]))
        received = 0
        while not blocked.done():
            received += len(await asyncio.wait_for(peer.read(2**20), WAIT))
        await blocked

        assert still_blocked and sent > 1
        limit = 64 * 1024 + 2 * (len(payload) + 16)
        assert high_water <= limit, f"channel buffered {high_water} bytes"
        assert received > 0 and total > high_water


async def _scenario(test: Callable[[list[Any]], Any]) -> None:
    closing: list[Any] = []
    try:
        await test(closing)
    finally:
        await close_all(closing)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_scenarios_hold_on_asyncio_debug_and_uvloop(loop_kind: str, tmp_path: Path) -> None:
    """Exchange on every socket kind, close, errno reporting, malformed frames and
    backpressure behave the same on asyncio (debug mode) and on uvloop."""
    exchange, errors, pressure = TestExchange(), TestSocketErrors(), TestBackpressure()

    def fresh(name: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        return path

    async def scenarios() -> None:
        for kind in KINDS:
            await _scenario(lambda c: exchange.test_connect_exchange_close(kind, fresh(kind), c))
        await _scenario(lambda c: exchange.test_nothing_fires_after_close(fresh("close"), c))
        await errors.test_connection_refused_tcp()
        await errors.test_connection_refused_unix(fresh("refused"))
        await _scenario(errors.test_peer_reset_reports_econnreset)
        await _scenario(
            lambda c: errors.test_malformed_frame_closes_only_that_channel(fresh("bad"), c)
        )
        await _scenario(
            lambda c: pressure.test_drain_blocks_on_a_peer_that_does_not_read(fresh("bp"), c)
        )

    run_on(loop_kind, scenarios)


class TestLargeWrites:
    async def test_a_large_payload_is_never_copied_whole(self, tmp_path: Path, closing) -> None:
        """A 64 MiB chunk queued between small messages, to a peer that reads only later: while
        it is being written the channel allocates nothing like the payload (asyncio's
        transport would join it with its neighbours and copy what the kernel did not take:
        tracemalloc sees every such copy); then the peer receives every byte, in order, and
        drain() returns once all of it is written."""
        readers: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

        async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            closing.append(writer)
            await readers.put(reader)

        path = str(tmp_path / "late.sock")
        server = await asyncio.start_unix_server(idle, path, limit=2**16)
        closing.append(server)
        client = Channel()
        closing.append(client)
        assert await client.connect(path)
        peer = await asyncio.wait_for(readers.get(), WAIT)
        payload = bytes(range(256)) * (256 * 1024)
        expected = b"".join([V0_11.chunk(1, b"before"), V0_11.chunk(1, payload),
                             V0_11.choke(1)])  # fmt: skip
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            client.send(1, V0_11.chunk(1, b"before"))
            client.send(1, [V0_11.chunk_header(1, len(payload)), payload])
            client.send(1, V0_11.choke(1))
            drained = asyncio.ensure_future(client.drain())
            for _ in range(20):
                await asyncio.sleep(0)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        blocked = not drained.done()
        received = bytearray()
        while len(received) < len(expected):
            received += await asyncio.wait_for(peer.read(2**20), WAIT)
        await asyncio.wait_for(drained, WAIT)

        assert blocked and peak < 4 * 1024 * 1024, f"{peak} bytes allocated"
        assert received == expected and client.write_buffer_size() == 0

    async def test_large_and_small_messages_keep_their_order(
        self, tmp_path: Path, closing
    ) -> None:
        """Sessions mixing small chunks, chunks over the large-write threshold and chokes,
        sent in one tick and over many, arrive whole and in order; so does what was queued
        right before close()."""
        client, peer = await _pair(tmp_path, closing)
        mine = Recorder(client)
        sizes = [10, 200_000, 3, 70_000, 1, 2_500_000, 64 * 1024, 64 * 1024 + 1]
        sent = []
        for round_ in range(3):
            for i, size in enumerate(sizes):
                data = bytes([round_ * 16 + i]) * size
                sent.append(data)
                peer.send(1, [V0_11.chunk_header(1, size), data] if size > 10
                          else V0_11.chunk(1, data))  # fmt: skip
            if round_ == 1:
                await peer.drain()
        peer.send(1, V0_11.choke(1))
        peer.close()
        await mine.until(lambda calls: ("on_choke", 1) in calls)

        assert [data for _, data in mine.named("on_chunk")] == sent


def test_a_big_post_is_not_copied_on_its_way_to_the_worker() -> None:
    """A 256 MiB POST through `cocaine-http dev --max-body-size 2G`: neither the dev runtime
    (front, engine, its channel to the worker) nor the worker (channel, decoder, request
    parser, ASGI adapter) peaks at 2.5 times the body (bench/bench_big_post.py measures the
    1 GiB case)."""
    size = 256 * 1024 * 1024
    peaks = bench_big_post.measure(size)

    for name, (before, after) in peaks.items():
        assert (after - before) * 1024 < 2.5 * size, f"{name}: {peaks}"
