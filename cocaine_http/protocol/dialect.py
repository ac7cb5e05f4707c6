# Strategy: everything that differs between protocol versions lives here, in one `Dialect`
# object per version: the message ids, the encoders, and the router that tells what an incoming
# message means. Nothing else in the library branches on the version.
#
# Encoders pack strings as old-style raw (use_bin_type=False, PROTOCOL.md §1) and are
# byte-identical to the vectors in PROTOCOL.md §11. The hot ones (chunk, choke, heartbeat) build
# their bytes by hand: no Packer state, so they are safe to call from any thread, and a chunk's
# payload is returned separately from its header so a large body is never copied to be framed.
from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Any

import msgpack

_BE_U8 = struct.Struct(">B").pack
_BE_U16 = struct.Struct(">H").pack
_BE_U32 = struct.Struct(">I").pack
_BE_U64 = struct.Struct(">Q").pack

#: Application error category used in v0.12 error messages (PY12, NODE-m use 42).
APP_ERROR_CATEGORY = 42


class Kind(enum.IntEnum):
    """What an incoming message means to its receiver."""

    HANDSHAKE = 0
    HEARTBEAT = 1
    TERMINATE = 2
    INVOKE = 3
    CHUNK = 4
    ERROR = 5
    CHOKE = 6
    OTHER = 7


class TerminateCode(enum.IntEnum):
    """Terminate codes of v0.11 (`rpc::terminate::code`)."""

    NORMAL = 1
    ABNORMAL = 2


def pack_uint(n: int) -> bytes:
    """Shortest msgpack encoding of a non-negative integer."""
    if n < 0x80:
        return _BE_U8(n)
    if n < 0x100:
        return b"\xcc" + _BE_U8(n)
    if n < 0x10000:
        return b"\xcd" + _BE_U16(n)
    if n < 0x100000000:
        return b"\xce" + _BE_U32(n)
    return b"\xcf" + _BE_U64(n)


def raw_header(size: int) -> bytes:
    """msgpack v4 raw header for a payload of `size` bytes (fixraw, raw16 or raw32; never str8)."""
    if size < 32:
        return _BE_U8(0xA0 | size)
    if size < 0x10000:
        return b"\xda" + _BE_U16(size)
    return b"\xdb" + _BE_U32(size)


def pack(obj: Any) -> bytes:
    """msgpack with every str and bytes packed as old-style raw."""
    packed: bytes = msgpack.packb(obj, use_bin_type=False)
    return packed


class Dialect:
    """Wire rules of one protocol version.

    Attributes:
        name: "v0.11" or "v0.12" (the decoder's dialect name).
        control: session/channel id that carries handshake, heartbeat and terminate.
    """

    name: str
    control: int

    # -- worker -> engine ------------------------------------------------------------------
    def handshake(self, uuid: str) -> bytes:
        raise NotImplementedError

    def heartbeat(self) -> bytes:
        raise NotImplementedError

    def terminate(self, code: int, reason: str) -> bytes:
        raise NotImplementedError

    # -- sessions, both directions ---------------------------------------------------------
    def invoke(self, session: int, event: str) -> bytes:
        raise NotImplementedError

    def chunk_header(self, session: int, size: int) -> bytes:
        """Frame bytes that go before a chunk payload of `size` bytes."""
        raise NotImplementedError

    def chunk(self, session: int, data: bytes) -> bytes:
        return self.chunk_header(session, len(data)) + data

    def error(self, session: int, code: int, message: str) -> bytes:
        raise NotImplementedError

    def choke(self, session: int) -> bytes:
        raise NotImplementedError

    # -- services --------------------------------------------------------------------------
    def call(self, session: int, method: int, args: Sequence[Any]) -> bytes:
        """A service call (v0.11) or a new channel's first message (v0.12)."""
        raise NotImplementedError

    def router(self) -> Router:
        """A fresh router for one connection (v0.12 routing depends on the channels seen)."""
        raise NotImplementedError


