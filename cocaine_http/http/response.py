# Strategy: a sans-IO response state machine that adapters feed (start, body, flush, end,
# fail) and that returns the Cocaine chunk payloads to send (docs/protocol.md §6.2):
#
#   head  = msgpack [status, [[name, value], ...]]    (one bytes payload)
#   body  = v0.11: msgpack raw string of the bytes    ([raw_header, data]: two buffers, the
#           v0.12: the bytes themselves                body is never copied or joined)
#
# States (ResponseState): IDLE -> start -> HELD -> (first non-empty body, flush or end) ->
# SENT -> end -> DONE; fail() from anywhere ends in DONE (500 sent) or FAILED (the adapter sends
# a Cocaine error). start() checks `ALLOWED` (`start`, or `replace` with replace=True); body()
# and end() accept HELD and SENT and flush() HELD, checked inline; fail() accepts every state.
# A refused call raises LocalProtocolError.
#
# Header validation happens in start(), before anything can be sent: names must be tokens,
# values must not contain CR, LF or NUL (response splitting), Content-Length must be digits.
# A body piece is checked in body() before the state moves (`byte_buffer`): it must be a
# bytes-like object whose bytes are contiguous, and it is sent as a buffer whose len() is its
# size in bytes. A str or an int would fail in the framing, after the state moved (on the loop,
# for a WSGI pool thread's response, where nothing answers the session any more), and an
# array's memoryview would be framed by its item count and desynchronise the whole connection.
#
# Framing belongs to the front (FRONT_OWNED, the one place of that rule): the head the worker
# sends never carries Content-Length, Transfer-Encoding or another hop-by-hop header
# (RFC 9110 §7.6.1: Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-*). The tornado proxy of
# v0.11 buffers the whole reply and always appends its own Content-Length, so a forwarded one
# makes two; the native proxy and the dev front add chunked framing when the head has no
# Content-Length, so dropping it there costs only the length hint. Either way the client gets
# exactly one framing header. An app's Content-Length is still checked against the body it
# sends (a shortfall or excess is the app's bug and fails the session).
# A validated (name, value) pair is remembered together with its msgpack encoding, so the
# usual response (the same few headers every time) is validated and encoded by dict lookups;
# the head is assembled by hand from those fragments instead of going through a Packer. A whole
# head made only of such pairs is remembered too, keyed by (status, *pairs): the common
# response costs one tuple hash.
from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Union

from cocaine_http.errors import LocalProtocolError
from cocaine_http.http.validate import is_token
from cocaine_http.protocol.dialect import pack_uint, raw_header

Payload = Union[bytes, list[Union[bytes, memoryview, bytearray]]]


class ResponseState(enum.Enum):
    IDLE = "idle"  # nothing from the app yet
    HELD = "held"  # head validated, not sent
    SENT = "sent"  # head sent, body streaming
    DONE = "done"  # complete response sent (including an error response)
    FAILED = "failed"  # the head went out, then the app failed: the session gets an error


ALLOWED: dict[str, tuple[ResponseState, ...]] = {
    "start": (ResponseState.IDLE,),
    "replace": (ResponseState.IDLE, ResponseState.HELD),
}

_IDLE, _HELD, _SENT, _DONE, _FAILED = tuple(ResponseState)
_START_OK, _REPLACE_OK = ALLOWED["start"], ALLOWED["replace"]
_FORBIDDEN = b"\r\n\x00"
#: Header names (lower case) the front owns: framing and hop-by-hop; never sent by the worker.
FRONT_OWNED = frozenset({
    b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te", b"trailer",
    b"upgrade",
})


def is_front_owned(name: bytes) -> bool:
    """True for a response header the worker drops from the head: the front frames the body
    and owns the connection (see the module comment)."""
    lower = name.lower()
    return lower in FRONT_OWNED or lower.startswith(b"proxy-")

_pairs: dict[object, tuple[bytes, int | None]] = {}
_CACHE_SIZE = 4096


_FIXARRAYS = [bytes((0x90 | n,)) for n in range(16)]
_status_prefixes: dict[object, bytes] = {}
#: (status, *pairs) -> encode_head's result, for heads made only of cached pairs.
_heads: dict[tuple[object, ...], tuple[bytes, int | None]] = {}
_heads_get = _heads.get
_FIXRAWS = [raw_header(n) for n in range(32)]


def _array_header(n: int) -> bytes:
    if n < 16:
        return _FIXARRAYS[n]
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _as_bytes(item: object, what: str) -> bytes:
    if type(item) is bytes:
        return item
    if isinstance(item, str):
        try:
            return item.encode("latin-1")  # PEP 3333: header strings stand for latin-1 bytes
        except UnicodeEncodeError:
            raise LocalProtocolError(f"response header {what} {item!r} is not latin-1") from None
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise LocalProtocolError(f"response header {what} {item!r} is not a string")


