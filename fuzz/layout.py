"""The layout of a fuzz input (fuzz/fuzz_records.c reads the same): four control bytes, then
the stream. The Python replay (fuzz/replay.py) and the seed maker (fuzz/make_seeds.py) use it,
so a corpus file means the same configuration and the same split points everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

RECORDS = (1, 2, 3, 4, 5, 8, 64, 2048)
PATCHES = (1, 2, 3, 4, 8, 16, 256, 2048)
SIZES = (16, 64, 256, 1024, 4096, 65536, 75497472, 2147483647)
DEPTHS = (1, 2, 3, 4, 8, 32, 1000, 1024)


@dataclass(frozen=True)
class Case:
    """One fuzz input, decoded."""

    v12: bool
    collect: bool
    records: int
    patches: int
    max_size: int
    max_depth: int
    seed: int
    stream: bytes

    @property
    def dialect(self) -> str:
        return "v0.12" if self.v12 else "v0.11"

    def pieces(self) -> Iterator[bytes]:
        """The stream cut at the harness's split points."""
        state, at = self.seed | 1, 0
        while at < len(self.stream):
            state, size = _piece(state)
            yield self.stream[at : at + size]
            at += size


def parse(data: bytes) -> Case | None:
    """The case an input file holds (None if it is too short, as the harness skips it)."""
    if len(data) < 4:
        return None
    flags, limits = data[0], data[1]
    return Case(
        v12=bool(flags & 1),
        collect=bool(flags & 2),
        records=RECORDS[(flags >> 2) & 7],
        patches=PATCHES[(flags >> 5) & 7],
        max_size=SIZES[limits & 7],
        max_depth=DEPTHS[(limits >> 3) & 7],
        seed=data[2] | data[3] << 8,
        stream=data[4:],
    )


def build(
    stream: bytes, *, v12: bool = False, collect: bool = False, records: int = 0,
    patches: int = 0, size: int = 6, depth: int = 5, seed: int = 1,
) -> bytes:  # fmt: skip
    """An input file: indices into the tables above, then the stream."""
    flags = int(v12) | int(collect) << 1 | records << 2 | patches << 5
    return bytes([flags, size | depth << 3, seed & 0xFF, seed >> 8 & 0xFF]) + stream


def _xorshift(s: int) -> int:
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    return s


def _piece(state: int) -> tuple[int, int]:
    """The harness's `piece`: (new state, next piece length)."""
    v = _xorshift(state)
    kind = v & 3
    if kind == 0:
        return v, 1
    return v, 1 + (v >> 2) % (8, 64, 1024)[kind - 1]
