# Strategy: the C decoder (csrc/cdecoder.c) does all the msgpack work and every check, and
# describes each message as a record of four int64 (kind, session, payload start, payload end)
# in an array bound once per decoder. Python reads the array back with struct.iter_unpack,
# which yields one tuple per message straight from it, and only decodes the uncommon argument
# shapes (listed by C as patches), in which case the records come from a list. A read that
# completes whole messages and leaves nothing over costs one C call and one iterator. `feed`
# is the same path with each record turned into an (id, session, args) message.
#
# Lifetime of the records array: no memoryview of it is ever handed out. The iterator reads a
# cffi buffer object (`ffi.buffer`), which holds the array's owner by reference. A memoryview
# would not be safe: CPython before 3.12.7 (gh-77894) lets the garbage collector clear a
# memoryview that still has an exported buffer (the iterator's), dropping its managed buffer,
# and the view's later deallocation dereferences it: SIGSEGV. An exception kept past the read
# (a channel's last_error) closes exactly such a cycle: exception, traceback, the dispatching
# frame, its records iterator, the view. A cffi buffer's clear only drops a reference, so a
# cleared one is still safe to free.
#
# Buffering: small leftovers (the usual partial message at the end of a read) are kept as bytes
# and joined with the next read. A large chunk arriving in many reads ([id, session, [payload]],
# the payload its last byte: C says so, cdec_pending_raw) is never assembled as a message: the
# reads' payload slices are kept as they came (views of the caller's bytes, no copy) and joined
# once, straight into the payload's own bytes object, when its last byte arrives; C then checks
# the message as if it had parsed it (cdec_complete_raw), and the message is handed over as an
# ARGS record holding [payload]. So such a payload costs one copy per byte, whatever its size,
# and nothing is allocated before its bytes arrive (the size limit is checked first by C).
# A payload of STREAM_PAYLOAD bytes or more is written into an io.BytesIO as each read arrives
# instead, and the read is let go: BytesIO.getvalue() hands over its own bytes object when
# nothing else views it (CPython 3.5 and later), so the payload still costs one copy per byte,
# but the reads and the payload never coexist (a 1 GiB body once peaked at twice its size). The
# stream's room grows at least twofold and only as bytes arrive, never past the announced size.
# Any other partial message of BIG_TAIL bytes or more is kept in a bytearray that grows in
# place. The C side resumes where it stopped, so a message is parsed once however it is split.
from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

import msgpack

from ..errors import DecodeError, FrameError, LimitExceededError
from ._cdecoder import ffi, lib
from .records import (
    BAD_SESSION,
    DIALECTS,
    REC_ARGS,
    REC_DROPPED,
    REC_TRACED,
    Message,
    Records,
    bad_session,
    check_limits,
    messages_of,
    v12_message,
)
from .hpack import HeaderTable

#: Records per C call, and ARGS/FULL records (patches) per call.
RECORDS = 2048
PATCHES = 256
#: Leftover size from which the partial message is accumulated in a growing bytearray.
BIG_TAIL = 16 * 1024
#: Payload size from which a collected chunk is written into a BytesIO as its reads arrive:
#: glibc's largest mmap threshold, from which every allocation is fresh memory anyway (below
#: it, a join reuses warm heap memory and is several times faster; above it the stream costs
#: 10 to 15% more than keeping the reads, for half the peak memory).
STREAM_PAYLOAD = 32 * 1024 * 1024

_MORE, _OK = lib.CDEC_MORE, lib.CDEC_OK
_records = lib.cdec_records
_STOP, _FULL, _PATCHED = lib.CDEC_STOP_SHIFT, lib.CDEC_REC_FULL, lib.CDEC_PATCHED
#: (r >> 4) & _COUNT is the record count packed in cdec_records's return value.
_COUNT = lib.CDEC_COUNT_MASK
_RECORD = struct.Struct("=4q")
#: Reads of fewer records than this many bytes' worth reuse cached buffers of the array.
_VIEWS = 32 * 32
_iter_records = _RECORD.iter_unpack
assert lib.CDEC_COUNT_SHIFT == 4 and lib.CDEC_REC_BYTES == _RECORD.size == 32
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
    lib.CDEC_E_IDS: "message id must be a non-negative integer",
    lib.CDEC_E_ARGS: "message arguments must be an array",
    lib.CDEC_E_DECLARED_SIZE: "message exceeds the size limit of {size} bytes: a string or ext"
    " header announces more",
}


