"""Big chunk payloads arriving in many reads (the C decoder collects them without assembling
the message): same messages and errors as the reference, whatever the split."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from cocaine_http import codec
from cocaine_http.codec import _c
from cocaine_http.errors import DecodeError, FrameError, LimitExceededError
from cocaine_http.protocol.dialect import pack
from tests.plugins.codec import load_decoder

BIG = 100_000


def chunk(session: int, size: int, fill: int = 7) -> bytes:
    return pack([4, session, [bytes([fill]) * size]])


def feed_all(decoder: Any, stream: bytes, read: int, records: bool) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(stream), read):
        piece = stream[i : i + read]
        if records:
            out += codec.records.messages_of(*decoder.feed_records(piece))
        else:
            out += decoder.feed(piece)
    return out


def outcome(name: str, stream: bytes, read: int, records: bool, **limits: Any) -> Any:
    decoder = load_decoder(name)(**limits)
    try:
        return feed_all(decoder, stream, read, records)
    except DecodeError as exc:
        return type(exc), exc.offset, exc.messages  # reasons are worded per implementation


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("read", [1000, 4096, 65536, 70001, 250_000])
def test_big_chunks_between_small_messages_match_the_reference(read: int, records: bool) -> None:
    """Chunks split at any point decode to the reference's messages, in order."""
    stream = b"".join(
        [pack([3, 1, [b"http"]]), chunk(1, BIG, 1), pack([6, 1, []]), chunk(2, BIG + 3, 2),
         chunk(3, 20_000, 3), pack([1, 0, []]), chunk(4, BIG, 4)]
    )
    got = outcome("c", stream, read, records)
    assert got == outcome("python", stream, read, records)
    assert [m[0] for m in got] == [3, 4, 6, 4, 4, 1, 4]
    assert got[3][2] == [b"\x02" * (BIG + 3)]


@pytest.mark.parametrize("records", [False, True])
def test_collected_payload_is_bytes_the_caller_can_keep(records: bool) -> None:
    """The payload is one bytes object, unaffected by later reads into a reused buffer."""
    decoder = load_decoder("c")()
    stream = chunk(9, BIG, 5) + chunk(9, BIG, 6)
    buf = bytearray(30_000)
    out: list[Any] = []
    for i in range(0, len(stream), len(buf)):
        piece = stream[i : i + len(buf)]
        buf[: len(piece)] = piece
        view = memoryview(buf)[: len(piece)]
        if records:
            out += codec.records.messages_of(*decoder.feed_records(view))
        else:
            out += decoder.feed(view)
    assert [(m[1], type(m[2][0]), m[2][0]) for m in out] == [
        (9, bytes, b"\x05" * BIG), (9, bytes, b"\x06" * BIG)
    ]


@pytest.mark.parametrize("records", [False, True])
def test_error_after_a_collected_chunk_keeps_it_in_messages(records: bool) -> None:
    """A malformed message in the read that completes a chunk reports the chunk first."""
    stream = chunk(1, BIG) + b"\xc1"
    for name in ("c", "python"):
        got = outcome(name, stream, 30_000, records)
        assert got[0] is FrameError
        assert got[1] == len(stream) - 1
        assert [m[0] for m in got[2]] == [4]


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("size", [BIG - 1, BIG, BIG + 1])
def test_size_limit_around_a_collected_chunk(size: int, records: bool) -> None:
    """The size limit applies to a collected chunk exactly as to any message."""
    stream = chunk(1, size) + pack([6, 1, []])
    limit = len(chunk(1, BIG))
    got = outcome("c", stream, 8192, records, max_message_size=limit)
    assert got == outcome("python", stream, 8192, records, max_message_size=limit)
    if size > BIG:
        assert got[0] is LimitExceededError
    else:
        assert [m[0] for m in got] == [4, 6]


def test_bad_layout_of_a_collected_chunk_is_a_frame_error() -> None:
    """A v0.11 frame with a fourth element fails like the reference even when collected."""
    stream = pack([4, 1, [b"x" * BIG], 5])
    got = outcome("c", stream, 4096, True)
    assert got[0] is FrameError
    assert got == outcome("python", stream, 4096, True)


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("read", [4096, 65536, 250_000, 1_500_000])
def test_streamed_payloads_match_the_reference(
    read: int, records: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Payloads from the streaming size up (written into their own buffer as the reads
    arrive; here from 1 MiB) decode to the reference's messages, as bytes, between small
    messages and one right after another."""
    size = 1024 * 1024
    monkeypatch.setattr(_c, "STREAM_PAYLOAD", size)
    stream = b"".join([pack([3, 1, [b"http"]]), chunk(1, size, 1), pack([6, 1, []]),
                       chunk(2, 3 * size + 7, 2), chunk(3, size - 1, 3), chunk(4, size + 1, 4),
                       pack([1, 0, []])])  # fmt: skip
    got = outcome("c", stream, read, records)

    assert got == outcome("python", stream, read, records)
    assert [len(m[2][0]) for m in got if m[0] == 4] == [size, 3 * size + 7, size - 1, size + 1]
    assert all(type(m[2][0]) is bytes for m in got if m[0] == 4)


def test_a_streamed_payload_and_its_reads_never_coexist() -> None:
    """A 64 MiB chunk fed in 256 KiB reads, each let go once fed: the decoder's allocations
    peak near the payload's size, not at the reads plus the payload (tracemalloc sees both)."""
    size, read = 2 * _c.STREAM_PAYLOAD, 256 * 1024
    head = pack([4, 5, [b""]])[:-1] + b"\xc6" + size.to_bytes(4, "big")
    decoder = load_decoder("c")()
    filler = bytes(range(256)) * (read // 256)
    tracemalloc.start()
    try:
        assert decoder.feed(head) == []
        for _ in range(size // read - 1):
            assert decoder.feed(bytes(bytearray(filler))) == []  # a new read, as a socket gives
        [(mid, session, [payload])] = decoder.feed(bytes(bytearray(filler)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert (mid, session, len(payload)) == (4, 5, size) and payload[:read] == filler
    assert peak < 1.25 * size, f"peak {peak} for a payload of {size}"
