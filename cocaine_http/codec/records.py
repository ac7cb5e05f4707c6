# Strategy: what both decoders give and take, declared once so that the C and Python
# implementations cannot drift apart: the record layout of feed_records and its helpers (plain
# functions over it), the message shape of feed, and the constructor's limits.
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Union

from .hpack import HeaderError, HeaderTable, Trace, read_trace

#: One decoded message: (message id, session or channel id, argument list), and for a v0.12
#: frame whose headers carry a trace, that trace as a fourth item.
Message = Union[tuple[int, int, list[Any]], tuple[int, int, list[Any], Trace]]

#: Index by `is_v12`.
DIALECTS = ("v0.11", "v0.12")

#: A request frame carries the whole HTTP body (64 MiB by default) plus its headers.
DEFAULT_MAX_MESSAGE_SIZE = 72 * 1024 * 1024
DEFAULT_MAX_DEPTH = 32
#: msgpack's own parser stack; deeper input fails inside msgpack even before it is complete.
HARD_MAX_DEPTH = 1024


def check_limits(
    dialect: str, max_message_size: int | None, max_depth: int | None
) -> tuple[bool, int, int]:
    """Validate constructor arguments; returns (is_v12, max_message_size, max_depth)."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, not {dialect!r}")
    size = DEFAULT_MAX_MESSAGE_SIZE if max_message_size is None else max_message_size
    depth = DEFAULT_MAX_DEPTH if max_depth is None else max_depth
    if not 1 <= size <= 2**31 - 1:
        raise ValueError(f"max_message_size must be in 1..{2**31 - 1}, not {size}")
    if not 1 <= depth <= HARD_MAX_DEPTH:
        raise ValueError(f"max_depth must be in 1..{HARD_MAX_DEPTH}, not {depth}")
    return dialect == "v0.12", size, depth


# -- records (Decoder.feed_records) --------------------------------------------------------------
# A read decodes into an iterable of records, one 4-tuple per message: (kind, session, a, b),
# where kind = message id * 8 + shape:
#   EMPTY  the arguments are []          (a = b = 0)
#   RAW    the arguments are [buf[a:b]]  (one raw string, a span of the returned buffer)
#   ARGS   the arguments are `a`, an already decoded list (any list, even [] or [raw])
#   SHORT  the arguments are [short_bytes(a)]: one raw string of at most 7 bytes, packed into
#          the int `a` (a 0x01 marker byte, then its bytes, big-endian), so that a dispatcher
#          can map it to a cached value without slicing (the C decoder uses it for every such
#          string, the Python reference never does)
#   DROPPED a well-framed message whose session is unusable (not a non-negative integer: a
#          string, a negative number, a float, nil...). The stream is still in sync, so the
#          decoder goes on after it; the receiver reports and drops it. session is BAD_SESSION
#          and `a` says what was wrong (`bad_session`). As a `feed` message it is
#          (id, BAD_SESSION, [that text]). A v0.12 frame whose headers element the runtime
#          would refuse (codec.hpack) is dropped the same way.
#   TRACED a v0.12 frame whose headers carry a trace (not the zero trace): `a` is the decoded
#          argument list, `b` the Trace. As a `feed` message it is (id, channel, args, trace).
REC_EMPTY, REC_RAW, REC_ARGS, REC_SHORT, REC_DROPPED, REC_TRACED = 0, 1, 2, 3, 4, 5

#: The session of a dropped message: no delivered message has a negative session.
BAD_SESSION = -1

#: One read as records: an iterator of them and the buffer the RAW spans refer to.
Records = tuple[Iterator[tuple[Any, ...]], Any]


def short_bytes(packed: int) -> bytes:
    """The raw string of a SHORT record."""
    size = (packed.bit_length() - 1) // 8
    return (packed - (1 << 8 * size)).to_bytes(size, "big")


#: How `bad_session` names a decoded msgpack value's type.
_TYPES = {bytes: "string", bool: "boolean", int: "integer", float: "float",
          list: "array", dict: "map"}  # fmt: skip
#: Longest excerpt of a bad session's value in its report.
_EXCERPT = 32


def bad_session(value: Any) -> str:
    """What was wrong with an unusable session, its value abbreviated (never the whole of
    a long string or container: a peer may send megabytes of it)."""
    kind = _TYPES.get(type(value), type(value).__name__)
    if value is None:
        text = "nil"
    elif type(value) is bool:
        text = f"boolean {str(value).lower()}"
    elif type(value) in (list, dict):
        text = f"{kind} of {len(value)} items"
    elif type(value) is bytes and len(value) > _EXCERPT:
        text = f"{kind} {value[:_EXCERPT]!r}... ({len(value)} bytes)"
    else:
        text = f"{kind} {value!r}"
    return f"session must be a non-negative integer, got {text}"


def v12_message(
    mid: int, channel: Any, args: list[Any], headers: list[Any], table: HeaderTable
) -> Message:
    """A well-framed v0.12 message once its channel and headers are read: dropped
    (BAD_SESSION) when the channel is unusable (the table is then left alone) or the headers
    are refused, traced when they carry a trace."""
    if not (type(channel) is int and channel >= 0):
        return (mid, BAD_SESSION, [bad_session(channel)])
    if not headers:
        return (mid, channel, args)
    try:
        trace = read_trace(headers, table)
    except HeaderError as exc:
        return (mid, BAD_SESSION, [f"bad headers: {exc}"])
    return (mid, channel, args) if trace is None else (mid, channel, args, trace)


def records_of(messages: list[Message]) -> tuple[list[tuple[Any, ...]], bytes]:
    """Messages as records, the raw payloads laid end to end in one new buffer."""
    records: list[tuple[Any, ...]] = []
    raws: list[bytes] = []
    at = 0
    for message in messages:
        mid, session, args = message[0], message[1], message[2]
        if len(message) == 4:
            records.append((mid * 8 + REC_TRACED, session, args, message[3]))
        elif not args:
            records.append((mid * 8 + REC_EMPTY, session, 0, 0))
        elif len(args) == 1 and type(args[0]) is bytes:
            end = at + len(args[0])
            records.append((mid * 8 + REC_RAW, session, at, end))
            raws.append(args[0])
            at = end
        elif session == BAD_SESSION:
            records.append((mid * 8 + REC_DROPPED, session, args[0], 0))
        else:
            records.append((mid * 8 + REC_ARGS, session, args, 0))
    return records, b"".join(raws)


def messages_of(records: Iterable[tuple[Any, ...]], buf: Any) -> list[Message]:
    """Records back as (id, session, args) messages (each with its own argument list)."""
    out: list[Message] = []
    with memoryview(buf) as view:
        for kind, session, a, b in records:
            shape = kind & 7
            if shape == REC_EMPTY:
                args: list[Any] = []
            elif shape == REC_RAW:
                args = [view[a:b].tobytes()]
            elif shape == REC_SHORT:
                args = [short_bytes(a)]
            elif shape == REC_DROPPED:
                args = [a]
            elif shape == REC_TRACED:
                out.append((kind >> 3, session, a, b))
                continue
            else:
                args = a
            out.append((kind >> 3, session, args))
    return out
