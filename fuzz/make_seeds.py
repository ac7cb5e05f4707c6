"""Write the seed corpus (fuzz/corpus/): the worker's everyday traffic in both dialects, and
each kind of input the decoder has a rule for (big ids, unusable sessions, every msgpack type,
nesting, limits, ext types, long string headers, malformed bytes), under a few configurations each.

    python -m fuzz.make_seeds [directory]
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

import msgpack

from cocaine_http.protocol.dialect import V0_11, V0_12, Dialect

from .layout import build


def traffic(d: Dialect) -> bytes:
    """A worker's read: handshake, heartbeats, sessions with chunks, errors, terminate."""
    return b"".join([
        d.handshake("0e7f4b9c-5d1a-4c2e-9a57-3f6c2b8d1e40"), d.heartbeat(),
        d.invoke(2, "ping"), d.chunk(2, b"hello"), d.chunk(2, b"x" * 300), d.choke(2),
        d.invoke(3, "a-longer-event-name"), d.error(3, 5, "bad"), d.heartbeat(),
        d.chunk(4, b"y" * 17000), d.terminate(1, "slave is idle"),
    ])  # fmt: skip


def frames(v12: bool) -> list[bytes]:
    """Messages of every shape the rules name, as the dialect frames them."""
    def frame(mid: object, session: object, args: object, *extra: object) -> bytes:
        items = [session, mid, args, *extra] if v12 else [mid, session, args]
        packed: bytes = msgpack.packb(items, use_bin_type=False)
        return packed

    out = [
        frame(1, 0, []), frame(3, 7, [b"ev"]), frame(4, 7, [b"p" * 9]), frame(6, 7, []),
        frame(5, 7, [[1, 2], b"message"]), frame(7, 1, [1, {b"k": [1.5, None, True]}]),
        frame(2**63, 2**64 - 1, [b"big ids"]), frame(2**60, 1, []), frame(3, 7, []),
        frame(2, 0, [b"x"]), frame(4, 1, [b"z" * 2000]),
        msgpack.packb([1, 2, [b"\x00" * 1500]], use_bin_type=True),
        msgpack.packb([[[[[[]]]]]]), msgpack.packb({b"not": b"an array"}),
        msgpack.packb([1, 2, 3, 4, 5]), msgpack.packb([-1, 0, []]), msgpack.packb([1, 0, b"x"]),
        b"\x93\x01\x02\x91\xc1", b"\x93\x01\x02\x91\xd4\x05\x00", b"\x93\x01\x02\x91\xd6\xff\x00\x00\x00\x00",
        b"\x93\x01\x02\x91\xd7\xff" + struct.pack(">Q", 1_000_000_000 << 34),
        b"\x93\x01\x02\x91\xc7\x0c\xff" + struct.pack(">IQ", 999_999_999, 1),
        b"\x93\x01\x02\x91\xc7\x0c\xff" + struct.pack(">IQ", 1_000_000_000, 1),
        b"\x93\x01\x02\x91\x81\x90\x01", b"\x93\x01\x02\x91\xdb\xff\xff\xff\xff",
        b"\x93\x01\x02\x91\xc9\xff\xff\xff\xff", b"\x93\x01\x02\x91\xc9\xff\xff\xff\xfe\x05",
        b"\x93\x01\x02\x91\xc6\x00\x00\x01\x00" + b"q" * 256, b"\x93\x01\x02\xdd\x80\x00\x00\x00",
        b"\x93\x01\x02\x91" + b"\x91" * 40 + b"\x90", b"\x93\xcf" + b"\xff" * 8 + b"\x00\x90",
        b"\x93\x01\x02\x92\x01\xda\x00\x03abc", b"\x93\x01\x02\x91\xa3ab",
        # unusable sessions (dropped, the stream goes on), also on a big chunk and with a bad id
        frame(4, b"abc", [b"x"]), frame(3, -5, [b"ping"]), frame(4, 1.5, []), frame(4, None, [5]),
        frame(6, True, []), frame(4, [1, 2], [b"x"]), frame(2**64 - 1, -(2**63), []),
        frame(4, -3, [b"z" * 20000]), frame(-1, b"abc", []), frame(4, b"abc", b"x"),
    ]  # fmt: skip
    if v12:
        zero, one = bytes(8), (1).to_bytes(8, "little")
        by_name = [[False, n, v] for n, v in ((b"trace_id", one), (b"span_id", one),
                                              (b"parent_id", zero))]
        out += [
            frame(0, 3, [b"h"], [[b"hdr", b"v"]]), frame(0, 3, [], b"not a list"),
            # trace headers: the runtime's zeros and a trace by name, PY12's static indices,
            # stored entries and references to them, refused indices and values
            frame(0, 3, [b"http"], [[False, b"trace_id", zero], [False, b"span_id", zero],
                                    [False, b"parent_id", zero]]),
            frame(0, 3, [b"http"], by_name), frame(0, 3, [b"x" * 40], [[False, 80, one],
                                                                       [False, 81, one], 82]),
            frame(0, 3, [], [[True, b"trace_id", one], [True, 81, one], [True, 82, zero]])
            + frame(0, 4, [b"q"], [85, 84, 83]),
            frame(0, 3, [], [0]), frame(0, 3, [], [83]), frame(0, 3, [], [[False, 0, one]]),
            frame(0, 3, [], [[False, b"trace_id", b"x"], [False, 81, one], 82]),
            frame(0, 3, [], [[1, b"a", b"b"], None]), frame(0, 3, [], [[False, 200, one]]),
        ]
    return out


def seeds() -> list[bytes]:
    """Every seed input: each stream under a few configurations."""
    out = []
    for v12, d in ((False, V0_11), (True, V0_12)):
        stream = traffic(d)
        for records, patches, collect, seed in ((0, 0, True, 1), (6, 6, False, 77), (7, 7, True, 9)):
            out.append(build(stream, v12=v12, collect=collect, records=records, patches=patches, seed=seed))
        for i, message in enumerate(frames(v12)):
            out.append(build(message, v12=v12, records=i % 4, patches=i % 3, seed=i + 3))
            out.append(build(message + d.heartbeat(), v12=v12, collect=True, size=i % 8, depth=i % 8, seed=i))
    return out


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "fuzz/corpus")
    target.mkdir(parents=True, exist_ok=True)
    for data in seeds():
        (target / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"{len(seeds())} seeds in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