def _record(message: Message) -> tuple[Any, ...]:
    """The record of a message Python decoded whole (never a span: it has no buffer)."""
    mid, session, args = message[0], message[1], message[2]
    if len(message) == 4:
        return (mid * 8 + REC_TRACED, session, args, message[3])
    if session == BAD_SESSION:
        return (mid * 8 + REC_DROPPED, session, args[0], 0)
    return (mid * 8 + REC_ARGS, session, args, 0)


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
        self._rec = ffi.new("int64_t[]", RECORDS * 4)
        # the first n records for small reads, made once (see the lifetime note above)
        self._views = [ffi.buffer(self._rec, size) for size in range(0, _VIEWS, 32)]
        self._patch = ffi.new("int64_t[]", PATCHES + 1)
        lib.cdec_bind_records(handle, self._rec, RECORDS, self._patch, PATCHES + 1)
        # the unfinished message from its first byte, or (a list) the payload slices so far
        self._tail: bytes | bytearray | list[Any] = b""
        self._info = ffi.new("int64_t[2]")
        self._have = 0  # collecting a payload: bytes of the message arrived so far
        self._need = 0  # ... and its size
        self._drop = 0  # bytes at the front of a bytearray tail that records may still refer to
        self._room = 0  # collecting into a stream: its size so far (see _stream_write)
        self._size = 0  # ... and the payload's
        self._error: DecodeError | None = None
        self._table = HeaderTable()  # v0.12: the connection's dynamic header table

    @property
    def dialect(self) -> str:
        return DIALECTS[self._v12]

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Consume a slice of the stream and return every message it completes, in order
        (`feed_records`, each record made a message).

        Raises:
            FrameError: malformed msgpack or a frame that breaks the dialect's layout. Its
                `messages` holds what this call completed before the bad message; every later
                call raises the same error.
            LimitExceededError: a message over the size or depth limit.
        """
        return messages_of(*self.feed_records(data))

    def feed_records(self, data: bytes | bytearray | memoryview) -> Records:
        """Consume a slice of the stream; its complete messages as records for a dispatch
        loop: `(records, buf)`.

        `records` yields one tuple per message, (kind, session, a, b) with kind = id * 8 +
        shape (see `cocaine_http.codec.records`): no arguments, one raw string `buf[a:b]`, or
        the decoded argument list in `a`. Iterate it before the next call (it may read the
        decoder's own array); the spans stay valid until then too. Same errors as `feed`
        (their `messages` are ordinary messages).
        """
        if not self._tail and type(data) is bytes:
            r = _records(self._d, data, 0, len(data))
            if r >= 0:  # whole messages only, nothing to patch (the common read)
                if r < _VIEWS:
                    return _iter_records(self._views[r >> 5]), data
                return _iter_records(ffi.buffer(self._rec, r)), data
            return self._records_rest(data, r)
        if type(self._tail) is list:
            return self._collect_records(data)
        buf = self._joined(data)
        if type(buf) is bytes:  # usually the unfinished message of the last read + data
            r = _records(self._d, buf, 0, len(buf))
        else:
            with ffi.from_buffer(buf) as ptr:
                r = _records(self._d, ptr, 0, len(buf))
        return self._records_rest(buf, r)

    def _first(self, count: int) -> Any:
        """The array's first `count` records, as a buffer (never a memoryview: see the top)."""
        size = count * 32
        return self._views[count] if size < _VIEWS else ffi.buffer(self._rec, size)

    def _records_rest(self, buf: bytes | bytearray, r: int) -> Records:
        """The general case of feed_records: leftovers, patches, several C calls, errors."""
        if r >= 0:  # everything consumed
            self._tail, self._drop = b"", 0
            return _iter_records(self._first(r >> 5)), buf
        if ~r & 15 == _OK:  # one call, nothing to patch: only an unfinished message is left
            self._keep(buf, ~r >> _STOP)
            return _iter_records(self._first((~r >> 4) & _COUNT)), buf
        out: list[tuple[Any, ...]] = []
        while True:
            if r >= 0:  # see cdec_records
                r = ~((len(buf) << _STOP) + (r // 32 << 4))
            r = ~r
            status = r & 7
            count = (r >> 4) & _COUNT
            if count:
                records = list(_iter_records(self._first(count)))
                if r & _PATCHED:
                    self._patch_records(records, buf)
                out += records
            if status != _MORE:
                break
            if type(buf) is bytes:
                r = _records(self._d, buf, r >> _STOP, len(buf))
            else:
                with ffi.from_buffer(buf) as ptr:
                    r = _records(self._d, ptr, r >> _STOP, len(buf))
        if status != _OK:
            raise self._fail(status, messages_of(out, buf))
        self._keep(buf, r >> _STOP)
        return iter(out), buf

    def _patch_records(self, records: list[tuple[Any, ...]], buf: bytes | bytearray) -> None:
        """Decode the arguments C left as spans (uncommon shapes, ids beyond int64, frames
        whose session is unusable)."""
        with memoryview(buf) as view:
            for i in ffi.unpack(self._patch + 1, self._patch[0]):
                kind, session, a, b = records[i >> 2]
                if kind != _FULL:
                    records[i >> 2] = (kind, session, _unpack(view[a:b]), 0)
                    continue
                frame = _unpack(view[a:b])
                first, second = frame[0], frame[1]
                if self._v12:  # an unusable channel, headers C did not vouch for, a big id
                    message = v12_message(second, first, frame[2],
                                          frame[3] if len(frame) == 4 else [], self._table)
                    records[i >> 2] = _record(message)
                    continue
                mid, session = first, second
                if type(session) is int and session >= 0:
                    records[i >> 2] = (mid * 8 + REC_ARGS, session, frame[2], 0)
                else:  # unusable: reported, the stream goes on (records.REC_DROPPED)
                    records[i >> 2] = (mid * 8 + REC_DROPPED, BAD_SESSION, bad_session(session), 0)

    def _joined(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """The unfinished message followed by `data`, as one buffer starting at a message."""
        if self._error is not None:
            self._error.messages = []
            raise self._error
        tail = self._tail
        if type(tail) is bytearray:
            if self._drop:
                del tail[: self._drop]
                self._drop = 0
            tail += data
            return tail
        assert not isinstance(tail, list)  # collecting: feed_records calls _collect
        if tail:
            return tail + data
        return data if type(data) is bytes else bytes(data)

    def _keep(self, buf: bytes | bytearray, consumed: int) -> None:
        """Keep buf[consumed:], the unfinished message, for the next feed. A big bytearray is
        not trimmed now (the read's records refer to it) but at the next feed."""
        left = len(buf) - consumed
        if not left:
            self._tail = b""
        elif lib.cdec_pending_raw(self._d, self._info) and self._start_collect(buf, consumed):
            return
        elif type(buf) is bytearray:
            if left < BIG_TAIL:
                self._tail = bytes(memoryview(buf)[consumed:])
            else:
                self._tail, self._drop = buf, consumed
        elif left >= BIG_TAIL:
            self._tail = bytearray(memoryview(buf)[consumed:])
        else:
            self._tail = buf[consumed:]

    def _start_collect(self, buf: bytes | bytearray, consumed: int) -> bool:
        """Collect the pending chunk payload (cdec_pending_raw said so) if it is big enough."""
        start, end = self._info[0], self._info[1]
        if end - start < BIG_TAIL:
            return False
        have = len(buf) - consumed
        part = memoryview(buf)[consumed + start :] if start < have else b""
        if end - start >= STREAM_PAYLOAD:  # written into its own growing buffer as it comes
            stream = BytesIO()
            self._tail, self._room, self._size = [stream], 0, end - start
            self._stream_write(stream, part)
        else:  # bytes never change; a bytearray is this decoder's own tail, copied
            self._tail = [part if type(buf) is bytes else bytes(part)]
        self._drop, self._have, self._need = 0, have, end
        return True

    def _stream_write(self, stream: BytesIO, data: Any) -> None:
        """Append a piece of a big payload to its stream, whose room grows at least twofold
        when it must grow (the allocator then copies it a bounded number of times, if at all),
        never past the payload's size."""
        at = stream.tell()
        if at + len(data) > self._room:
            self._room = min(self._size, max(2 * self._room, at + len(data)))
            stream.seek(self._room - 1)
            stream.write(b"\0")
            stream.seek(at)
        stream.write(data)

    def _collect(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[tuple[int, int, list[Any]] | None, bytes, int]:
        """Add a read to the payload being collected: (the message, or None while it is not
        complete; the read as bytes; where its bytes after the message begin)."""
        if type(data) is not bytes:
            data = bytes(data)  # the caller may reuse its buffer
        parts = self._tail
        assert type(parts) is list
        stream = parts[0] if type(parts[0]) is BytesIO else None
        missing = self._need - self._have
        if len(data) < missing:
            if stream is None:
                parts.append(data)
            else:
                self._stream_write(stream, data)
            self._have += len(data)
            return None, data, len(data)
        last = data if missing == len(data) else memoryview(data)[:missing]
        self._tail = b""
        if stream is None:
            parts.append(last)
            payload = b"".join(parts)  # the one copy of the payload
        else:
            self._stream_write(stream, last)
            payload = stream.getvalue()  # the stream's own buffer, handed over uncopied
        status = lib.cdec_complete_raw(self._d, self._info)
        if status != _OK:
            raise self._fail(status, [])
        return (self._info[0], self._info[1], [payload]), data, missing

    def _collect_records(self, data: bytes | bytearray | memoryview) -> Records:
        """feed_records while a payload is being collected."""
        message, whole, start = self._collect(data)
        if message is None:
            return iter([]), whole
        mid, session, args = message
        head = (mid * 8 + REC_ARGS, session, args, 0)
        if start == len(whole):
            return iter([head]), whole
        r = _records(self._d, whole, start, len(whole))
        try:
            records, buf = self._records_rest(whole, r)
        except DecodeError as exc:
            exc.messages = [message, *exc.messages]
            raise
        return iter([head, *records]), buf

    def _fail(self, status: int, out: list[Message]) -> DecodeError:
        """The error C reported, carrying the messages completed before it."""
        if self._error is not None:  # already broken: the same error again
            self._error.messages = []
            return self._error
        cls = FrameError if status == lib.CDEC_FRAME else LimitExceededError
        reason = _REASONS[lib.cdec_error(self._d)].format(
            size=self._max_size, depth=self._max_depth, dialect=self.dialect
        )
        error = cls(reason, lib.cdec_offset(self._d))
        error.messages = out
        self._error = error
        self._tail, self._drop = b"", 0
        return error
