"""Decoder errors on both implementations: malformed msgpack, wrong frame shapes, limits, the
offsets they name, the messages delivered before them, and a broken decoder staying broken."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from cocaine_http.codec import DEFAULT_MAX_DEPTH, DEFAULT_MAX_MESSAGE_SIZE
from cocaine_http.codec.records import BAD_SESSION, REC_DROPPED, messages_of
from cocaine_http.errors import FrameError, LimitExceededError
from cocaine_http.protocol.dialect import V0_11, pack

GOOD = V0_11.chunk(7, b"hi")  # 7 bytes


def frame(args: bytes) -> bytes:
    """A v0.11 frame [1, 2, <args>] around hand-written argument bytes."""
    return b"\x93\x01\x02" + args


def nested(levels: int) -> bytes:
    """A frame whose arguments nest `levels` one-element arrays around an empty one."""
    return frame(b"\x91" * levels + b"\x90")


MALFORMED = [
    pytest.param(frame(b"\x91\xc1"), id="byte-c1"),
    pytest.param(frame(b"\x91\xd4\x05\x00"), id="fixext"),
    pytest.param(frame(b"\x91\xc7\x01\x05\x00"), id="ext8"),
    pytest.param(frame(b"\x91\xd6\xff\x00\x00\x00\x00"), id="timestamp32"),
    pytest.param(frame(b"\x91\xd7\xff" + struct.pack(">Q", 1_000_000_000 << 34)), id="timestamp64-bad-ns"),
    pytest.param(frame(b"\x91\xd4\xff\x00"), id="timestamp-bad-length"),
    pytest.param(frame(b"\x91\x81\x90\x01"), id="array-key"),
    pytest.param(frame(b"\x91\x81\x80\x01"), id="map-key"),
    pytest.param(frame(b"\x91\x81\x81\x91\x01\x02\x03"), id="array-key-in-nested-map"),
    pytest.param(frame(b"\xdd\x80\x00\x00\x00"), id="array-count-over-msgpack-max"),
    pytest.param(frame(b"\x91\xdf\x40\x00\x00\x00"), id="map-count-over-msgpack-max"),
]

BAD_FRAMES = [
    pytest.param("v0.11", b"\x01", id="not-an-array"),
    pytest.param("v0.11", b"\x81\x01\x02", id="a-map"),
    pytest.param("v0.11", b"\x92\x01\x02", id="two-elements"),
    pytest.param("v0.11", b"\x94\x01\x02\x90\x90", id="v11-four-elements"),
    pytest.param("v0.12", b"\x94\x01\x02\x90\x01", id="v12-headers-not-array"),
    pytest.param("v0.12", b"\x95\x01\x02\x90\x90\x90", id="v12-five-elements"),
    pytest.param("v0.11", b"\x93\xff\x02\x90", id="negative-id"),
    pytest.param("v0.11", b"\x93\xc3\x02\x90", id="bool-id"),
    pytest.param("v0.11", b"\x93\xca\x00\x00\x00\x00\x02\x90", id="float-id"),
    pytest.param("v0.11", b"\x93\xa1x\x02\x90", id="raw-id"),
    pytest.param("v0.12", b"\x93\x02\xff\x90", id="v12-negative-id"),
    pytest.param("v0.11", b"\x93\x01\x02\xa0", id="args-raw"),
    pytest.param("v0.11", b"\x93\x01\x02\x80", id="args-map"),
    pytest.param("v0.11", b"\x93\x01\x02\xc0", id="args-nil"),
    # a bad session does not excuse a bad id or bad arguments: the frame is checked first
    pytest.param("v0.11", b"\x93\xff\xa1x\x90", id="negative-id-raw-session"),
    pytest.param("v0.11", b"\x93\x01\xa1x\xa0", id="raw-session-args-raw"),
    pytest.param("v0.11", b"\x92\x01\xa1x", id="raw-session-two-elements"),
]

#: Well-framed messages whose session is unusable, as (dialect, frame, what the report names):
#: the stream is in sync, so each is dropped with a report and decoding goes on.
BAD_SESSIONS = [
    pytest.param("v0.11", [4, b"abc", [b"x"]], "string b'abc'", id="string"),
    pytest.param("v0.11", [3, -5, [b"ping"]], "integer -5", id="negative"),
    pytest.param("v0.11", [4, -(2**63), []], f"integer {-(2**63)}", id="most-negative"),
    pytest.param("v0.11", [4, 1.5, [b"x"]], "float 1.5", id="float"),
    pytest.param("v0.11", [4, None, [5]], "nil", id="nil"),
    pytest.param("v0.11", [6, False, []], "boolean false", id="bool"),
    pytest.param("v0.11", [4, [1, [2]], [b"x"]], "array of 2 items", id="array"),
    pytest.param("v0.11", [4, {b"k": 1}, []], "map of 1 items", id="map"),
    pytest.param("v0.11", [4, b"s" * 5000, [b"x"]], "string b'sss", id="long-string"),
    pytest.param("v0.11", [2**64 - 1, b"x", []], "string b'x'", id="big-id"),
    pytest.param("v0.12", [b"abc", 0, [b"x"]], "string b'abc'", id="v12-string-channel"),
    pytest.param("v0.12", [-1, 0, [b"x"], [[b"h", b"v"]]], "integer -1", id="v12-with-headers"),
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_msgpack_is_frame_error(decoder_cls: Any, data: bytes) -> None:
    """Bytes msgpack itself rejects raise FrameError at the message's offset."""
    decoder = decoder_cls()

    with pytest.raises(FrameError) as info:
        decoder.feed(GOOD + data)

    assert info.value.offset == len(GOOD)
    assert info.value.messages == [(4, 7, [b"hi"])]


