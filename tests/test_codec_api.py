"""The codec's public surface: implementation selection by environment, buffering of big and
many messages, and input types."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from cocaine_http import codec
import cocaine_http.codec.records
from cocaine_http.protocol.dialect import V0_11, V0_12, pack
from tests.plugins.codec import load_decoder


def implementation_under(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import cocaine_http.codec as c; print(c.IMPLEMENTATION, c.Decoder.IMPLEMENTATION)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


class TestSelection:
    def test_c_is_the_default(self) -> None:
        """With the extension built and no switches, the C decoder is live."""
        result = implementation_under({})

        assert result.stdout.split() == ["c", "c"]

    def test_purepython_forces_the_reference(self) -> None:
        """COCAINE_HTTP_PUREPYTHON=1 selects the Python decoder even though C is built."""
        result = implementation_under({"COCAINE_HTTP_PUREPYTHON": "1"})

        assert result.stdout.split() == ["python", "python"]

    def test_require_c_imports_when_built(self) -> None:
        """COCAINE_HTTP_REQUIRE_C=1 is satisfied by the built extension."""
        result = implementation_under({"COCAINE_HTTP_REQUIRE_C": "1"})

        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["c", "c"]

    def test_require_c_fails_loudly_without_the_extension(self, tmp_path: Any) -> None:
        """With the compiled module hidden, REQUIRE_C turns the fallback into ImportError."""
        blocker = tmp_path / "sitecustomize.py"
        blocker.write_text(
            "import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'cocaine_http.codec._cdecoder':\n"
            "            raise ImportError('hidden by the test')\n"
            "sys.meta_path.insert(0, Block())\n"
        )
        env = {"PYTHONPATH": str(tmp_path)}

        required = implementation_under({**env, "COCAINE_HTTP_REQUIRE_C": "1"})
        fallback = implementation_under(env)

        assert required.returncode != 0 and "ImportError" in required.stderr
        assert fallback.stdout.split() == ["python", "python"]

    def test_module_attributes(self) -> None:
        """IMPLEMENTATION names the class behind codec.Decoder."""
        assert codec.IMPLEMENTATION == codec.Decoder.IMPLEMENTATION
        assert codec.PythonDecoder.IMPLEMENTATION == "python"


@pytest.mark.parametrize("read", [1000, 65536, 100_000])
def test_big_message_in_many_reads(decoder_cls: Any, read: int) -> None:
    """A 3 MiB chunk arriving in small reads, between small messages, decodes intact."""
    payload = bytes(range(256)) * (3 * 4096)
    stream = V0_11.invoke(1, "http") + V0_11.chunk(1, payload) + V0_11.choke(1)
    decoder = decoder_cls()

    out: list[Any] = []
    for i in range(0, len(stream), read):
        out += decoder.feed(stream[i : i + read])

    assert out == [(3, 1, [b"http"]), (4, 1, [payload]), (6, 1, [])]
    assert type(out[1][2][0]) is bytes


def test_big_error_reply_and_other_big_shapes(decoder_cls: Any) -> None:
    """Big arguments of every shape (int + raw, several items, nested) decode exactly."""
    big = b"e" * 5000
    messages = [
        (5, 1, [-3, big]),
        (0, 2, [big, big]),
        (1, 3, [[big], {1: big}]),
    ]
    stream = b"".join(pack(list(m)) for m in messages)

    assert decoder_cls().feed(stream) == messages
    assert decoder_cls().feed(bytearray(stream)) == messages


def test_many_messages_in_one_feed(decoder_cls: Any) -> None:
    """Tens of thousands of messages in one feed all come back, in order."""
    stream = b"".join(V0_11.chunk(s, b"x" * (s % 300)) for s in range(30_000))

    out = decoder_cls().feed(stream)

    assert [m[1] for m in out] == list(range(30_000))
    assert all(m[2] == [b"x" * (m[1] % 300)] for m in out)


def test_many_big_messages_in_one_feed(decoder_cls: Any) -> None:
    """More big-argument messages in one feed than one C call describes."""
    stream = b"".join(V0_11.chunk(s, bytes([s % 256]) * 2000) for s in range(700))

    out = decoder_cls().feed(stream)

    assert out == [(4, s, [bytes([s % 256]) * 2000]) for s in range(700)]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_input_types_mixed_within_a_stream(decoder_cls: Any, kind: Any) -> None:
    """Feeds of different buffer types continue one another's partial messages."""
    data = V0_12.invoke(5, "ping") + V0_12.chunk(5, b"y" * 40_000) + V0_12.choke(5)
    decoder = decoder_cls("v0.12")

    out = decoder.feed(kind(data[:7])) + decoder.feed(data[7:30_000]) + decoder.feed(kind(data[30_000:]))

    assert out == [(0, 5, [b"ping"]), (0, 5, [b"y" * 40_000]), (2, 5, [])]


def test_empty_feed_returns_nothing(decoder_cls: Any) -> None:
    """b'' neither completes nor breaks anything."""
    decoder = decoder_cls()

    assert decoder.feed(b"") == []
    assert decoder.feed(V0_11.heartbeat()[:2]) == []
    assert decoder.feed(b"") == []
    assert decoder.feed(V0_11.heartbeat()[2:]) == [(1, 0, [])]


def test_returned_lists_are_independent(decoder_cls: Any) -> None:
    """Each message gets its own argument list, safe to mutate."""
    out = decoder_cls().feed(V0_11.choke(1) + V0_11.choke(2))

    out[0][2].append("mutated")

    assert out[1][2] == []


def test_dialect_property(decoder_cls: Any) -> None:
    """The decoder reports the dialect it was built for."""
    assert decoder_cls("v0.12").dialect == "v0.12"
    assert decoder_cls().dialect == "v0.11"