def _encode_pair(pair: object) -> tuple[bytes, int | None]:
    """Validate one header pair: (its msgpack encoding, the Content-Length it declares)."""
    name_obj: object
    value_obj: object
    try:
        name_obj, value_obj = pair  # type: ignore[misc]
    except (TypeError, ValueError):
        raise LocalProtocolError(f"response header {pair!r} is not a (name, value) pair") from None
    name = _as_bytes(name_obj, "name")
    value = _as_bytes(value_obj, "value")
    if not is_token(name):
        raise LocalProtocolError(f"illegal response header name {name!r}")
    if len(value.translate(None, _FORBIDDEN)) != len(value):
        raise LocalProtocolError(f"illegal response header value {value!r} (CR, LF or NUL)")
    length = None
    if name.lower() == b"content-length":
        text = value.strip()
        if not text.isdigit() or not text.isascii():
            raise LocalProtocolError(f"illegal Content-Length {value!r}")
        length = int(text)
    encoded = b"" if is_front_owned(name) else (
        b"\x92" + raw_header(len(name)) + name + raw_header(len(value)) + value
    )
    hit = (encoded, length)
    cacheable = type(name_obj) in (bytes, str) and type(value_obj) in (bytes, str)
    if type(pair) is tuple and cacheable and len(value) <= 512:
        if len(_pairs) >= _CACHE_SIZE:
            _pairs.clear()
        _pairs[pair] = hit
    return hit


def encode_head(status: int, headers: Iterable[object]) -> tuple[bytes, int | None]:
    """(msgpack head payload, declared Content-Length or None); raises LocalProtocolError.

    The payload leaves out the headers the front owns (`is_front_owned`); the declared length
    is still returned so that the body can be checked against it.
    """
    key: tuple[object, ...] | None
    if type(headers) is list and type(status) is int:
        try:
            key = (status, *headers)
            hit = _heads_get(key)
        except TypeError:  # a list pair: unhashable, validate it every time
            key = hit = None
        if hit is not None:
            return hit
    else:
        key = None
    head = _encode_head(status, headers)
    # Whole heads are remembered only when every pair is one the pair cache accepted (str or
    # bytes, short values), so a hit is exactly a head that passed validation before.
    if key is not None and type(status) is int and all(pair in _pairs for pair in key[1:]):
        if len(_heads) >= _CACHE_SIZE:
            _heads.clear()
        _heads[key] = head
    return head


def remembered_head(status: int, headers: Sequence[object]) -> tuple[bytes, int | None] | None:
    """encode_head's result for a head it remembers (validated before, see encode_head),
    else None: what an adapter may keep under its own key and pass to start_encoded()."""
    try:
        return _heads_get((status, *headers))
    except TypeError:  # a list pair: never remembered
        return None


def _encode_head(status: int, headers: Iterable[object]) -> tuple[bytes, int | None]:
    prefix = _status_prefixes.get(status) if type(status) is int else None
    if prefix is None:
        if type(status) is not int or not 100 <= status <= 999:
            raise LocalProtocolError(f"illegal response status {status!r}")
        prefix = _status_prefixes[status] = b"\x92" + pack_uint(status)
    get = _pairs.get
    parts = []
    declared = None
    for pair in headers:
        try:
            hit = get(pair)
        except TypeError:  # a list pair: unhashable, validate it every time
            hit = None
        if hit is None:
            hit = _encode_pair(pair)
        if hit[0]:
            parts.append(hit[0])
        if hit[1] is not None:
            if declared is not None and declared != hit[1]:
                raise LocalProtocolError("conflicting Content-Length response headers")
            declared = hit[1]
    n = len(parts)
    return prefix + (_FIXARRAYS[n] if n < 16 else _array_header(n)) + b"".join(parts), declared


def byte_buffer(data: object) -> bytes | bytearray | memoryview:
    """A body piece as a buffer whose len() is its size in bytes: bytes and bytearray as they
    are, a one-dimensional byte memoryview as it is, any other bytes-like object (an array, a
    bytes subclass, a view of wider items) as a byte view of it.

    Raises:
        LocalProtocolError: not a bytes-like object (a str, an int), or not contiguous (a
            strided memoryview: its bytes are not one run).
    """
    if type(data) is bytearray:
        return data
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise LocalProtocolError(
            f"response body must be bytes, not {type(data).__name__}") from None
    if not view.c_contiguous:
        raise LocalProtocolError("response body must be contiguous bytes, not a strided view")
    if type(data) is memoryview and view.ndim == 1 and view.itemsize == 1:
        return data
    return view.cast("B")


