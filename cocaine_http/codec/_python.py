# Strategy: the reference decoder, and the specification the C decoder must match message for
# message and error type for error type. msgpack.Unpacker does the msgpack work; this module adds
# the Cocaine frame rules (docs/protocol.md §2) and the limits, checked in one fixed order per
# message:
#
#   1. msgpack itself fails, as soon as the offending bytes are parsed          -> FrameError
#        (byte 0xc1; an array longer than 2**31-1 or a map longer than 2**30-1 items; an ext
#        type, when its payload is complete; a map with an array or map as a key, when that
#        map is complete)
#      nesting beyond msgpack's own stack (a 1025th open container, even when incomplete)
#                                                                               -> LimitExceededError
#   2. the message is incomplete and known to exceed the size limit: its buffered bytes do, or
#      a string or ext header has arrived whose payload would end past it     -> LimitExceededError
#      (msgpack itself rejects an ext32 header announcing 2**32-1 bytes at once, in step 1)
#   3. the message is complete and contains a timestamp (ext -1, which msgpack decodes itself
#      instead of calling the ext hook)                                        -> FrameError
#   4. the message is complete but longer than the size limit                 -> LimitExceededError
#   5. the message is complete but nested deeper than max_depth               -> LimitExceededError
#   6. the message is complete but its frame breaks the dialect's layout: not an array of 3
#      (v0.11) or of 3 or 4 with an array 4th (v0.12), an id that is no non-negative
#      integer, arguments that are no array                                  -> FrameError
#   7. the message is complete and well framed but its session (v0.12: channel) is no
#      non-negative integer: the stream is still in sync, so the message is not an error of
#      the stream but a message to drop; it comes back as (id, BAD_SESSION, [what was wrong])
#      (a DROPPED record) and the messages after it are decoded as usual
#   8. v0.12: the message passed every step above and has a non-empty headers element: it is
#      read with the connection's header table (codec.hpack.read_trace). Headers the runtime
#      would refuse drop the message like step 7 (the table keeps what the entries before the
#      bad one stored, as the runtime's does); a trace other than the zero trace makes the
#      message (id, channel, args, trace), a TRACED record
#
# Depth is the nesting of the encoded message (a scalar is 0, `[]` is 1, `[[]]` is 2), including
# values that a duplicate map key later replaced: maps are built by `_map`, which records the
# depth of everything it was given before the dict drops duplicates.
#
# Every error names the stream offset of the start of the offending message. After an error the
# decoder is broken: each later feed raises the same error again.
from __future__ import annotations

from typing import Any

import msgpack

from ..errors import DecodeError, FrameError, LimitExceededError
from .hpack import HeaderTable
from .records import (
    BAD_SESSION,
    DIALECTS,
    Message,
    Records,
    bad_session,
    check_limits,
    records_of,
    v12_message,
)

_HARD_BUFFER = 2**31 - 1

#: Header bytes after the first, by first byte 0xc0..0xdf (0xc1 is no type: -1).
_EXTRA = (0, -1, 0, 0, 1, 2, 4, 2, 3, 5, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1, 1, 1, 1, 1, 1, 2, 4, 2, 4, 2, 4)
#: First bytes of strings and exts whose length follows in n bytes: {byte: n}.
_LENGTH_BYTES = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4}


def _header_size(first: int) -> int:
    """Bytes of the object header that starts with `first` (-1 for 0xc1)."""
    return 1 if first <= 0xBF or first >= 0xE0 else 1 + _EXTRA[first - 0xC0]


def _payload_size(header: bytes) -> int:
    """Bytes of string or ext payload that follow a complete object header (0 for others)."""
    first = header[0]
    if 0xA0 <= first <= 0xBF:
        return first & 0x1F
    if 0xD4 <= first <= 0xD8:
        return 1 << (first - 0xD4)
    width = _LENGTH_BYTES.get(first)
    return int.from_bytes(header[1 : 1 + width], "big") if width else 0


