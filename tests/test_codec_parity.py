"""Property tests: the C decoder and the Python reference agree on every input, feed by feed:
the same messages (dropped ones with an unusable session included, with the same report), or
the same error type at the same offset with the same messages before it, through `feed` and
through `feed_records` alike."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocaine_http.codec import _python
from cocaine_http.codec.records import messages_of
from cocaine_http.errors import DecodeError

from tests.plugins.codec import load_decoder

CDecoder = load_decoder("c")
PythonDecoder = _python.Decoder

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.binary(max_size=70)
    | st.text(max_size=40)
)
keys = st.none() | st.booleans() | st.integers(-1000, 1000) | st.binary(max_size=8)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)
ids = st.integers(min_value=0, max_value=2**64 - 1) | st.integers(0, 10)
#: Sessions a well-framed message may carry that are no non-negative integer: such a message
#: is dropped with a report and the stream goes on.
bad_sessions = (
    st.integers(min_value=-(2**63), max_value=-1) | st.none() | st.booleans() | st.floats()
    | st.binary(max_size=50) | st.lists(st.integers(0, 5), max_size=3)
    | st.dictionaries(st.integers(0, 5), st.integers(0, 5), max_size=2)
)  # fmt: skip
headers = st.lists(st.integers(0, 200) | st.lists(scalars, max_size=3), max_size=3)


@st.composite
def frames(draw: Any, dialect: str) -> Any:
    args = draw(st.lists(values, max_size=4) | st.sampled_from([[], [b"ping"], [-100, b"x"]]))
    session = draw(ids | bad_sessions) if draw(st.integers(0, 5)) == 0 else draw(ids)
    frame = [draw(ids), session, args] if dialect == "v0.11" else [session, draw(ids), args]
    if dialect == "v0.12" and draw(st.booleans()):
        frame.append(draw(headers))
    return frame


@st.composite
def streams(draw: Any) -> tuple[str, bytes]:
    dialect = draw(st.sampled_from(["v0.11", "v0.12"]))
    bin_type = draw(st.booleans())  # also str8 0xd9 and bin 0xc4-0xc6
    parts = draw(st.lists(frames(dialect), min_size=1, max_size=6))
    data = b"".join(msgpack.packb(f, use_bin_type=bin_type) for f in parts)
    return dialect, data


@st.composite
def mutated(draw: Any) -> tuple[str, bytes]:
    dialect, data = draw(streams())
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[at] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del buf[at : at + draw(st.integers(1, 4))]
        else:
            del buf[at:]
    return dialect, bytes(buf)


limits = st.fixed_dictionaries(
    {},
    optional={"max_message_size": st.integers(1, 400), "max_depth": st.integers(1, 8)},
)


def cuts_for(data: bytes) -> Any:
    return st.lists(st.integers(0, len(data)), max_size=8).map(sorted)


def run(cls: type[Any], dialect: str, data: bytes, cuts: list[int], kw: dict[str, Any]) -> list[Any]:
    """Feed `data` split at `cuts`; one entry per feed: repr of messages, or the error."""
    decoder = cls(dialect, **kw)
    log: list[Any] = []
    bounds = [0, *cuts, len(data)]
    for a, b in zip(bounds, bounds[1:]):
        try:
            log.append(repr(decoder.feed(data[a:b])))
        except DecodeError as exc:
            log.append((type(exc).__name__, exc.offset, repr(exc.messages)))
            break
    return log


def run_records(
    cls: type[Any], dialect: str, data: bytes, cuts: list[int], kw: dict[str, Any]
) -> list[Any]:
    """Like `run`, through feed_records (records turned back into messages)."""
    decoder = cls(dialect, **kw)
    log: list[Any] = []
    bounds = [0, *cuts, len(data)]
    for a, b in zip(bounds, bounds[1:]):
        try:
            log.append(repr(messages_of(*decoder.feed_records(data[a:b]))))
        except DecodeError as exc:
            log.append((type(exc).__name__, exc.offset, repr(exc.messages)))
            break
    return log


def assert_agree(dialect: str, data: bytes, cuts: list[int], kw: dict[str, Any]) -> None:
    expected = run(PythonDecoder, dialect, data, cuts, kw)
    assert run(CDecoder, dialect, data, cuts, kw) == expected
    assert run_records(CDecoder, dialect, data, cuts, kw) == expected
    assert run_records(PythonDecoder, dialect, data, cuts, kw) == expected


@SETTINGS
@given(stream=streams(), data=st.data())
def test_valid_streams_agree(stream: tuple[str, bytes], data: Any) -> None:
    """Random valid streams split at random points decode identically."""
    dialect, raw = stream
    assert_agree(dialect, raw, data.draw(cuts_for(raw)), {})


@SETTINGS
@given(stream=streams(), data=st.data(), kw=limits)
def test_limits_agree(stream: tuple[str, bytes], data: Any, kw: dict[str, Any]) -> None:
    """With small size and depth limits both fail alike (or not at all)."""
    dialect, raw = stream
    assert_agree(dialect, raw, data.draw(cuts_for(raw)), kw)


@SETTINGS
@given(stream=mutated(), data=st.data(), kw=limits)
def test_mutated_streams_agree(stream: tuple[str, bytes], data: Any, kw: dict[str, Any]) -> None:
    """Flipped, inserted, deleted and truncated bytes give the same messages or errors."""
    dialect, raw = stream
    assert_agree(dialect, raw, data.draw(cuts_for(raw)), kw)


#: String and ext headers with a length: first byte -> bytes of length (ext: then a type byte).
LENGTH_HEADERS = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4}


@st.composite
def announcing(draw: Any) -> tuple[str, bytes, int]:
    """Valid messages, then one whose string or ext header announces a payload (of any length,
    often near the size limit) of which only a few bytes follow; and the size limit."""
    dialect, data = draw(streams())
    limit = draw(st.integers(8, 400))
    first = draw(st.sampled_from(sorted(LENGTH_HEADERS)))
    width = LENGTH_HEADERS[first]
    length = draw(st.integers(0, 2 ** (8 * width) - 1) | st.integers(max(0, limit - 20), limit + 5))
    header = bytes([first]) + min(length, 2 ** (8 * width) - 1).to_bytes(width, "big")
    if first in (0xC7, 0xC8, 0xC9) and draw(st.booleans()):
        header += bytes([draw(st.integers(0, 255))])
    tail = b"\x93\x01\x02\x91" + header + draw(st.binary(max_size=12))
    return dialect, data + tail, limit


@SETTINGS
@given(case=announcing(), data=st.data())
def test_announced_sizes_agree(case: tuple[str, bytes, int], data: Any) -> None:
    """A header announcing more than fits fails alike on both, at the same feed."""
    dialect, raw, limit = case
    assert_agree(dialect, raw, data.draw(cuts_for(raw)), {"max_message_size": limit})


@SETTINGS
@given(raw=st.binary(max_size=64), dialect=st.sampled_from(["v0.11", "v0.12"]))
def test_random_bytes_agree(raw: bytes, dialect: str) -> None:
    """Arbitrary bytes, fed whole and byte by byte, give the same result."""
    assert_agree(dialect, raw, [], {})
    assert_agree(dialect, raw, list(range(1, len(raw))), {"max_depth": 3})


def test_a_failing_comparison_is_detected() -> None:
    """The parity harness reports a difference when there is one (it can fail)."""
    good = msgpack.packb([1, 2, [b"x"]])

    assert run(CDecoder, "v0.11", good, [], {}) != run(PythonDecoder, "v0.12", good + b"\xc1", [], {})
