"""Decoder throughput: the C decoder, the Python reference, and plain msgpack as the baseline.

Two streams, each fed in 64 KiB slices as a socket would deliver them:
- the v0.11 worker mix: per session an invoke, one 200-byte chunk, a choke, and a heartbeat;
- 64 KiB chunk payloads.
A third table feeds one request (invoke, chunk, choke) per call, the shape of a lightly loaded
worker's reads, where the fixed cost of a feed dominates.
Every decoder's messages go through the same Python dispatch loop, so the figures include
building the Python objects. The bar: the C path at least as fast as
`msgpack.Unpacker(raw=True)` + dispatch on the mix, and at least 2 GB/s on 64 KiB chunks.

The Channel tables measure the real receive path: the same byte stream goes into
`Channel.data_received` (dummy transport, no-op callbacks) and into a minimal protocol that
feeds `msgpack.Unpacker(raw=True)` and calls the same callbacks (fetched once per read, the
event decoded to str like the Channel does) with no validation at all.
Figures are medians of interleaved repetitions (docs/benchmarks.md: the machine is noisy), with the
best.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from cocaine_http.aio import channel as channel_module
from cocaine_http.aio.channel import Channel
from cocaine_http.codec import CDecoder, PythonDecoder
from cocaine_http.codec.records import REC_RAW, messages_of
from cocaine_http.protocol.dialect import V0_11

SLICE = 64 * 1024
REPEATS = int(os.environ.get("BENCH_REPEATS", "9"))


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


def records_runner(cls: type[Any]) -> Callable[[list[bytes]], int]:
    """The decoder's dispatch-oriented API (`feed_records`) under the same dispatch loop."""

    def run(pieces: list[bytes]) -> int:
        feed = cls().feed_records
        seen = 0
        for piece in pieces:
            records, buf = feed(piece)
            for kind, session, a, b in records:
                mid = kind >> 3
                if mid == 4:
                    shape = kind & 7
                    if shape == REC_RAW:
                        seen += b - a
                    else:
                        seen += len(messages_of([(kind, session, a, b)], buf)[0][2][0])
                elif mid == 3:
                    seen += session
                elif mid == 6:
                    seen -= session
                else:
                    seen += 1
        return seen

    return run


# -- Channel level ---------------------------------------------------------------------------


class _Transport:
    """Just enough of an asyncio transport for data_received."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return False

    def write(self, data: Any) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class Sink:
    """The callbacks: no-ops (counting=False) or counters used to check both paths agree."""

    def __init__(self, counting: bool) -> None:
        self.total = 0
        if not counting:
            noop = _noop
            self.on_invoke = self.on_chunk = self.on_choke = self.on_heartbeat = noop
            self.on_error = self.on_terminate = self.on_message = noop

    def on_invoke(self, session: int, event: str) -> None:
        self.total += session + len(event)

    def on_chunk(self, session: int, data: bytes) -> None:
        self.total += len(data)

    def on_choke(self, session: int) -> None:
        self.total -= session

    def on_heartbeat(self) -> None:
        self.total += 1

    def on_error(self, session: int, code: int, message: str) -> None:
        self.total += code

    def on_terminate(self, session: int, code: int, reason: str) -> None:
        self.total += code

    def on_message(self, mid: int, session: int, args: Any) -> None:
        self.total += mid


def _noop(*args: Any) -> None:
    return None


CALLBACKS = ("on_invoke", "on_chunk", "on_choke", "on_heartbeat", "on_error", "on_terminate",
             "on_message")  # fmt: skip


class UnpackerProtocol:
    """The baseline receive path: msgpack.Unpacker plus a dispatch to the same callbacks."""

    def __init__(self, sink: Sink) -> None:
        self._unpacker = msgpack.Unpacker(raw=True)
        for name in CALLBACKS:
            setattr(self, name, getattr(sink, name))

    def data_received(self, data: bytes) -> None:
        unpacker = self._unpacker
        unpacker.feed(data)
        on_invoke, on_chunk, on_choke = self.on_invoke, self.on_chunk, self.on_choke
        on_heartbeat = self.on_heartbeat
        for mid, session, args in unpacker:
            if mid == 4:
                on_chunk(session, args[0])
            elif mid == 6:
                on_choke(session)
            elif mid == 3:
                on_invoke(session, args[0].decode("utf-8", "replace"))
            elif mid == 1:
                on_heartbeat()
            elif mid == 5:
                self.on_error(session, args[0], args[1].decode("utf-8", "replace"))
            elif mid == 2:
                self.on_terminate(session, args[0], args[1].decode("utf-8", "replace"))
            else:
                self.on_message(mid, session, args)


def channel_of(cls: type[Any] | None, sink: Sink) -> Any:
    """A Channel on decoder `cls` (None: the baseline protocol) wired to `sink`."""
    if cls is None:
        return UnpackerProtocol(sink)
    saved = channel_module.Decoder
    channel_module.Decoder = cls
    try:
        ch = Channel()
    finally:
        channel_module.Decoder = saved
    ch.connection_made(_Transport())  # type: ignore[arg-type]
    for name in CALLBACKS:
        setattr(ch, name, getattr(sink, name))
    return ch


def channel_runner(cls: type[Any] | None) -> Callable[[list[bytes]], int]:
    def run(pieces: list[bytes]) -> int:
        receive = channel_of(cls, Sink(False)).data_received
        for piece in pieces:
            receive(piece)
        return 0

    return run


def check_channels(classes: dict[str, type[Any] | None], pieces: list[bytes]) -> None:
    """Both receive paths deliver the same callbacks (checked once, outside the timing)."""
    totals = {}
    for name, cls in classes.items():
        sink = Sink(True)
        receive = channel_of(cls, sink).data_received
        for piece in pieces:
            receive(piece)
        totals[name] = sink.total
    assert len(set(totals.values())) == 1, f"receive paths disagree: {totals}"


def channel_tables() -> None:
    classes: dict[str, type[Any] | None] = {
        "Channel, C decoder": CDecoder,
        "Unpacker + dispatch (baseline)": None,
    }
    runs = {name: channel_runner(cls) for name, cls in classes.items()}
    data, n = mix_stream(25_000)
    check_channels(classes, slices(data))
    table("Channel: worker mix, 64 KiB reads", measure(runs, slices(data)), len(data), n)
    pieces, n = requests(20_000)
    check_channels(classes, pieces)
    table("Channel: one request per read", measure(runs, pieces), sum(map(len, pieces)), n)
    data, n = chunk_stream(800)
    check_channels(classes, slices(data))
    table("Channel: 64 KiB chunks, 64 KiB reads", measure(runs, slices(data)), len(data), n)


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
    if hasattr(CDecoder, "feed_records"):
        runs["C decoder, feed_records"] = records_runner(CDecoder)
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

    channel_tables()


if __name__ == "__main__":
    main()