class _ExtTypeRejected(Exception):
    """Raised from the ext hook: Cocaine never sends msgpack ext types."""


def _reject_ext(code: int, data: bytes) -> Any:
    raise _ExtTypeRejected(f"ext type {code} is not allowed")


def _is_uint(value: Any) -> bool:
    return type(value) is int and value >= 0


class _Walker:
    """Depth and timestamp bookkeeping for one message (see the module comment)."""

    __slots__ = ("maps", "timestamp")

    def __init__(self) -> None:
        self.maps: dict[int, int] = {}  # id(dict) -> depth of its encoding
        self.timestamp = False

    def map(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """object_pairs_hook: build the dict, after measuring every pair it was given."""
        depth = 1 + max((max(self.depth(k), self.depth(v)) for k, v in pairs), default=0)
        try:
            result = dict(pairs)
        except TypeError as exc:  # an array or map as a key
            raise _UnhashableKey(str(exc)) from None
        self.maps[id(result)] = depth
        return result

    def depth(self, obj: Any) -> int:
        """Depth of an object built from one message (iterative: nesting can reach 1024)."""
        best = 0
        todo = [(obj, 0)]
        while todo:
            item, level = todo.pop()
            kind = type(item)
            if kind is list:
                best = max(best, level + 1)
                todo.extend((child, level + 1) for child in item)
            elif kind is dict:
                best = max(best, level + self.maps[id(item)])
            elif kind is msgpack.Timestamp:
                self.timestamp = True
        return best


class _UnhashableKey(Exception):
    """Raised from the map hook for an array or map used as a key."""


class Decoder:
    """Incremental decoder of Cocaine messages.

    Args:
        dialect: "v0.11" (`[id, session, args]`) or "v0.12" (`[channel, id, args, headers?]`).
        max_message_size: largest accepted message in bytes.
        max_depth: deepest accepted nesting of arrays and maps (the frame itself counts as 1).
    """

    IMPLEMENTATION = "python"

    def __init__(
        self,
        dialect: str = "v0.11",
        *,
        max_message_size: int | None = None,
        max_depth: int | None = None,
    ) -> None:
        self._v12, self._max_size, self._max_depth = check_limits(
            dialect, max_message_size, max_depth
        )
        self._walker = _Walker()
        self._unpacker = msgpack.Unpacker(
            raw=True,
            strict_map_key=False,
            ext_hook=_reject_ext,
            object_pairs_hook=self._walker.map,
            max_buffer_size=_HARD_BUFFER,
        )
        self._fed = 0
        self._start = 0  # stream offset of the first unfinished message
        # walking the unfinished message's headers: the next one's stream offset, and its
        # bytes so far when a read ended inside it
        self._walk = 0
        self._carry = b""
        self._error: DecodeError | None = None
        self._table = HeaderTable()

    @property
    def dialect(self) -> str:
        return DIALECTS[self._v12]

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Consume a slice of the stream and return every message it completes, in order.

        Raises:
            FrameError: malformed msgpack or a frame that breaks the dialect's layout. Its
                `messages` holds what this call completed before the bad message; every later
                call raises the same error.
            LimitExceededError: a message over the size or depth limit.
        """
        if self._error is not None:
            self._error.messages = []
            raise self._error
        out: list[Message] = []
        try:
            self._feed(data, out)
        except DecodeError as exc:
            exc.messages = out
            self._error = exc
            raise
        return out

    def feed_records(self, data: bytes | bytearray | memoryview) -> Records:
        """Like `feed`, but as records for a dispatch loop: `(records, buf)`.

        `records` yields one tuple per message, (kind, session, a, b) with kind =
        id * 8 + shape (see `cocaine_http.codec.records`): no arguments, one raw string
        `buf[a:b]`, or the decoded argument list in `a`. The spans stay valid until the next
        call. Same errors as `feed` (their `messages` are ordinary messages).
        """
        records, buf = records_of(self.feed(data))
        return iter(records), buf

    def _feed(self, data: bytes | bytearray | memoryview, out: list[Message]) -> None:
        unpacker = self._unpacker
        before = self._fed
        if data:
            unpacker.feed(data)
            self._fed += len(data)
        while True:
            # not unpacker.tell(): after OutOfData it points into the unfinished message
            start = self._start
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                self._check_unfinished(data, before)
                return
            except msgpack.StackError:
                raise LimitExceededError("message nested too deeply", start) from None
            except (ValueError, _ExtTypeRejected, _UnhashableKey) as exc:
                raise FrameError(f"malformed msgpack: {exc}", start) from None
            self._start = unpacker.tell()
            out.append(self._check(obj, start, self._start - start))

    def _check_unfinished(self, data: bytes | bytearray | memoryview, before: int) -> None:
        """Step 2: fail an unfinished message that cannot fit, as soon as that is known."""
        start = self._start
        if start == self._fed:
            return
        if self._fed - start > self._max_size:
            raise LimitExceededError(
                f"message exceeds the size limit of {self._max_size} bytes", start
            )
        if self._announced_end(data, before) - start > self._max_size:
            raise LimitExceededError(
                f"message exceeds the size limit of {self._max_size} bytes: a string or ext"
                " header announces more",
                start,
            )

    def _announced_end(self, data: bytes | bytearray | memoryview, before: int) -> int:
        """Walk the headers of the unfinished message in `data` (the bytes from stream offset
        `before`), resuming where the last read's walk stopped; returns the stream offset
        where the last payload begun ends. msgpack has parsed these bytes without an error,
        so each header is valid; a walk is linear, nesting does not matter, and it skips
        payloads, so each header of a message is read once however the message is split."""
        if self._start >= before:  # the message begins in this read
            pos, carry = self._start, b""
        else:
            pos, carry = self._walk, self._carry
        while pos < self._fed:
            at = pos - before + len(carry)  # data index of the header's first byte not carried
            first = carry[0] if carry else data[at]
            size = _header_size(first)
            header = carry + bytes(data[at : at + size - len(carry)])
            if len(header) < size or size < 0:
                self._walk, self._carry = pos, header
                return self._fed
            carry = b""
            pos += size + _payload_size(header)
        self._walk, self._carry = pos, b""
        return pos

    def _check(self, obj: Any, start: int, size: int) -> Message:
        """Steps 3 to 7 for a complete message (a failure leaves the decoder broken, so the
        walker's per-message state only needs resetting after a success)."""
        walker = self._walker
        depth = walker.depth(obj)
        walker.maps.clear()
        if walker.timestamp:
            raise FrameError("malformed msgpack: ext types are not allowed", start)
        if size > self._max_size:
            raise LimitExceededError(
                f"message of {size} bytes exceeds the size limit of {self._max_size} bytes",
                start,
            )
        if depth > self._max_depth:
            raise LimitExceededError(
                f"message nested deeper than the limit of {self._max_depth}", start
            )
        walker.timestamp = False
        return self._frame(obj, start)

    def _frame(self, obj: Any, start: int) -> Message:
        if not isinstance(obj, list):
            raise FrameError("a message must be an array", start)
        if self._v12:
            if len(obj) not in (3, 4) or (len(obj) == 4 and not isinstance(obj[3], list)):
                raise FrameError("a v0.12 frame is [channel, id, args, headers?]", start)
            channel, mid, args = obj[0], obj[1], obj[2]
            if _is_uint(mid) and isinstance(args, list):
                return v12_message(mid, channel, args, obj[3] if len(obj) == 4 else [],
                                   self._table)  # fmt: skip
        else:
            if len(obj) != 3:
                raise FrameError("a v0.11 frame is [id, session, args]", start)
            mid, channel, args = obj
        if not _is_uint(mid):
            raise FrameError("message id must be a non-negative integer", start)
        if not isinstance(args, list):
            raise FrameError("message arguments must be an array", start)
        if not _is_uint(channel):
            return (mid, BAD_SESSION, [bad_session(channel)])
        return (mid, channel, args)