@pytest.mark.parametrize(("dialect", "data"), BAD_FRAMES)
def test_wrong_frame_shape_is_frame_error(decoder_cls: Any, dialect: str, data: bytes) -> None:
    """Well-formed msgpack that breaks the dialect's layout raises FrameError."""
    decoder = decoder_cls(dialect)

    with pytest.raises(FrameError) as info:
        decoder.feed(GOOD + GOOD + data)

    assert info.value.offset == 2 * len(GOOD)
    assert len(info.value.messages) == 2


@pytest.mark.parametrize(("dialect", "frame", "named"), BAD_SESSIONS)
def test_unusable_session_is_dropped_and_the_stream_goes_on(
    decoder_cls: Any, dialect: str, frame: list[Any], named: str
) -> None:
    """A complete, well-framed message with an unusable session comes back as a dropped
    message, (id, BAD_SESSION, [what was wrong]), between the messages around it; the decoder
    is not broken, in one feed or byte by byte."""
    data = GOOD + pack(frame) + GOOD
    mid = frame[1] if dialect == "v0.12" else frame[0]
    good = decoder_cls(dialect).feed(GOOD)  # GOOD as the dialect reads it
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        decoder = decoder_cls(dialect)
        out = [m for piece in pieces for m in decoder.feed(piece)]

        assert len(out) == 3 and [out[0], out[2]] == good * 2
        dropped_id, session, [reason] = out[1]
        assert (dropped_id, session) == (mid, BAD_SESSION)
        assert reason.startswith("session must be a non-negative integer, got " + named)
        assert len(reason) < 120  # abbreviated, however long the value


def test_dropped_records_carry_the_reason(decoder_cls: Any) -> None:
    """Through feed_records a dropped message is a DROPPED record (kind = id * 8 + 4) with
    the reason in `a`, and messages_of turns it back into feed's message."""
    records, buf = decoder_cls().feed_records(pack([4, b"abc", [b"x"]]) + GOOD)
    records = list(records)

    assert records[0] == (4 * 8 + REC_DROPPED, BAD_SESSION,
                          "session must be a non-negative integer, got string b'abc'", 0)  # fmt: skip
    assert messages_of(records, buf) == [
        (4, BAD_SESSION, ["session must be a non-negative integer, got string b'abc'"]),
        (4, 7, [b"hi"]),
    ]  # fmt: skip


