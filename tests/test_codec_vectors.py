"""docs/protocol.md §11: every test vector decodes exactly on both decoders, however it is split,
and the encoders in protocol/dialect.py produce the encodable ones byte for byte."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from cocaine_http.codec.hpack import Trace
from cocaine_http.codec.records import BAD_SESSION
from cocaine_http.protocol.dialect import V0_11, V0_12, pack

UUID = "0e7f4b9c-5d1a-4c2e-9a57-3f6c2b8d1e40"
UUID_B = UUID.encode()
RESOLVE_INNER = bytes.fromhex(
    "9392ad6e6f6465312e6578616d706c65cd8001018400a47265616401a5777269746502a672656d6f766503a466696e64"
)
REQUEST_FRAME = bytes.fromhex("95a3474554aa2f68656c6c6f3f783d31a3312e319192a4486f7374a168a0")
RESPONSE_HEAD = bytes.fromhex("92ccc89192ac436f6e74656e742d54797065aa746578742f706c61696e")


class Vector(NamedTuple):
    dialect: str
    hex: str
    decoded: tuple[int, int, list[Any]]  # (id, session or channel, args) as the decoder gives it
    encode: Callable[[], bytes] | None  # the encoder that must produce exactly these bytes


def v(dialect: str, hexs: str, decoded: tuple[int, int, list[Any]], encode: Any, id: str) -> Any:
    return pytest.param(Vector(dialect, hexs, decoded, encode), id=f"{dialect}-{id}")


V11, V12 = "v0.11", "v0.12"
H = "da002430653766346239632d356431612d346332652d396135372d336636633262386431653430"  # uuid raw16

VECTORS = [
    # 11.1 v0.11 worker protocol
    v(V11, "93000091" + H, (0, 0, [UUID_B]), lambda: V0_11.handshake(UUID), "handshake"),
    v(V11, "93010090", (1, 0, []), V0_11.heartbeat, "heartbeat"),
    v(V11, "9302009201ad736c6176652069732069646c65", (2, 0, [1, b"slave is idle"]),
      lambda: V0_11.terminate(1, "slave is idle"), "terminate-normal"),
    v(V11, "9302009202a862616420636f6465", (2, 0, [2, b"bad code"]),
      lambda: V0_11.terminate(2, "bad code"), "terminate-abnormal"),
    v(V11, "93030791a470696e67", (3, 7, [b"ping"]), lambda: V0_11.invoke(7, "ping"), "invoke"),
    v(V11, "93040791a26869", (4, 7, [b"hi"]), lambda: V0_11.chunk(7, b"hi"), "chunk"),
    v(V11, "93050792d09cb06e6f2068616e646c657220666f722078", (5, 7, [-100, b"no handler for x"]),
      lambda: V0_11.error(7, -100, "no handler for x"), "error"),
    v(V11, "93060790", (6, 7, []), lambda: V0_11.choke(7), "choke"),
    # 11.2 v0.11 HTTP session
    v(V11, "93040891be" + REQUEST_FRAME.hex(), (4, 8, [REQUEST_FRAME]),
      lambda: V0_11.chunk(8, REQUEST_FRAME), "http-request-chunk"),
    v(V11, "93040891bd" + RESPONSE_HEAD.hex(), (4, 8, [RESPONSE_HEAD]),
      lambda: V0_11.chunk(8, RESPONSE_HEAD), "http-head-chunk"),
    v(V11, "93040891a6a568656c6c6f", (4, 8, [b"\xa5hello"]),
      lambda: V0_11.chunk(8, pack("hello")), "http-body-chunk"),
    v(V11, "93060890", (6, 8, []), lambda: V0_11.choke(8), "http-choke"),
    # 11.3 v0.11 services
    v(V11, "93000191a773746f72616765", (0, 1, [b"storage"]),
      lambda: V0_11.call(1, 0, ["storage"]), "resolve-call"),
    v(V11, "93040191da0030" + RESOLVE_INNER.hex(), (4, 1, [RESOLVE_INNER]),
      lambda: V0_11.chunk(1, pack([["node1.example", 32769], 1,
                                   {0: "read", 1: "write", 2: "remove", 3: "find"}])),
      "resolve-reply"),
    v(V11, "93060190", (6, 1, []), lambda: V0_11.choke(1), "resolve-choke"),
    v(V11, "9305019201bf73657276696365206e6f73756368206973206e6f7420617661696c61626c65",
      (5, 1, [1, b"service nosuch is not available"]),
      lambda: V0_11.error(1, 1, "service nosuch is not available"), "resolve-not-found"),
    v(V11, "9300029303a86170702f6563686fa568656c6c6f", (0, 2, [3, b"app/echo", b"hello"]),
      lambda: V0_11.call(2, 0, [3, "app/echo", "hello"]), "logging-emit"),
    v(V11, "93010390", (1, 3, []), lambda: V0_11.call(3, 1, []), "verbosity-call"),
    v(V11, "93040391a104", (4, 3, [b"\x04"]), lambda: V0_11.chunk(3, pack(4)), "verbosity-reply"),
    v(V11, "93000492a96d616e696665737473a46563686f", (0, 4, [b"manifests", b"echo"]),
      lambda: V0_11.call(4, 0, ["manifests", "echo"]), "storage-read"),
    v(V11, "93040491a2a176", (4, 4, [b"\xa1v"]), lambda: V0_11.chunk(4, pack("v")),
      "storage-read-reply"),
    v(V11, "93010594a26e73a16ba17691a27431", (1, 5, [b"ns", b"k", b"v", [b"t1"]]),
      lambda: V0_11.call(5, 1, ["ns", "k", "v", ["t1"]]), "storage-write"),
    v(V11, "93040691a792a26b31a26b32", (4, 6, [b"\x92\xa2k1\xa2k2"]),
      lambda: V0_11.chunk(6, pack(["k1", "k2"])), "storage-find-reply"),
    v(V11, "93000992a470696e67a3a26869", (0, 9, [b"ping", b"\xa2hi"]),
      lambda: V0_11.call(9, 0, ["ping", pack("hi")]), "app-enqueue"),
    # 11.4 v0.12 (decoded as (id, channel, args))
    v(V12, "930100 91" + H, (0, 1, [UUID_B]), lambda: V0_12.handshake(UUID), "handshake"),
    v(V12, "93010090", (0, 1, []), V0_12.heartbeat, "heartbeat"),
    v(V12, "9301019201a873687574646f776e", (1, 1, [1, b"shutdown"]),
      lambda: V0_12.terminate(1, "shutdown"), "terminate"),
    v(V12, "93020091a470696e67", (0, 2, [b"ping"]), lambda: V0_12.invoke(2, "ping"), "invoke"),
    v(V12, "93020091a26869", (0, 2, [b"hi"]), lambda: V0_12.chunk(2, b"hi"), "write"),
    v(V12, "93020192922a64a4626f6f6d", (1, 2, [[42, 100], b"boom"]),
      lambda: V0_12.error(2, 100, "boom"), "error"),
    v(V12, "93020290", (2, 2, []), lambda: V0_12.choke(2), "close"),
    v(V12, "93020091a568656c6c6f", (0, 2, [b"hello"]), lambda: V0_12.chunk(2, b"hello"),
      "http-body-write"),
    v(V12, "93010091a773746f72616765", (0, 1, [b"storage"]),
      lambda: V0_12.call(1, 0, ["storage"]), "resolve-call"),
    v(V12, "930100939192a93132372e302e302e31cd800101810093a47265616480820092a576616c7565800192a5"
      "6572726f7280",
      (0, 1, [[[b"127.0.0.1", 32769]], 1, {0: [b"read", {}, {0: [b"value", {}],
                                                            1: [b"error", {}]}]}]),
      lambda: pack([1, 0, [[["127.0.0.1", 32769]], 1,
                           {0: ["read", {}, {0: ["value", {}], 1: ["error", {}]}]}]]),
      "resolve-value"),
    v(V12, "93010192920a01b873657276696365206973206e6f7420617661696c61626c65",
      (1, 1, [[10, 1], b"service is not available"]),
      lambda: pack([1, 1, [[10, 1], "service is not available"]]), "resolve-error"),
    v(V12, "9301009401a46563686fa568656c6c6f9192a475756964" + H,
      (0, 1, [1, b"echo", b"hello", [[b"uuid", UUID_B]]]),
      lambda: V0_12.call(1, 0, [1, "echo", "hello", [["uuid", UUID]]]), "logging-emit"),
    v(V12, "94010091a773746f726167659393c250a8010000000000000093c251a8010000000000000093c252a8"
      "0000000000000000",
      (0, 1, [b"storage"], Trace(1, 1, 0)),
      lambda: pack([1, 0, ["storage"], [[False, 80, b"\x01" + bytes(7)],
                                         [False, 81, b"\x01" + bytes(7)],
                                         [False, 82, bytes(8)]]]), "trace-headers"),
    v(V12, "94020091a470696e6793cf0000000000000050cf0000000000000051cf0000000000000052",
      (0, 2, [b"ping"]), None, "runtime-untraced"),
    v(V12, "94020091a470696e679193c3cf0000000000000050a88877665544332211",
      (0, 2, [b"ping"]), None, "runtime-traced"),
    # unusable sessions: dropped with a report (decode-only: no encoder makes them)
    v(V11, "9304a361626391a178",
      (4, BAD_SESSION, ["session must be a non-negative integer, got string b'abc'"]), None,
      "string-session"),
    v(V11, "9303fb91a470696e67",
      (3, BAD_SESSION, ["session must be a non-negative integer, got integer -5"]), None,
      "negative-session"),
    v(V11, "9304cb3ff800000000000091a178",
      (4, BAD_SESSION, ["session must be a non-negative integer, got float 1.5"]), None,
      "float-session"),
    v(V11, "9304c091a178", (4, BAD_SESSION, ["session must be a non-negative integer, got nil"]),
      None, "nil-session"),
    v(V12, "93ff0491a178",
      (4, BAD_SESSION, ["session must be a non-negative integer, got integer -1"]), None,
      "negative-channel"),
]


def data_of(vector: Vector) -> bytes:
    return bytes.fromhex(vector.hex.replace(" ", ""))


def feed_all(decoder: Any, pieces: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("vector", VECTORS)
class TestVectors:
    def test_decodes_exactly(self, decoder_cls: Any, vector: Vector) -> None:
        """The whole vector in one feed gives exactly the documented message."""
        decoder = decoder_cls(vector.dialect)

        messages = decoder.feed(data_of(vector))

        assert messages == [vector.decoded]
        assert all(type(part) is int for part in messages[0][:2])

    def test_byte_at_a_time(self, decoder_cls: Any, vector: Vector) -> None:
        """One byte per feed gives the message on the last byte and nothing before."""
        data = data_of(vector)
        decoder = decoder_cls(vector.dialect)

        results = [decoder.feed(data[i : i + 1]) for i in range(len(data))]

        assert results[-1] == [vector.decoded]
        assert not any(results[:-1])

    @pytest.mark.parametrize("seed", range(5))
    def test_random_splits_with_trailing_partial(
        self, decoder_cls: Any, vector: Vector, seed: int
    ) -> None:
        """Three copies split at random points, then half a fourth: three messages, and the
        fourth once its rest arrives."""
        data = data_of(vector)
        rng = random.Random(f"{vector.hex}-{seed}")
        stream = data * 3 + data[: len(data) // 2]
        cuts = rng.sample(range(1, len(stream)), k=min(6, len(stream) - 1))
        decoder = decoder_cls(vector.dialect)

        first = feed_all(decoder, split_at(stream, cuts))
        rest = decoder.feed(data[len(data) // 2 :])

        assert first == [vector.decoded] * 3
        assert rest == [vector.decoded]

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_accepts_any_buffer(self, decoder_cls: Any, vector: Vector, kind: Any) -> None:
        """bytes, bytearray and memoryview input decode alike, raw strings coming back as bytes."""
        decoder = decoder_cls(vector.dialect)

        messages = decoder.feed(kind(data_of(vector)))

        assert messages == [vector.decoded]
        assert all(type(a) is bytes for a in messages[0][2] if isinstance(a, (bytes, bytearray)))

    def test_encoder_is_byte_exact(self, vector: Vector) -> None:
        """The encoder for this message produces exactly the vector's bytes."""
        if vector.encode is None:  # hand-built runtime frames and dropped messages: decode-only
            assert vector.hex.startswith("94") or vector.decoded[1] == BAD_SESSION
            return

        assert vector.encode().hex() == data_of(vector).hex()


@pytest.mark.parametrize("dialect", [V11, V12])
def test_every_vector_in_one_stream(decoder_cls: Any, dialect: str) -> None:
    """All vectors of a dialect back to back, in 7-byte slices, decode in order."""
    vectors = [p.values[0] for p in VECTORS if p.values[0].dialect == dialect]
    stream = b"".join(data_of(x) for x in vectors)
    decoder = decoder_cls(dialect)

    messages = feed_all(decoder, [stream[i : i + 7] for i in range(0, len(stream), 7)])

    assert messages == [x.decoded for x in vectors]


def test_chunk_header_frames_payload_without_copying() -> None:
    """chunk_header plus the payload equals chunk(), for every raw header size."""
    for size in (0, 31, 32, 65535, 65536):
        payload = b"x" * size

        assert V0_11.chunk_header(7, size) + payload == V0_11.chunk(7, payload)
        assert V0_12.chunk_header(7, size) + payload == pack([7, 0, [payload]])
