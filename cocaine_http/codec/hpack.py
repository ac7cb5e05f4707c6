# Strategy: the headers element of a v0.12 frame, read the way the runtime reads it
# [CORE12 `include/cocaine/hpack/msgpack_traits.hpp` unpack_vector, `src/header.cpp`], for the
# one thing the project takes from it: the trace. Both decoders use this module, so the rules
# live in one place: the C decoder hands every frame whose headers it cannot vouch for (a
# table entry, an index beyond the static table, a trace other than zero, anything odd) to
# Python whole, and Python reads it here with the connection's table.
#
# An entry is an index alone (a header of the static or dynamic table), or
# [store, name, value]: store a boolean (true: the header joins the connection's dynamic
# table), name a raw string or an index whose name is taken, value a raw string. Index 0 and
# indices past the table are errors, and so is any other shape: the message is dropped with
# the reason, the stream goes on. The dynamic table is the HTTP/2 one: newest first from index
# STATIC_SIZE, bounded by TABLE_CAPACITY bytes counting 32 per entry over its name and value,
# the oldest entries evicted to make room, and an entry larger than the whole table empties it.
#
# The trace is the first trace_id, span_id and parent_id among the frame's headers, each
# 8 bytes read as a little-endian unsigned integer (the runtime packs the uint64 in memory
# order, and PY12 packs struct "@Q": both little-endian on the runtime's platforms). Three
# zeros (what the runtime stamps on every frame outside a trace) are no trace.
from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple


class Trace(NamedTuple):
    """The trace a v0.12 frame carries: three opaque 64-bit ids (trace, span, parent)."""

    trace_id: int
    span_id: int
    parent_id: int


class HeaderError(ValueError):
    """A headers element the runtime would refuse: the message carrying it is dropped."""


#: Names of the trace headers, and their indices in the static table.
TRACE_NAMES = (b"trace_id", b"span_id", b"parent_id")
TRACE_INDICES = (80, 81, 82)
ZERO = bytes(8)
_TRACE_SET = frozenset(TRACE_NAMES)

#: The static table's names by index [CORE12 `include/cocaine/hpack/static_table.hpp`]: the
#: HTTP/2 table (RFC 7541 appendix A) at 1-61, empty placeholders at 0 and 62-79, then the
#: trace headers. Values only matter for the trace headers (8 zero bytes): no other header
#: is read, and a stored entry takes only its name from an index.
_HTTP2 = (
    ":authority :method :method :path :path :scheme :scheme :status :status :status :status"
    " :status :status :status accept-charset accept-encoding accept-language accept-ranges"
    " accept access-control-allow-origin age allow authorization cache-control"
    " content-disposition content-encoding content-language content-length content-location"
    " content-range content-type cookie date etag expect expires from host if-match"
    " if-modified-since if-none-match if-range if-unmodified-since last-modified link location"
    " max-forwards proxy-authenticate proxy-authorization range referer refresh retry-after"
    " server set-cookie strict-transport-security transfer-encoding user-agent vary via"
    " www-authenticate"
).split()
STATIC: tuple[tuple[bytes, bytes], ...] = (
    ((b"", b""),)
    + tuple((name.encode(), b"") for name in _HTTP2)
    + ((b"", b""),) * 18
    + tuple((name, ZERO) for name in TRACE_NAMES)
)
STATIC_SIZE = len(STATIC)
assert STATIC_SIZE == 83 and STATIC[80][0] == b"trace_id"

#: The dynamic table's bound in bytes, and what each entry counts beyond its name and value.
TABLE_CAPACITY = 4096
ENTRY_OVERHEAD = 32


class HeaderTable:
    """One connection's dynamic table (each direction of a connection has its own)."""

    __slots__ = ("entries", "size")

    def __init__(self) -> None:
        self.entries: deque[tuple[bytes, bytes]] = deque()
        self.size = 0

    def __getitem__(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index < STATIC_SIZE:
            return STATIC[index]
        if STATIC_SIZE <= index < STATIC_SIZE + len(self.entries):
            return self.entries[index - STATIC_SIZE]
        raise HeaderError(f"invalid index {index} for the header table")

    def push(self, name: bytes, value: bytes) -> None:
        """Add a header, newest first, evicting the oldest ones to stay within the bound."""
        size = len(name) + len(value) + ENTRY_OVERHEAD
        entries = self.entries
        while entries and self.size + size > TABLE_CAPACITY:
            old = entries.pop()
            self.size -= len(old[0]) + len(old[1]) + ENTRY_OVERHEAD
        if size <= TABLE_CAPACITY:
            entries.appendleft((name, value))
            self.size += size


def _is_index(value: Any) -> bool:
    return type(value) is int and value >= 0


def _entry(item: Any, table: HeaderTable) -> tuple[bytes, bytes]:
    """One header of the element: (name, value)."""
    if _is_index(item):
        return table[item]
    if not (type(item) is list and len(item) == 3 and type(item[0]) is bool
            and (_is_index(item[1]) or type(item[1]) is bytes)
            and type(item[2]) is bytes):  # fmt: skip
        raise HeaderError(
            f"a header is an index or [store, name, value], got {item!r:.60}"
        )
    store, name, value = item
    if type(name) is int:
        name = table[name][0]
    if store:
        table.push(name, value)
    return name, value


def read_trace(headers: list[Any], table: HeaderTable) -> Trace | None:
    """The trace a frame's headers element carries (None: none, or the zero trace), updating
    the connection's table with the entries to store, in order as the runtime does.

    Raises:
        HeaderError: an entry or index the runtime would refuse, or a trace header whose
            value is not 8 bytes.
    """
    found: dict[bytes, bytes] = {}
    for item in headers:
        if (type(item) is list and len(item) == 3 and item[0] is False
                and type(item[1]) is bytes and type(item[2]) is bytes):  # fmt: skip
            name, value = item[1], item[2]  # by name, not stored: the runtime's own shape
        else:
            name, value = _entry(item, table)
        if name in _TRACE_SET and name not in found:
            found[name] = value
    if len(found) < 3:
        return None
    trace, span, parent = found[b"trace_id"], found[b"span_id"], found[b"parent_id"]
    if trace == span == parent == ZERO:
        return None
    for name, value in zip(TRACE_NAMES, (trace, span, parent)):
        if len(value) != 8:
            raise HeaderError(f"{name.decode()} must be 8 bytes, got {len(value)}")
    return Trace(int.from_bytes(trace, "little"), int.from_bytes(span, "little"),
                 int.from_bytes(parent, "little"))


def pack_trace(trace: Trace | tuple[int, int, int]) -> list[list[Any]]:
    """A trace as the headers of a frame, as PY12's `pack_trace` builds it: three entries
    naming the static table's trace headers, not stored (so the sender keeps no table)."""
    return [[False, index, int(value).to_bytes(8, "little")]
            for index, value in zip(TRACE_INDICES, trace)]  # fmt: skip


def check_trace(trace: Any) -> Trace:
    """A caller's trace as a Trace: three integers in 0..2**64-1.

    Raises:
        ValueError: anything else.
    """
    try:
        values = tuple(trace)
    except TypeError:
        values = ()
    if len(values) != 3 or not all(type(v) is int and 0 <= v < 2**64 for v in values):
        raise ValueError(
            f"a trace is (trace_id, span_id, parent_id), integers in 0..2**64-1, got {trace!r}"
        )
    return Trace(*values)