@pytest.mark.parametrize("read", [1000, 7000])
def test_big_chunk_with_an_unusable_session_in_many_reads(decoder_cls: Any, read: int) -> None:
    """A big chunk (the collect path's shape) with a negative or string session, arriving in
    many reads, is dropped whole; the message after it is decoded."""
    for session in (-3, b"abc"):
        data = pack([4, session, [b"p" * 100_000]]) + GOOD
        decoder = decoder_cls()
        out = [m for i in range(0, len(data), read) for m in decoder.feed(data[i : i + read])]

        assert [m[:2] for m in out] == [(4, BAD_SESSION), (4, 7)]


def test_empty_array_after_a_split_message_is_a_layout_error(decoder_cls: Any) -> None:
    """`[]` as a message breaks the frame layout, whatever the message before it was
    parsed like (split in two, it leaves the parser's state behind)."""
    decoder = decoder_cls()
    decoder.feed(GOOD[:3])

    with pytest.raises(FrameError) as info:
        decoder.feed(GOOD[3:] + b"\x90")

    assert "v0.11 frame" in info.value.reason and info.value.offset == len(GOOD)

def test_v12_frame_with_headers_is_accepted(decoder_cls: Any) -> None:
    """A v0.12 frame with a fourth (headers) element decodes, the headers dropped."""
    decoder = decoder_cls("v0.12")

    assert decoder.feed(b"\x94\x05\x00\x91\xa1x\x91\x93\xc3\x50\xa0") == [(0, 5, [b"x"])]


def test_error_in_partial_message_is_raised_before_it_completes(decoder_cls: Any) -> None:
    """A bad byte inside an unfinished message fails the feed that brings it."""
    decoder = decoder_cls()

    assert decoder.feed(b"\x93\x01\x02\x92") == []
    with pytest.raises(FrameError) as info:
        decoder.feed(b"\xc1")

    assert info.value.offset == 0


def test_bad_map_key_waits_for_its_map(decoder_cls: Any) -> None:
    """An array used as a key fails only when its map is complete (the reference's rule)."""
    decoder = decoder_cls()

    assert decoder.feed(frame(b"\x91\x82\x90\x01")) == []
    with pytest.raises(FrameError):
        decoder.feed(b"\x02\x03")


def test_ext_fails_when_its_payload_is_complete(decoder_cls: Any) -> None:
    """An ext type fails once its payload has arrived, not at its header."""
    decoder = decoder_cls()

    assert decoder.feed(frame(b"\x91\xd7\x05\x00")) == []
    with pytest.raises(FrameError):
        decoder.feed(b"\x00" * 7)


