# Strategy: the receive side of a Channel (a mixin, so channel.py stays about connections and
# writes). Every socket read goes to the decoder in one call (`feed_records`) and comes back as
# records, one (kind, session, a, b) tuple per message (cocaine_http.codec.limits), walked once.
#
# The hot path (v0.11, not raw): the four callbacks of the worker mix (invoke, chunk, choke,
# heartbeat) are read once per read into locals, payloads are sliced straight from the read's
# buffer, short invoke event names (SHORT records) map to cached str without slicing, and every
# other message goes through one general method (`_other`). The loop checks nothing per
# message: setting a callback attribute (a data descriptor; close() sets them all) asks the
# decoder to cut the loop's records (`cut_records`): the next one becomes a STOP record and the
# rest is delivered by the general path, which reads callbacks per message. So a callback
# replaced or a channel closed by a callback takes effect from the very next message, as with
# attribute lookups per message. A callback that raises is logged and the loop resumes with the
# next message (try costs nothing until it raises).
"""The receive path of `Channel`: records from the decoder to the on_* callbacks."""

from __future__ import annotations

import errno as errnos
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ..codec import DecodeError
from ..codec.records import (
    REC_ARGS,
    REC_EMPTY,
    REC_RAW,
    REC_SHORT,
    REC_STOP,
    records_of,
    short_bytes,
)

if TYPE_CHECKING:
    from ..protocol.dialect import Router

log = logging.getLogger("cocaine_http.channel")

# record kinds of the hot path: message id * 8 + shape (cocaine_http.codec.limits)
_INVOKE = 3 * 8 + REC_RAW
_INVOKE_SHORT = 3 * 8 + REC_SHORT
_CHUNK = 4 * 8 + REC_RAW
_CHOKE = 6 * 8 + REC_EMPTY
_HEARTBEAT = 1 * 8 + REC_EMPTY
# literals in data_received
assert (_INVOKE, _INVOKE_SHORT, _CHUNK, _CHOKE, _HEARTBEAT) == (25, 27, 33, 48, 8)

#: Event names of SHORT invoke records (keyed by the packed name), decoded once: a worker
#: serves a handful. Bounded, so a peer sending endless new names only loses the cache.
_EVENTS: dict[int, str] = {}
_EVENTS_MAX = 1024


def _event(packed: int) -> str:
    text = short_bytes(packed).decode("utf-8", "replace")
    if len(_EVENTS) < _EVENTS_MAX:
        _EVENTS[packed] = text
    return text

F = TypeVar("F", bound=Callable[..., Any])


