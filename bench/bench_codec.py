"""Decoder throughput: the C decoder, the Python reference, and plain msgpack as the baseline.

Two streams, each fed in 64 KiB slices as a socket would deliver them:
- the v0.11 worker mix: per session an invoke, one 200-byte chunk, a choke, and a heartbeat;
- 64 KiB chunk payloads.
A third table feeds one request (invoke, chunk, choke) per call, the shape of a lightly loaded
worker's reads, where the fixed cost of a feed dominates.
Every decoder's messages go through the same Python dispatch loop, so the figures include
building the Python objects. The bar (issue 3): the C path at least as fast as
`msgpack.Unpacker(raw=True)` + dispatch on the mix, and at least 2 GB/s on 64 KiB chunks.
Figures are medians of interleaved repetitions (PERF.md: the machine is noisy).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from cocaine_http.codec import CDecoder, PythonDecoder
from cocaine_http.protocol.dialect import V0_11

SLICE = 64 * 1024
REPEATS = 9


def mix_stream(sessions: int) -> tuple[bytes, int]:
    body = b"x" * 200
    parts = []
    for s in range(1, sessions + 1):
        parts += [V0_11.invoke(s, "http"), V0_11.chunk(s, body), V0_11.choke(s), V0_11.heartbeat()]
    return b"".join(parts), 4 * sessions


def chunk_stream(count: int) -> tuple[bytes, int]:
    payload = bytes(range(256)) * 256
    return b"".join(V0_11.chunk(s, payload) for s in range(1, count + 1)), count


def requests(sessions: int) -> tuple[list[bytes], int]:
    body = b"x" * 200
    pieces = [V0_11.invoke(s, "http") + V0_11.chunk(s, body) + V0_11.choke(s) for s in range(1, sessions + 1)]
    return pieces, 3 * sessions


def slices(data: bytes) -> list[bytes]:
    return [data[i : i + SLICE] for i in range(0, len(data), SLICE)]


def dispatch(messages: Iterable[Any]) -> int:
    """The loop a worker runs over decoded messages (the same for every decoder)."""
    seen = 0
    for mid, session, args in messages:
        if mid == 4:
            seen += len(args[0])
        elif mid == 3:
            seen += session
        elif mid == 6:
            seen -= session
        else:
            seen += 1
    return seen


def run_baseline(pieces: list[bytes]) -> int:
    unpacker = msgpack.Unpacker(raw=True)
    seen = 0
    for piece in pieces:
        unpacker.feed(piece)
        seen += dispatch(unpacker)
    return seen


def runner(cls: type[Any]) -> Callable[[list[bytes]], int]:
    def run(pieces: list[bytes]) -> int:
        decoder = cls()
        feed = decoder.feed
        seen = 0
        for piece in pieces:
            seen += dispatch(feed(piece))
        return seen

    return run


def measure(
    runs: dict[str, Callable[[list[bytes]], int]], pieces: list[bytes]
) -> dict[str, list[float]]:
    """Seconds per pass for each runner, interleaved repetitions; checks they all agree."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    results = set()
    for _ in range(REPEATS):
        for name, run in runs.items():
            started = time.perf_counter()
            results.add(run(pieces))
            times[name].append(time.perf_counter() - started)
    assert len(results) == 1, f"decoders disagree: {results}"
    return times


def table(title: str, seconds: dict[str, list[float]], nbytes: int, nmsgs: int) -> None:
    """Median figures, with the best pass's ns/msg (the machine is shared and noisy)."""
    print(f"\n{title}: {nmsgs} messages, {nbytes / 1e6:.1f} MB, median of {REPEATS}")
    print(f"{'decoder':<34}{'ns/msg':>10}{'best':>10}{'msgs/s':>14}{'MB/s':>10}")
    for name, runs in seconds.items():
        secs, best = statistics.median(runs), min(runs)
        print(
            f"{name:<34}{secs / nmsgs * 1e9:>10.1f}{best / nmsgs * 1e9:>10.1f}"
            f"{nmsgs / secs:>14,.0f}{nbytes / secs / 1e6:>10,.0f}"
        )


def main() -> None:
    if CDecoder is None:
        raise SystemExit("the C decoder is not built (pip install -e .)")
    runs = {
        "C decoder (cocaine_http)": runner(CDecoder),
        "msgpack.Unpacker + dispatch": run_baseline,
    }
    data, n = mix_stream(25_000)
    table("worker mix", measure(runs, slices(data)), len(data), n)
    small, ns = mix_stream(1_000)
    ref = measure({"Python reference": runner(PythonDecoder)}, slices(small))
    table("worker mix, Python reference", ref, len(small), ns)

    pieces, n = requests(20_000)
    table("one request per feed", measure(runs, pieces), sum(map(len, pieces)), n)

    data, n = chunk_stream(800)
    table("64 KiB chunks", measure(runs, slices(data)), len(data), n)
    small, ns = chunk_stream(100)
    ref = measure({"Python reference": runner(PythonDecoder)}, slices(small))
    table("64 KiB chunks, Python reference", ref, len(small), ns)


if __name__ == "__main__":
    main()