class Response:
    """One HTTP response on one session (see cocaine_http.http's docstring for the contract).

    Args:
        method: the request method (HEAD responses carry no body).
        raw_body: body chunks as raw bytes (the v0.12 dialect) instead of msgpack strings.
    """

    __slots__ = ("state", "status", "bytes_sent", "_head", "_declared", "_no_body", "_raw",
                 "_head_request")

    def __init__(self, method: str = "GET", raw_body: bool = False) -> None:
        self.state = _IDLE
        self.status: int | None = None
        self.bytes_sent = 0
        self._head = b""
        self._declared: int | None = None
        self._no_body = self._head_request = method == "HEAD"
        self._raw = raw_body

    @property
    def head_sent(self) -> bool:
        return self.state is _SENT or self.state is _FAILED or (
            self.state is _DONE and self.status is not None
        )

    @property
    def declared(self) -> int | None:
        """The Content-Length the held or sent head declares (None without one)."""
        return self._declared

    @property
    def done(self) -> bool:
        return self.state is _DONE or self.state is _FAILED

    def start(self, status: int, headers: Iterable[object], replace: bool = False) -> None:
        """Validate and hold the head (see the module docstring); nothing is sent yet."""
        if self.state not in (_REPLACE_OK if replace else _START_OK):
            raise LocalProtocolError(f"response already {self.state.value}: cannot start it")
        self._head, self._declared = encode_head(status, headers)
        self.status = status
        self._no_body = self._head_request or status < 200 or status == 204 or status == 304
        self.state = _HELD

    def start_encoded(self, status: int, head: bytes, declared: int | None,
                      replace: bool = False) -> None:
        """start() with a head `encode_head` made and validated before (an adapter that
        remembers its heads by their own key): the same states and effects."""
        if self.state not in (_REPLACE_OK if replace else _START_OK):
            raise LocalProtocolError(f"response already {self.state.value}: cannot start it")
        self._head, self._declared = head, declared
        self.status = status
        self._no_body = self._head_request or status < 200 or status == 204 or status == 304
        self.state = _HELD

    def body(self, data: bytes | memoryview | bytearray, more: bool = True) -> list[Payload]:
        """Payloads for one body piece: the held head if it is due, then the data."""
        state = self.state
        if state is not _HELD and state is not _SENT:
            raise LocalProtocolError(f"response is {state.value}: cannot send a body")
        if type(data) is not bytes:
            data = byte_buffer(data)
        if self._no_body:
            n = 0
        else:
            n = len(data)
            declared = self._declared
            if declared is not None:
                total = self.bytes_sent + n
                if total > declared or (not more and total < declared):
                    self._check_length(declared, total, more)
        if n:  # the usual case first: one list literal, no appends
            piece: Payload = data if self._raw else [  # type: ignore[assignment]
                _FIXRAWS[n] if n < 32 else raw_header(n), data]
            self.bytes_sent += n
            if state is _HELD:
                self.state = _SENT if more else _DONE
                return [self._head, piece]
            if not more:
                self.state = _DONE
            return [piece]
        if more:
            return []
        self.state = _DONE
        return [self._head] if state is _HELD else []

    def _check_length(self, declared: int, total: int, more: bool) -> None:
        if total > declared:
            raise LocalProtocolError(
                f"response body exceeds its Content-Length {declared} ({total} bytes)"
            )
        if not more and total < declared:
            raise LocalProtocolError(
                f"response body ended at {total} bytes, short of its Content-Length {declared}"
            )

    def flush(self) -> list[Payload]:
        """The held head, now (or nothing if it was already sent)."""
        if self.state is not _HELD:
            if self.state is _SENT:
                return []
            raise LocalProtocolError(f"response is {self.state.value}: nothing to flush")
        self.state = _SENT
        return [self._head]

    def end(self) -> list[Payload]:
        """Finish the body; raises LocalProtocolError if a Content-Length is not met."""
        return self.body(b"", more=False)

    def fail(self) -> list[Payload]:
        """After an app error: a 500 response if the head was not sent, else []."""
        if self.state is _IDLE or self.state is _HELD:
            self.state = _DONE
            self.status = 500
            return error_response(500, raw_body=self._raw, head_request=self._head_request)
        if self.state is _SENT:
            self.state = _FAILED
        return []


def error_response(
    status: int, message: str = "", *, raw_body: bool = False, head_request: bool = False
) -> list[Payload]:
    """A complete plain-text response: [head, body] (just [head] for HEAD requests); the
    front frames it, as every response (`is_front_owned`)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    text = f"{status} {phrase}: {message}\n" if message else f"{status} {phrase}\n"
    data = text.encode("utf-8", "replace")
    head, _ = encode_head(status, [(b"content-type", b"text/plain; charset=utf-8")])
    if head_request:
        return [head]
    return [head, data if raw_body else [raw_header(len(data)), data]]