class Router:
    """Classifies incoming messages; v0.11 needs no state, so one table serves every id."""

    _TABLE = tuple(Kind)

    def route(self, mid: int, session: int) -> Kind:
        return self._TABLE[mid] if mid < 7 else Kind.OTHER


class V11(Dialect):
    """cocaine-runtime v0.11: `[id, session, args]`, control on session 0 (PROTOCOL.md §3)."""

    name = "v0.11"
    control = 0
    _HEARTBEAT = b"\x93\x01\x00\x90"

    def handshake(self, uuid: str) -> bytes:
        return pack([Kind.HANDSHAKE, 0, [uuid]])

    def heartbeat(self) -> bytes:
        return self._HEARTBEAT

    def terminate(self, code: int, reason: str) -> bytes:
        return pack([Kind.TERMINATE, 0, [code, reason]])

    def invoke(self, session: int, event: str) -> bytes:
        return pack([Kind.INVOKE, session, [event]])

    def chunk_header(self, session: int, size: int) -> bytes:
        return b"\x93\x04" + pack_uint(session) + b"\x91" + raw_header(size)

    def error(self, session: int, code: int, message: str) -> bytes:
        return pack([Kind.ERROR, session, [code, message]])

    def choke(self, session: int) -> bytes:
        return b"\x93\x06" + pack_uint(session) + b"\x90"

    def call(self, session: int, method: int, args: Sequence[Any]) -> bytes:
        return pack([method, session, list(args)])

    def router(self) -> Router:
        return _V11_ROUTER


_V11_ROUTER = Router()


class V12Router(Router):
    """Worker-side routing of "protocol 1": channel 1 is control, other channels are sessions
    that open with invoke (id 0) and then stream write 0 / error 1 / close 2 (PROTOCOL.md §3.8)."""

    def __init__(self) -> None:
        self._open: set[int] = set()

    def route(self, mid: int, session: int) -> Kind:
        if session in self._open:
            if mid == 2:
                self._open.discard(session)
            return (Kind.CHUNK, Kind.ERROR, Kind.CHOKE)[mid] if mid < 3 else Kind.OTHER
        if session == 1:
            return (Kind.HEARTBEAT, Kind.TERMINATE)[mid] if mid < 2 else Kind.OTHER
        if mid == 0:
            self._open.add(session)
            return Kind.INVOKE
        return Kind.OTHER


class V12(Dialect):
    """cocaine v0.12 "protocol 1": `[channel, id, args]`, control on channel 1 (PROTOCOL.md §3.8)."""

    name = "v0.12"
    control = 1

    def handshake(self, uuid: str) -> bytes:
        return pack([1, 0, [uuid]])

    def heartbeat(self) -> bytes:
        return b"\x93\x01\x00\x90"

    def terminate(self, code: int, reason: str) -> bytes:
        return pack([1, 1, [code, reason]])

    def invoke(self, session: int, event: str) -> bytes:
        return pack([session, 0, [event]])

    def chunk_header(self, session: int, size: int) -> bytes:
        return b"\x93" + pack_uint(session) + b"\x00\x91" + raw_header(size)

    def error(self, session: int, code: int, message: str) -> bytes:
        return pack([session, 1, [[APP_ERROR_CATEGORY, code], message]])

    def choke(self, session: int) -> bytes:
        return b"\x93" + pack_uint(session) + b"\x02\x90"

    def call(self, session: int, method: int, args: Sequence[Any]) -> bytes:
        return pack([session, method, list(args)])

    def router(self) -> Router:
        return V12Router()


V0_11 = V11()
V0_12 = V12()


def get_dialect(protocol: str | int | None) -> Dialect:
    """Dialect for a `--protocol` value: absent or 0 means v0.11, 1 means v0.12."""
    if protocol in (None, "", "0", 0, "v0.11"):
        return V0_11
    if protocol in ("1", 1, "v0.12"):
        return V0_12
    raise ValueError(f"unknown protocol {protocol!r}; expected 0 (v0.11) or 1 (v0.12)")
