# Strategy: the reference decoder, and the specification the C decoder must match message for
# message and error type for error type. msgpack.Unpacker does the msgpack work; this module adds
# the Cocaine frame rules (PROTOCOL.md §2) and the limits, checked in one fixed order per message:
#
#   1. msgpack itself fails (invalid byte, unhashable map key, ext type)      -> FrameError
#      nesting beyond msgpack's own stack (1024 levels, even when incomplete) -> LimitExceededError
#   2. the message is incomplete and its buffered bytes exceed the size limit -> LimitExceededError
#   3. the message is complete but longer than the size limit                 -> LimitExceededError
#   4. the message is complete but nested deeper than max_depth               -> LimitExceededError
#   5. the message is complete but its frame breaks the dialect's layout      -> FrameError
#
# Every error names the stream offset of the start of the offending message. After an error the
# decoder is broken: each later feed raises the same error again.
from __future__ import annotations

from typing import Any

import msgpack

from ..errors import DecodeError, FrameError, LimitExceededError
from .limits import DIALECTS, Message, check_limits

_HARD_BUFFER = 2**31 - 1


class _ExtTypeRejected(Exception):
    """Raised from the ext hook: Cocaine never sends msgpack ext types."""


def _reject_ext(code: int, data: bytes) -> Any:
    raise _ExtTypeRejected(f"ext type {code} is not allowed")


def _depth(obj: Any) -> int:
    """Nesting depth: a scalar is 0, `[]` is 1, `[[]]` is 2."""
    if isinstance(obj, list):
        return 1 + max((_depth(item) for item in obj), default=0)
    if isinstance(obj, dict):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in obj.items()), default=0)
    return 0


def _is_uint(value: Any) -> bool:
    return type(value) is int and value >= 0


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
        self._unpacker = msgpack.Unpacker(
            raw=True,
            strict_map_key=False,
            ext_hook=_reject_ext,
            max_buffer_size=_HARD_BUFFER,
        )
        self._fed = 0
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
        out: list[Message] = []
        try:
            self._feed(data, out)
        except DecodeError as exc:
            exc.messages = out
            self._error = exc
            raise
        return out

    def _feed(self, data: bytes | bytearray | memoryview, out: list[Message]) -> None:
        unpacker = self._unpacker
        if data:
            unpacker.feed(data)
            self._fed += len(data)
        while True:
            start = unpacker.tell()
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                if self._fed - start > self._max_size:
                    raise LimitExceededError(
                        f"message exceeds the size limit of {self._max_size} bytes", start
                    ) from None
                return
            except msgpack.StackError:
                raise LimitExceededError("message nested too deeply", start) from None
            except (ValueError, TypeError, _ExtTypeRejected) as exc:
                raise FrameError(f"malformed msgpack: {exc}", start) from None
            size = unpacker.tell() - start
            if size > self._max_size:
                raise LimitExceededError(
                    f"message of {size} bytes exceeds the size limit of {self._max_size} bytes",
                    start,
                )
            if _depth(obj) > self._max_depth:
                raise LimitExceededError(
                    f"message nested deeper than the limit of {self._max_depth}", start
                )
            out.append(self._frame(obj, start))

    def _frame(self, obj: Any, start: int) -> Message:
        if not isinstance(obj, list):
            raise FrameError("a message must be an array", start)
        if self._v12:
            if len(obj) not in (3, 4) or (len(obj) == 4 and not isinstance(obj[3], list)):
                raise FrameError("a v0.12 frame is [channel, id, args, headers?]", start)
            channel, mid, args = obj[0], obj[1], obj[2]
        else:
            if len(obj) != 3:
                raise FrameError("a v0.11 frame is [id, session, args]", start)
            mid, channel, args = obj
        if not (_is_uint(mid) and _is_uint(channel)):
            raise FrameError("message id and session must be non-negative integers", start)
        if not isinstance(args, list):
            raise FrameError("message arguments must be an array", start)
        return (mid, channel, args)
