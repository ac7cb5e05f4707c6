# Strategy: the C decoder (csrc/cdecoder.c) does all the msgpack work and every check, and
# describes each complete message as six int64 values (id, session, shape, x, a, b). This module
# turns one feed's records into a list in a single `tolist()` call and builds the messages in
# one list comprehension: the common argument shapes (no arguments, one raw string, an int and
# a raw string) are sliced straight out of the buffer, one copy per string; any other argument
# array, already validated by C, goes through msgpack.unpackb.
#
# Buffering: small leftovers (the usual partial message at the end of a read) are kept as bytes
# and joined with the next read, so payloads are cheap `bytes` slices. A leftover of BIG_TAIL
# bytes or more (a large message arriving in several reads) is kept in a bytearray that grows
# in place, so it is never copied per read; payloads are then copied out through a memoryview.
# The C side resumes where it stopped, so a big message is parsed once however it is split.
from __future__ import annotations

from typing import Any

import msgpack

from ..errors import DecodeError, FrameError, LimitExceededError
from ._cdecoder import ffi, lib
from .limits import DIALECTS, Message, check_limits

#: Records per C call; a feed with more complete messages makes several calls.
RECORDS = 512
#: Leftover size from which the partial message is accumulated in a growing bytearray.
BIG_TAIL = 16 * 1024

_W = lib.CDEC_RECORD_WIDTH
_EMPTY, _RAW, _INT_RAW, _ARGS, _FULL = (
    lib.CDEC_EMPTY,
    lib.CDEC_RAW,
    lib.CDEC_INT_RAW,
    lib.CDEC_ARGS,
    lib.CDEC_FULL,
)
_REASONS = {
    lib.CDEC_E_BYTE: "malformed msgpack: byte 0xc1 is not a type",
    lib.CDEC_E_EXT: "malformed msgpack: ext types are not allowed",
    lib.CDEC_E_TIMESTAMP: "malformed msgpack: invalid timestamp ext",
    lib.CDEC_E_COUNT: "malformed msgpack: array or map too long",
    lib.CDEC_E_KEY: "malformed msgpack: an array or map used as a map key",
    lib.CDEC_E_NESTING: "message nested too deeply",
    lib.CDEC_E_PARTIAL_SIZE: "message exceeds the size limit of {size} bytes",
    lib.CDEC_E_SIZE: "message exceeds the size limit of {size} bytes",
    lib.CDEC_E_DEPTH: "message nested deeper than the limit of {depth}",
    lib.CDEC_E_NOT_ARRAY: "a message must be an array",
    lib.CDEC_E_LAYOUT: "a {dialect} frame has the wrong number of elements",
    lib.CDEC_E_IDS: "message id and session must be non-negative integers",
    lib.CDEC_E_ARGS: "message arguments must be an array",
}


def _unpack(data: Any) -> Any:
    return msgpack.unpackb(data, raw=True, strict_map_key=False)


class Decoder:
    """Incremental decoder of Cocaine messages, in C.

    Same contract as the reference `cocaine_http.codec._python.Decoder`: feed any slice of the
    stream, get back every message it completes.

    Args:
        dialect: "v0.11" (`[id, session, args]`) or "v0.12" (`[channel, id, args, headers?]`).
        max_message_size: largest accepted message in bytes.
        max_depth: deepest accepted nesting of arrays and maps (the frame itself counts as 1).
    """

    IMPLEMENTATION = "c"

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
        handle = lib.cdec_new(self._v12, self._max_size, self._max_depth)
        if handle == ffi.NULL:
            raise MemoryError("cannot allocate a decoder")
        self._d = ffi.gc(handle, lib.cdec_free)
        self._rec = ffi.new("int64_t[]", RECORDS * _W)
        self._view = memoryview(ffi.buffer(self._rec)).cast("q")
        self._out = ffi.new("int64_t[2]")
        self._tail: bytes | bytearray = b""  # the unfinished message, from its first byte
        self._base = 0  # stream offset of self._tail[0]
        self._error: DecodeError | None = None

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
        tail = self._tail
        if type(tail) is bytearray:
            tail += data
            return self._feed_big(tail)
        if tail:
            buf = tail + data
        else:
            buf = data if type(data) is bytes else bytes(data)
        return self._feed_small(buf)

    def _feed_small(self, buf: bytes) -> list[Message]:
        out: list[Message] = []
        start = 0
        while True:
            status = lib.cdec_feed(self._d, buf, start, len(buf), self._rec, RECORDS, self._out)
            nrec, consumed = self._out
            it = iter(self._view[: nrec * _W].tolist())
            out += [
                (m, s, [buf[a:b]])
                if k == _RAW
                else (m, s, [])
                if k == _EMPTY
                else (m, s, [x, buf[a:b]])
                if k == _INT_RAW
                else self._other(buf, m, s, k, a, b)
                for m, s, k, x, a, b in zip(it, it, it, it, it, it)
            ]
            start = consumed
            if status != lib.CDEC_MORE:
                break
        self._settle(status, buf, consumed, out)
        return out

    def _feed_big(self, buf: bytearray) -> list[Message]:
        out: list[Message] = []
        start = 0
        while True:
            with ffi.from_buffer(buf) as ptr:
                status = lib.cdec_feed(self._d, ptr, start, len(buf), self._rec, RECORDS, self._out)
            nrec, consumed = self._out
            if nrec:
                with memoryview(buf) as view:
                    out += self._build_from_view(view, nrec)
            start = consumed
            if status != lib.CDEC_MORE:
                break
        self._settle(status, buf, consumed, out)
        return out

    def _build_from_view(self, view: memoryview, nrec: int) -> list[Message]:
        out: list[Message] = []
        it = iter(self._view[: nrec * _W].tolist())
        for m, s, k, x, a, b in zip(it, it, it, it, it, it):
            if k == _RAW:
                out.append((m, s, [bytes(view[a:b])]))
            elif k == _EMPTY:
                out.append((m, s, []))
            elif k == _INT_RAW:
                out.append((m, s, [x, bytes(view[a:b])]))
            else:
                out.append(self._other(view, m, s, k, a, b))
        return out

    def _other(self, buf: Any, mid: int, session: int, shape: int, a: int, b: int) -> Message:
        """Messages whose arguments have no fast path (C has validated every byte)."""
        if shape == _ARGS:
            return (mid, session, _unpack(buf[a:b]))
        frame = _unpack(buf[a:b])  # _FULL: an id beyond int64
        if self._v12:
            return (frame[1], frame[0], frame[2])
        return (frame[0], frame[1], frame[2])

    def _settle(self, status: int, buf: bytes | bytearray, consumed: int, out: list[Message]) -> None:
        """Keep the unfinished message and raise the error C reported, if any."""
        if status == lib.CDEC_OK:
            self._keep(buf, consumed)
            return
        cls = FrameError if status == lib.CDEC_FRAME else LimitExceededError
        reason = _REASONS[lib.cdec_error(self._d)].format(
            size=self._max_size, depth=self._max_depth, dialect=self.dialect
        )
        error = cls(reason, self._base + consumed)
        error.messages = out
        self._error = error
        self._tail = b""
        raise error

    def _keep(self, buf: bytes | bytearray, consumed: int) -> None:
        self._base += consumed
        left = len(buf) - consumed
        if type(buf) is bytearray:
            del buf[:consumed]
            self._tail = buf if left >= BIG_TAIL else bytes(buf)
        elif left >= BIG_TAIL:
            self._tail = bytearray(memoryview(buf)[consumed:])
        else:
            self._tail = buf[consumed:] if left else b""