class TestLimits:
    def test_defaults(self, decoder_cls: Any) -> None:
        """The defaults come from codec.records: a 72 MiB message, 32 levels."""
        decoder = decoder_cls()

        assert decoder.feed(nested(DEFAULT_MAX_DEPTH - 2)) != []
        with pytest.raises(LimitExceededError):
            decoder_cls().feed(nested(DEFAULT_MAX_DEPTH - 1))
        assert DEFAULT_MAX_MESSAGE_SIZE == 72 * 1024 * 1024

    def test_complete_message_over_size(self, decoder_cls: Any) -> None:
        """A complete message longer than max_message_size raises LimitExceededError."""
        data = V0_11.chunk(1, b"x" * 100)
        decoder = decoder_cls(max_message_size=len(data) - 1)

        with pytest.raises(LimitExceededError) as info:
            decoder.feed(GOOD + data)

        assert info.value.offset == len(GOOD)
        assert info.value.messages == [(4, 7, [b"hi"])]

    def test_message_of_exactly_the_limit_passes(self, decoder_cls: Any) -> None:
        """max_message_size is inclusive."""
        data = V0_11.chunk(1, b"x" * 100)
        decoder = decoder_cls(max_message_size=len(data))

        assert decoder.feed(data) == [(4, 1, [b"x" * 100])]

    def test_partial_message_over_size(self, decoder_cls: Any) -> None:
        """Buffered bytes of an unfinished message over the limit fail before it completes."""
        decoder = decoder_cls(max_message_size=50)
        head = frame(b"\xdc\x00\xff")  # 255 one-byte integers to come

        assert decoder.feed(head + b"\x01" * (50 - len(head))) == []
        with pytest.raises(LimitExceededError) as info:
            decoder.feed(b"\x01")

        assert info.value.offset == 0

    @pytest.mark.parametrize("first", [b"\xdb", b"\xc6", b"\xda", b"\xc5", b"\xc9"], ids=["raw32", "bin32", "raw16", "bin16", "ext32"])
    @pytest.mark.parametrize("split", [0, 1, 2, 3, 4])
    def test_string_header_over_size_fails_at_the_header(
        self, decoder_cls: Any, first: bytes, split: int
    ) -> None:
        """A string or ext header announcing a message over the limit fails as soon as the
        header is whole (not after waiting for its bytes), however the header is split."""
        width = 2 if first in (b"\xda", b"\xc5") else 4
        header = first + (1000).to_bytes(width, "big") + (b"\x05" if first == b"\xc9" else b"")
        data = GOOD + frame(b"\x91" + header)
        cut = len(data) - len(header) + min(split, len(header) - 1)
        decoder = decoder_cls(max_message_size=1000)

        assert decoder.feed(data[:cut]) == [(4, 7, [b"hi"])]
        with pytest.raises(LimitExceededError) as info:
            decoder.feed(data[cut:])

        assert info.value.offset == len(GOOD)

    def test_string_header_that_fits_waits(self, decoder_cls: Any) -> None:
        """A header whose message ends exactly at the limit is waited for, then delivered."""
        head = frame(b"\x91\xc6")
        size = 1000 - len(head) - 4
        decoder = decoder_cls(max_message_size=1000)

        assert decoder.feed(head + size.to_bytes(4, "big")) == []
        assert decoder.feed(b"y" * size) == [(1, 2, [b"y" * size])]

    def test_declared_4gib_string_fails_at_the_header(self, decoder_cls: Any) -> None:
        """A raw32 header announcing 4 GiB fails at once under the default limit."""
        decoder = decoder_cls()

        with pytest.raises(LimitExceededError) as info:
            decoder.feed(frame(b"\x91\xdb\xff\xff\xff\xff"))

        assert info.value.offset == 0

    @pytest.mark.parametrize("tail", [b"", b"\x05", b"\xff\x00"], ids=["no-type", "type", "timestamp"])
    def test_ext32_of_4gib_fails_at_once(self, decoder_cls: Any, tail: bytes) -> None:
        """An ext32 header announcing 2**32-1 bytes is a FrameError as soon as its length is
        there (msgpack's rule: with its type byte the length does not fit in 32 bits)."""
        decoder = decoder_cls()

        with pytest.raises(FrameError) as info:
            decoder.feed(GOOD + frame(b"\x91\xc9\xff\xff\xff\xff" + tail))

        assert info.value.offset == len(GOOD) and info.value.messages == [(4, 7, [b"hi"])]

    def test_ext32_below_4gib_is_an_ordinary_header(self, decoder_cls: Any) -> None:
        """One byte less is an ordinary ext32 header: over the limit, so a LimitExceededError
        at the header; within a big limit it would be rejected as an ext on completion."""
        with pytest.raises(LimitExceededError):
            decoder_cls().feed(frame(b"\x91\xc9\xff\xff\xff\xfe\x05"))
        decoder = decoder_cls(max_message_size=100)

        assert decoder.feed(frame(b"\x91\xc9\x00\x00\x00\x10\x05")) == []
        with pytest.raises(FrameError):
            decoder.feed(b"z" * 16)

    @pytest.mark.parametrize("limit", [2, 5])
    def test_depth(self, decoder_cls: Any, limit: int) -> None:
        """max_depth counts the frame as 1; one level more raises LimitExceededError."""
        ok = nested(limit - 2)
        decoder = decoder_cls(max_depth=limit)

        assert len(decoder.feed(ok)) == 1
        with pytest.raises(LimitExceededError) as info:
            decoder.feed(nested(limit - 1))
        assert info.value.offset == len(ok)

    def test_depth_counts_values_a_duplicate_key_replaced(self, decoder_cls: Any) -> None:
        """Depth is the encoding's nesting, even where a later duplicate key drops a value."""
        args = b"\x91\x82\x01\x91\x91\x91\x90\x01\x02"  # [{1: [[[[]]]], 1: 2}]
        decoder = decoder_cls(max_depth=7)

        assert decoder.feed(frame(args)) == [(1, 2, [{1: 2}])]
        with pytest.raises(LimitExceededError):
            decoder_cls(max_depth=6).feed(frame(args))

    def test_msgpack_stack_limit_even_when_incomplete(self, decoder_cls: Any) -> None:
        """A 1025th open container fails at once, as msgpack's own parser does."""
        decoder = decoder_cls(max_depth=1024)

        assert decoder.feed(b"\x91" * 1024) == []
        with pytest.raises(LimitExceededError):
            decoder.feed(b"\x90")

    @pytest.mark.parametrize(
        "kwargs",
        [{"max_message_size": 0}, {"max_message_size": 2**31}, {"max_depth": 0},
         {"max_depth": 1025}, {"dialect": "v0.13"}],
    )
    def test_bad_constructor_arguments(self, decoder_cls: Any, kwargs: dict[str, Any]) -> None:
        """Limits outside their range and unknown dialects raise ValueError."""
        with pytest.raises(ValueError):
            decoder_cls(**kwargs)