# -- feed_records ---------------------------------------------------------------------------------


def test_records_give_the_same_messages_as_feed(decoder_cls: Any) -> None:
    """feed_records turned back into messages equals feed, for every shape and big ids."""
    messages = [
        (3, 1, [b"http"]), (4, 1, [b"x" * 200]), (4, 1, [b""]), (6, 1, []), (1, 0, []),
        (5, 2, [-3, b"e" * 5000]), (0, 2, [b"a", b"b"]), (2**63, 2**64 - 1, [b"id"]),
        (2**61, 5, []), (7, 3, [{1: [2]}]),
    ]  # fmt: skip
    stream = b"".join(pack(list(m)) for m in messages)

    whole = codec.records.messages_of(*decoder_cls().feed_records(stream))
    decoder, split = decoder_cls(), []
    for i in range(0, len(stream), 7):
        split += codec.records.messages_of(*decoder.feed_records(stream[i : i + 7]))

    assert whole == split == decoder_cls().feed(stream) == messages


def test_record_kinds_and_spans_of_the_worker_mix(decoder_cls: Any) -> None:
    """kind is id * 8 + shape; a chunk's payload is the span buf[a:b] of the returned buffer,
    an empty argument list has no span."""
    stream = V0_11.chunk(9, b"p" * 300) + V0_11.choke(9) + V0_11.heartbeat()

    records, buf = decoder_cls().feed_records(stream)
    (chunk, choke, heartbeat) = list(records)

    assert chunk[:2] == (4 * 8 + codec.records.REC_RAW, 9) and buf[chunk[2] : chunk[3]] == b"p" * 300
    assert choke == (6 * 8 + codec.records.REC_EMPTY, 9, 0, 0)
    assert heartbeat == (1 * 8 + codec.records.REC_EMPTY, 0, 0, 0)


@pytest.mark.parametrize("size", range(8))
def test_short_strings_pack_and_unpack(size: int) -> None:
    """The C decoder packs raw strings of up to 7 bytes (any bytes, even 0x00) into SHORT
    records; short_bytes gives them back."""
    raw = bytes([0, 255, 7, 0, 128, 1, 0][:size])

    records, _ = load_decoder("c")().feed_records(V0_11.invoke(1, "x")[:2] + pack(1) + pack([raw]))
    ((kind, session, packed, _),) = list(records)

    assert kind == 3 * 8 + codec.records.REC_SHORT and session == 1
    assert codec.records.short_bytes(packed) == raw


def test_records_over_one_c_call_and_many_patches(decoder_cls: Any) -> None:
    """More records (and more patched argument lists) in one feed than one C call holds."""
    stream = b"".join(
        V0_11.chunk(s, b"c" * 20) + V0_11.error(s, s, "m") + V0_11.choke(s) for s in range(3000)
    )

    out = codec.records.messages_of(*decoder_cls().feed_records(stream))

    expected = [((4, s, [b"c" * 20]), (5, s, [s, b"m"]), (6, s, [])) for s in range(3000)]
    assert out == [m for triple in expected for m in triple]


@pytest.mark.parametrize("read", [1000, 65536, 100_000])
def test_records_of_big_messages_in_many_reads(decoder_cls: Any, read: int) -> None:
    """Big chunks assembled over many reads (the growing buffer) come back whole, also
    when the same read completes one and starts the next."""
    payloads = [bytes([i]) * (100_000 + 7 * i) for i in range(5)]
    stream = b"".join(V0_11.chunk(i, p) + V0_11.choke(i) for i, p in enumerate(payloads))
    decoder = decoder_cls()

    out: list[Any] = []
    for i in range(0, len(stream), read):
        records, buf = decoder.feed_records(stream[i : i + read])
        out += codec.records.messages_of(records, buf)  # before the next feed, as documented

    assert out == [m for i, p in enumerate(payloads) for m in ((4, i, [p]), (6, i, []))]


#: Run in a fresh interpreter: a read's records iterator left in a frame that an exception's
#: traceback keeps, the exception kept by the decoder's owner (as a Channel's last_error
#: does), the records buffers made old by a collection first (so that the collector meets
#: them before the frame), then the whole cycle collected.
GC_CYCLE = """
import gc, sys
from cocaine_http.codec._c import Decoder
from cocaine_http.protocol.dialect import V0_11
READS = {
    "small": V0_11.heartbeat(),
    "big": V0_11.choke(1) * 100,
    "unfinished": V0_11.heartbeat() * 2 + V0_11.choke(1)[:2],
    "patched": V0_11.error(1, 5, "e"),
}
data = READS[sys.argv[1]]

def read(decoder):
    records, buf = decoder.feed_records(data)
    next(records)
    try:
        raise ValueError("bad arguments")
    except ValueError as exc:
        error = exc  # the frame keeps the exception, whose traceback keeps the frame
    decoder.last_error = error

for _ in range(3):
    decoder = Decoder()
    list(Decoder().feed_records(data)[0])
    gc.collect()
    read(decoder)
    del decoder
    gc.collect()
print("ok")
"""


@pytest.mark.parametrize("read", ["small", "big", "unfinished", "patched"])
def test_records_iterator_in_a_collected_cycle_is_safe(read: str) -> None:
    """The garbage collector may clear a cycle holding a live records iterator in any order:
    the process neither crashes nor reports a buffer error (the records are never read
    through a memoryview, see docs/codec.md "Records lifetime")."""
    result = subprocess.run(
        [sys.executable, "-c", GC_CYCLE, read], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert "Exception ignored" not in result.stderr and result.stdout == "ok\n"