class _Callback(Generic[F]):
    """A callback attribute: kept in the instance as `_cb_<name>` (never through `__dict__`,
    which would slow every attribute of the channel); setting it tells the dispatch loop."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_cb_" + name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _Callback[F]: ...

    @overload
    def __get__(self, obj: Receiver, objtype: type | None = None) -> F: ...

    def __get__(self, obj: Receiver | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj, self._slot)

    def __set__(self, obj: Receiver, value: F) -> None:
        object.__setattr__(obj, self._slot, value)
        obj._hot = None
        if obj._running is not None:
            obj._interrupt()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Receiver:
    """Mixin: `data_received` and the delivery rules; Channel supplies the state below."""

    _feed: Callable[[bytes], Any]
    _decoder: Any
    _router: Router
    _fast_v11: bool
    _closed: bool
    _hot: tuple[Any, ...] | None
    _running: Iterator[tuple[Any, ...]] | None
    _rest: list[tuple[Any, ...]]
    raw: bool
    peer: str
    last_error: BaseException | None
    _cb_on_invoke: Callable[[int, str], Any]
    _cb_on_chunk: Callable[[int, bytes], Any]
    _cb_on_choke: Callable[[int], Any]
    _cb_on_heartbeat: Callable[[], Any]
    on_error: Any
    on_terminate: Any
    on_message: Any
    on_invoke: Any
    on_chunk: Any
    on_choke: Any
    on_heartbeat: Any

    def _fail(self, code: int) -> None:
        raise NotImplementedError

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        try:
            records, buf = self._feed(data)
        except DecodeError as exc:
            self._dispatch(*records_of(exc.messages))
            if not self._closed:
                log.error("protocol error from %s: %s", self.peer, exc)
                self.last_error = exc
                self._fail(errnos.EPROTO)
            return
        if not self._fast_v11 or type(buf) is not bytes or self._closed:
            self._dispatch(records, buf)  # checks _closed per message
            return
        # the hot path: see the module comment
        on_invoke, on_chunk, on_choke, on_heartbeat = self._hot or self._load_hot()
        self._running = records
        while True:  # again after a callback raised, with the next message
            try:
                for kind, session, a, b in records:
                    # literal kinds (asserted below) are cheaper than global lookups
                    if kind == 33:  # _CHUNK
                        on_chunk(session, buf[a:b])
                    elif kind == 48:  # _CHOKE
                        on_choke(session)
                    elif kind == 27:  # _INVOKE_SHORT: a names the event (cached)
                        on_invoke(session, _EVENTS.get(a) or _event(a))
                    elif kind == 8:  # _HEARTBEAT
                        on_heartbeat()
                    elif kind == 25:  # _INVOKE
                        on_invoke(session, buf[a:b].decode("utf-8", "replace"))
                    elif self._other(kind, session, a, b, buf):
                        return
                return
            except Exception:
                log.exception("a callback raised")

    def _load_hot(self) -> tuple[Any, ...]:
        hot = (self._cb_on_invoke, self._cb_on_chunk, self._cb_on_choke, self._cb_on_heartbeat)
        self._hot = hot
        return hot

    def _interrupt(self) -> None:
        """A callback was set (or the channel closed) inside the hot loop, which holds the old
        callbacks in locals: the decoder swaps the loop's next record for a STOP record and
        hands back the rest, which `_other` then delivers by the general path."""
        records, self._running = self._running, None
        assert records is not None
        self._rest = self._decoder.cut_records(records)

    def _dispatch(self, records: Iterable[tuple[Any, ...]], buf: Any) -> None:
        """Every message of a read through the general path (v0.12, raw, a bytearray)."""
        with memoryview(buf) as view:
            for kind, session, a, b in records:
                if self._closed or self._other(kind, session, a, b, view):
                    return

    def _other(self, kind: int, session: int, a: Any, b: int, buf: Any) -> bool:
        """Deliver one message by the general rules; True if it failed the channel."""
        if self._closed:
            return True
        if kind == REC_STOP:
            rest, self._rest = self._rest, []
            self._dispatch(rest, buf)
            return True
        mid, shape = kind >> 3, kind & 7
        if shape == REC_EMPTY:
            args: list[Any] = []
        elif shape == REC_RAW:
            data = buf[a:b]
            args = [data if type(data) is bytes else bytes(data)]
        elif shape == REC_SHORT:
            args = [short_bytes(a)]
        else:
            assert shape == REC_ARGS
            args = a
        if self.raw:
            self._call(self.on_message, mid, session, args)
            return False
        route = mid if self._fast_v11 and mid < 7 else self._router.route(mid, session)
        try:
            self._deliver(route, mid, session, args)
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            self.last_error = exc
            log.error("bad arguments %r for message %d from %s", args, mid, self.peer)
            self._fail(errnos.EPROTO)
            return True
        return False

    def _deliver(self, kind: int, mid: int, session: int, args: list[Any]) -> None:
        # Arguments are unpacked before the callback runs, so a shape error is the peer's fault
        # and an exception inside the callback is the callback's (logged by _call).
        if kind == 4:
            (data,) = args
            if type(data) is not bytes:
                raise TypeError("chunk payload must be a raw string")
            self._call(self.on_chunk, session, data)
        elif kind == 6:
            self._call(self.on_choke, session)
        elif kind == 3:
            (event,) = args
            self._call(self.on_invoke, session, _text(event))
        elif kind == 1:
            self._call(self.on_heartbeat)
        elif kind == 5:
            code, message = args[0], args[1]
            if isinstance(code, list):
                code = code[1]
            if type(code) is not int:
                raise TypeError("error code must be an integer")
            self._call(self.on_error, session, code, _text(message))
        elif kind == 2:
            code, reason = args[0], args[1] if len(args) > 1 else b""
            self._call(self.on_terminate, session, int(code), _text(reason))
        else:
            self._call(self.on_message, mid, session, args)
