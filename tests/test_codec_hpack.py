"""v0.12 headers: the trace a frame carries, the connection's header table, refused entries,
on both decoders (the same rules: codec/hpack.py), and property tests that the C decoder's
shortcut for headers that need no reading never disagrees with the reference."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocaine_http.aio.channel import Channel
from cocaine_http.codec import _python
from cocaine_http.codec.hpack import (
    STATIC_SIZE,
    TABLE_CAPACITY,
    HeaderError,
    HeaderTable,
    Trace,
    check_trace,
    pack_trace,
    read_trace,
)
from cocaine_http.codec.records import BAD_SESSION, REC_TRACED
from cocaine_http.protocol.dialect import V0_11, V0_12

from tests.plugins.codec import load_decoder
from tests.test_codec_parity import SETTINGS, assert_agree, cuts_for

CDecoder = load_decoder("c")
DECODERS = [pytest.param(CDecoder, id="c"), pytest.param(_python.Decoder, id="python")]
Z = bytes(8)


def le(value: int) -> bytes:
    return value.to_bytes(8, "little")


def named(trace: tuple[int, int, int]) -> list[list[Any]]:
    """The trace headers the way the runtime packs them: by name."""
    return [[False, name, le(v)] for name, v in zip((b"trace_id", b"span_id", b"parent_id"),
                                                     trace)]


def feed(cls: type[Any], *frames: list[Any]) -> list[Any]:
    return cls("v0.12").feed(b"".join(msgpack.packb(f, use_bin_type=False) for f in frames))


@pytest.mark.parametrize("cls", DECODERS)
class TestDecoders:
    def test_the_zero_trace_is_no_trace(self, cls):
        """The runtime's frames outside a trace (three zero values by name), an empty or
        absent headers element: plain messages."""
        assert feed(cls, [2, 0, [b"http"], named((0, 0, 0))], [2, 0, [b"x"], []],
                    [2, 2, []]) == [(0, 2, [b"http"]), (0, 2, [b"x"]), (2, 2, [])]

    def test_a_trace_by_name_or_static_index(self, cls):
        """By name (the runtime) or by the static table's 80-82 (PY12): the three values,
        little-endian, on every kind of message."""
        got = feed(cls, [2, 0, [b"http"], named((0x1111, 0x2222, 0))],
                   [2, 0, [b"y" * 300], pack_trace((2**64 - 1, 1, 2))],
                   [2, 1, [[42, 1], b"boom"], pack_trace((5, 6, 7))])
        assert got == [(0, 2, [b"http"], Trace(0x1111, 0x2222, 0)),
                       (0, 2, [b"y" * 300], Trace(2**64 - 1, 1, 2)),
                       (1, 2, [[42, 1], b"boom"], Trace(5, 6, 7))]

    def test_records_carry_the_trace(self, cls):
        records, _ = cls("v0.12").feed_records(msgpack.packb(
            [3, 0, [b"http"], pack_trace((1, 2, 3))], use_bin_type=False))
        assert list(records) == [(0 * 8 + REC_TRACED, 3, [b"http"], Trace(1, 2, 3))]

    def test_the_first_of_each_name_counts(self, cls):
        headers = [*named((9, 8, 7)), *named((1, 1, 1)), [False, b"other", b"v"], 5]
        assert feed(cls, [2, 0, [], headers]) == [(0, 2, [], Trace(9, 8, 7))]

    def test_two_of_three_is_no_trace(self, cls):
        assert feed(cls, [2, 0, [], named((1, 2, 3))[:2]]) == [(0, 2, [])]

    def test_stored_entries_are_per_connection(self, cls):
        """[true, ...] stores a header (newest first from index 83); later frames refer to
        it by index alone or take its name; another connection has its own table."""
        decoder = cls("v0.12")
        first = [[True, b"trace_id", le(4)], [True, 81, le(5)], [True, b"parent_id", Z]]
        frames = [[2, 0, [], first], [3, 0, [], [85, 84, 83]], [4, 0, [], [[False, 85, le(6)],
                                                                              84, 83]]]
        got = decoder.feed(b"".join(msgpack.packb(f) for f in frames))
        assert got == [(0, 2, [], Trace(4, 5, 0)), (0, 3, [], Trace(4, 5, 0)),
                       (0, 4, [], Trace(6, 5, 0))]
        assert feed(cls, [3, 0, [], [85, 84, 83]]) == [
            (0, BAD_SESSION, ["bad headers: invalid index 85 for the header table"])]

    @pytest.mark.parametrize("headers, reason", [
        ([0], "invalid index 0 for the header table"),
        ([STATIC_SIZE], f"invalid index {STATIC_SIZE} for the header table"),
        ([[False, 0, b"v"]], "invalid index 0 for the header table"),
        ([[False, b"a"]], "a header is an index or [store, name, value]"),
        ([[1, b"a", b"b"]], "a header is an index or [store, name, value]"),
        ([[False, b"a", 5]], "a header is an index or [store, name, value]"),
        ([None], "a header is an index or [store, name, value]"),
        ([-1], "a header is an index or [store, name, value]"),
        ([[False, b"trace_id", b"x"], *named((0, 1, 2))[1:]], "trace_id must be 8 bytes, got 1"),
    ])
    def test_refused_headers_drop_that_message_only(self, cls, headers, reason):
        """What the runtime refuses (its hpack error) drops the message with the reason; the
        stream goes on."""
        got = feed(cls, [2, 0, [b"a"], headers], [2, 0, [b"b"], named((1, 2, 3))])
        assert got[1] == (0, 2, [b"b"], Trace(1, 2, 3))
        assert got[0][:2] == (0, BAD_SESSION) and got[0][2][0].startswith("bad headers: ")
        assert reason in got[0][2][0]

    def test_an_unusable_channel_leaves_the_table_alone(self, cls):
        got = feed(cls, [b"x", 0, [], [[True, b"trace_id", le(1)]]], [2, 0, [], [83]])
        assert got[0][1] == BAD_SESSION and "session must be" in got[0][2][0]
        assert got[1] == (0, BAD_SESSION, ["bad headers: invalid index 83 for the header table"])


class TestTable:
    def test_eviction_keeps_the_bound(self):
        """32 bytes per entry over name and value; the oldest go first; an entry larger than
        the table empties it."""
        table = HeaderTable()
        value = b"v" * 1000
        for i in range(5):
            table.push(b"n%d" % i, value)
        assert table.size == 3 * (2 + 1000 + 32) <= TABLE_CAPACITY  # a fourth would not fit
        assert [n for n, _ in table.entries] == [b"n4", b"n3", b"n2"]
        assert table[STATIC_SIZE] == (b"n4", value)
        table.push(b"big", b"x" * TABLE_CAPACITY)
        assert not table.entries and table.size == 0
        with pytest.raises(HeaderError):
            table[STATIC_SIZE]

    def test_static_names(self):
        table = HeaderTable()
        assert table[1][0] == b":authority" and table[61][0] == b"www-authenticate"
        assert [table[i][0] for i in (80, 81, 82)] == [b"trace_id", b"span_id", b"parent_id"]
        assert read_trace([80, 81, 82], table) is None  # their static values are zeros


class TestSending:
    def test_v012_calls_carry_the_static_trace_entries(self):
        frame = msgpack.unpackb(V0_12.call(2, 0, [b"e"], Trace(1, 2, 3)), raw=True)
        assert frame == [2, 0, [b"e"], [[False, 80, le(1)], [False, 81, le(2)],
                                        [False, 82, le(3)]]]
        assert msgpack.unpackb(V0_12.call(2, 0, [])) == [2, 0, []]

    def test_v011_has_no_headers(self):
        with pytest.raises(ValueError, match="v0.12"):
            V0_11.trace((1, 2, 3))
        with pytest.raises(ValueError, match="v0.12"):
            V0_11.call(1, 0, [], Trace(1, 2, 3))

    @pytest.mark.parametrize("bad", [(1, 2), (1, 2, -1), (1, 2, 2**64), ("1", 2, 3), None, 5])
    def test_a_trace_is_three_64_bit_integers(self, bad):
        with pytest.raises(ValueError, match="trace_id, span_id, parent_id"):
            check_trace(bad)
        assert check_trace([1, 2, 3]) == Trace(1, 2, 3)


@pytest.mark.parametrize("cls", DECODERS)
def test_the_channel_hands_the_trace_to_the_callback(cls, monkeypatch):
    """A traced invoke: its callback runs with `channel.trace` set (so the worker's Session
    takes it), and it is None again for the next, untraced, message."""
    import cocaine_http.aio.channel as channel_module

    monkeypatch.setattr(channel_module, "Decoder", cls)
    channel = Channel(V0_12)
    seen: list[Any] = []
    channel.on_invoke = lambda sid, event: seen.append((sid, event, channel.trace))
    channel.data_received(msgpack.packb([2, 0, [b"http"], pack_trace((7, 8, 9))]) +
                          msgpack.packb([3, 0, [b"http"], named((0, 0, 0))]))
    assert seen == [(2, "http", Trace(7, 8, 9)), (3, "http", None)]
    assert channel.trace is None


# -- properties: the C decoder's shortcut against the reference ---------------------------------

names = st.sampled_from([b"trace_id", b"span_id", b"parent_id", b"x", b"", 80, 81, 82, 83, 84,
                         85, 0, 5, 61, 70, 200, 2**64 - 1]) | st.binary(max_size=9)
header_values = st.sampled_from([Z, le(1), le(2**64 - 1), b"", b"abc"]) | st.binary(
    min_size=8, max_size=8) | st.integers(0, 3)
entries = (
    st.sampled_from([0, 1, 5, 62, 79, 80, 81, 82, 83, 84, 85, 86, 300, 2**64 - 1])
    | st.tuples(st.booleans(), names, header_values).map(list)
    | st.sampled_from([None, [False, b"a"], [[1], b"a", b"b"], [False, 80, Z, Z], -3, 1.5])
)
hpack_headers = st.lists(entries, max_size=6) | st.builds(
    lambda t: named(t) if t[3] else pack_trace(t[:3]),
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3), st.integers(0, 3), st.booleans()))


@st.composite
def traced_streams(draw: Any) -> bytes:
    frames = []
    for _ in range(draw(st.integers(1, 6))):
        channel = draw(st.integers(0, 2**64 - 1) | st.integers(0, 9) | st.sampled_from([-1, b"c"]))
        args = draw(st.sampled_from([[], [b"http"], [b"x" * 40], [[42, 1], b"m"], [1, [2]]]))
        frame = [channel, draw(st.integers(0, 3)), args]
        if draw(st.integers(0, 5)):
            frame.append(draw(hpack_headers))
        frames.append(frame)
    bin_type = draw(st.booleans())
    return b"".join(msgpack.packb(f, use_bin_type=bin_type) for f in frames)


@SETTINGS
@given(raw=traced_streams(), data=st.data())
def test_headers_agree(raw: bytes, data: Any) -> None:
    """Random headers (table entries, indices in and out of range, traces by name and index,
    odd shapes), split at random points: both decoders give the same messages and traces."""
    assert_agree("v0.12", raw, data.draw(cuts_for(raw)), {})


@SETTINGS
@given(raw=traced_streams(), data=st.data(), depth=st.integers(1, 4))
def test_headers_agree_under_small_limits(raw: bytes, data: Any, depth: int) -> None:
    assert_agree("v0.12", raw, data.draw(cuts_for(raw)), {"max_depth": depth})