def test_error_order_size_before_depth_before_frame(decoder_cls: Any) -> None:
    """A complete message breaking size, depth and layout reports the size first, then depth."""
    data = b"\x92" + b"\x91" * 10 + b"\x90" + b"\x01"

    with pytest.raises(LimitExceededError, match="size"):
        decoder_cls(max_message_size=5, max_depth=3).feed(data)
    with pytest.raises(LimitExceededError, match="deeper"):
        decoder_cls(max_depth=3).feed(data)
    with pytest.raises(FrameError):
        decoder_cls().feed(data)


def test_offset_counts_from_decoder_creation(decoder_cls: Any) -> None:
    """The offset is the stream position of the bad message across many feeds."""
    decoder = decoder_cls()
    for _ in range(10):
        decoder.feed(GOOD[:3])
        decoder.feed(GOOD[3:])

    with pytest.raises(FrameError) as info:
        decoder.feed(GOOD[:5] + GOOD[5:] + b"\x01")

    assert info.value.offset == 11 * len(GOOD)
    assert info.value.messages == [(4, 7, [b"hi"])]


def test_broken_decoder_keeps_raising(decoder_cls: Any) -> None:
    """After an error every feed raises the same error again, with no messages."""
    decoder = decoder_cls()
    with pytest.raises(FrameError) as first:
        decoder.feed(GOOD + b"\xc1")

    with pytest.raises(FrameError) as second:
        decoder.feed(GOOD)
    with pytest.raises(FrameError) as third:
        decoder.feed(b"")

    assert second.value is first.value and third.value is first.value
    assert second.value.messages == []


def test_many_messages_before_an_error_are_all_delivered(decoder_cls: Any) -> None:
    """`.messages` holds every message completed in the failing feed, however many."""
    count = 5000

    with pytest.raises(FrameError) as info:
        decoder_cls().feed(GOOD * count + b"\x01")

    assert len(info.value.messages) == count
    assert info.value.offset == count * len(GOOD)


def test_unsigned_64_bit_ids(decoder_cls: Any) -> None:
    """Ids and sessions up to 2**64-1 decode as Python ints, in both dialects."""
    top = 2**64 - 1

    assert decoder_cls().feed(pack([top, top - 1, [b"x"]])) == [(top, top - 1, [b"x"])]
    assert decoder_cls("v0.12").feed(pack([top, 2**63, []])) == [(2**63, top, [])]
