# Strategy: everything that differs between protocol versions lives here, in one `Dialect`
# object per version: the message ids, the encoders (a whole response's framing included), the
# router that tells what an incoming message means, the argument rules of incoming messages,
# and the flags the hot paths read (`error_ends_stream`, `fast_ids`, `raw_body`). Nothing else
# in the library branches on the version or writes wire bytes.
#
# The runtime's side is here too, for the dev runtime: what an engine sends a worker
# (`engine_request`, the heartbeat echo and terminate through `from_runtime`, which adds the
# headers element v0.12 puts on every frame), how it reads a worker (`worker_kind`), how a
# service reads its callers (`call_router`) and frames its answers (`service_value`,
# `resolve_answer`). What differs in the services' own APIs between the generations (v0.12's
# node takes one app, its emit has no answer) is the dev services' business, keyed on
# `graph_replies`.
#
# Encoders pack strings as old-style raw (use_bin_type=False, docs/protocol.md §1) and are
# byte-identical to the vectors in docs/protocol.md §11. The hot ones (chunk, choke, heartbeat, a
# response) build their bytes by hand: no Packer state, so they are safe to call from any thread,
# and a chunk's payload is kept apart from its header so a large body is never copied to be framed.
from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Any, Union

import msgpack

from ..codec import native
from ..codec.hpack import TRACE_NAMES, Trace, check_trace, pack_trace
from ..errors import RemoteProtocolError
from .service import (Graph, MethodProtocol, Resolution, dump_graph, parse_graph,
                      table_methods)

Buffer = Union[bytes, bytearray, memoryview]
#: One chunk: a buffer, or a list of buffers sent back to back as one payload.
Payload = Union[Buffer, Sequence[Buffer]]
_BUFFERS = (bytes, bytearray, memoryview)
#: response() joins the parts of a response whose payloads total at most this many bytes.
SMALL_JOIN = 4096

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


#: Terminate code `normal` (`rpc::terminate::code`), what a worker answers a terminate with.
TERMINATE_NORMAL = 1


def stamp(trace: Trace) -> bytes:
    """The headers element a v0.12 runtime puts on a session's frames: the three trace headers
    by name in the order it sends them, values in memory order [CORE12 `src/encoder.cpp`]."""
    return pack([[False, name, value.to_bytes(8, "little")]
                 for name, value in zip(TRACE_NAMES, trace)])  # fmt: skip


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


_RAW_HEADERS = tuple(raw_header(n) for n in range(32))

#: The C copy of the response framing (csrc/framing.c), None when Python frames: its
#: Framer(layout, fallback) gives exactly `frame_response`'s result, or the fallback's where
#: it declines.
_cframing = native("cocaine_http.protocol._cframing")


def pack(obj: Any) -> bytes:
    """msgpack with every str and bytes packed as old-style raw."""
    packed: bytes = msgpack.packb(obj, use_bin_type=False)
    return packed


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Dialect:
    """Wire rules of one protocol version.

    Attributes:
        name: "v0.11" or "v0.12" (the decoder's dialect name).
        protocol: the runtime's `--protocol` value for it (0 for v0.11, 1 for v0.12).
        control: session/channel id that carries handshake, heartbeat and terminate.
        error_ends_stream: a worker error ends its stream by itself (v0.12); in v0.11 the
            runtime waits for the choke after it.
        fast_ids: incoming message ids are the `Kind` values and need no routing state (v0.11),
            so a receive loop may read the kind straight from the id.
        raw_body: HTTP body chunks go out as raw bytes (v0.12) instead of msgpack raws (v0.11).
        eof_is_stop: the engine closing the worker's socket with no terminate is its normal
            stop (v0.12 does that on SIGTERM); in v0.11 the engine always sends terminate
            first, so an EOF there is a lost connection.
    """

    name: str
    protocol: int
    control: int
    error_ends_stream: bool
    fast_ids: bool
    raw_body: bool
    eof_is_stop: bool

    # -- worker -> engine ------------------------------------------------------------------
    def handshake(self, uuid: str) -> bytes:
        raise NotImplementedError

    def heartbeat(self) -> bytes:
        raise NotImplementedError

    def terminate(self, code: int, reason: str) -> bytes:
        raise NotImplementedError

    def terminate_answer(self, code: int | None) -> int:
        """The code of the worker's terminate after the engine's terminate(`code`) (None:
        the worker stops on its own): v0.11 answers `normal`; v0.12 echoes the engine's
        code, as the reference v0.12 framework does (docs/v012.md)."""
        return TERMINATE_NORMAL

    # -- sessions, both directions ---------------------------------------------------------
    def invoke(self, session: int, event: str) -> bytes:
        raise NotImplementedError

    def chunk_header(self, session: int, size: int) -> bytes:
        """Frame bytes that go before a chunk payload of `size` bytes."""
        raise NotImplementedError

    def chunk(self, session: int, data: bytes) -> bytes:
        return self.chunk_header(session, len(data)) + data

    def error(
        self, session: int, code: int, message: str, category: int = APP_ERROR_CATEGORY
    ) -> bytes:
        """An error on a session; `category` is v0.12's (v0.11 errors have none)."""
        raise NotImplementedError

    def choke(self, session: int) -> bytes:
        raise NotImplementedError

    def failure(self, session: int, code: int, message: str) -> bytes:
        """What fails a worker's response: the error, then the choke unless the error ends
        the stream by itself."""
        data = self.error(session, code, message)
        return data if self.error_ends_stream else data + self.choke(session)

    #: The layout of this dialect's chunk and choke in the C framing (`_cframing.V11` or
    #: `.V12`); None: only `frame_response` frames its responses.
    framing_layout: int | None = None

    def __init__(self) -> None:
        layout = self.framing_layout
        if _cframing is not None and layout is not None:
            # response() as one C call (no Python frame on the hot path): the C framing, or
            # frame_response where it declines
            self.response = _cframing.Framer(  # type: ignore[method-assign]
                layout, self.frame_response)

    def response(
        self, session: int, chunks: Sequence[Payload], end: bool
    ) -> Buffer | list[Buffer]:
        """A run of response chunks (each a buffer, or buffers sent back to back as one
        payload) and, with end=True, the choke, as buffers to send in order. A small response
        (payloads up to SMALL_JOIN bytes) comes back joined into one bytes: one queue entry
        and one writelines item instead of five or six; a larger one is never copied.

        When the C framing is built, each instance's response is its Framer (see __init__:
        byte for byte `frame_response`'s result, which stays the statement of the rule)."""
        return self.frame_response(session, chunks, end)

    def frame_response(
        self, session: int, chunks: Sequence[Payload], end: bool
    ) -> Buffer | list[Buffer]:
        """`response()` in Python: the reference the C framing is tested against."""
        out: list[Buffer] = []
        append = out.append
        size = 0
        header = self.chunk_header
        for chunk in chunks:
            if isinstance(chunk, _BUFFERS):
                n = len(chunk)
                append(header(session, n))
                append(chunk)
            else:
                n = sum(map(len, chunk))
                append(header(session, n))
                out += chunk
            size += n
        if end:
            append(self.choke(session))
        return b"".join(out) if size <= SMALL_JOIN else out

    # -- what arrives ----------------------------------------------------------------------
    def arguments(self, kind: Kind, args: list[Any]) -> tuple[Any, ...]:
        """The checked arguments of an incoming message of `kind`: invoke (event: str),
        chunk (data: bytes), error (code: int, message: str; the code may come as
        [category, code]), terminate (code: int, reason: str, which may be missing).
        Heartbeat and choke ignore their arguments.

        Raises:
            RemoteProtocolError: the arguments do not fit; the text says how.
        """
        if kind is Kind.CHUNK:
            if len(args) != 1 or type(args[0]) is not bytes:
                raise RemoteProtocolError(f"chunk takes one raw string, got {args!r:.80}")
            return (args[0],)
        if kind is Kind.INVOKE:
            if len(args) != 1 or not isinstance(args[0], (bytes, str)):
                raise RemoteProtocolError(f"invoke takes one event name, got {args!r:.80}")
            return (_text(args[0]),)
        if kind is Kind.ERROR:
            code = args[0] if args else None
            if type(code) is list and len(code) == 2:
                code = code[1]
            if len(args) < 2 or type(code) is not int:
                raise RemoteProtocolError(
                    f"error takes an integer code and a message, got {args!r:.80}"
                )
            return code, _text(args[1])
        if kind is Kind.TERMINATE:
            if not args or type(args[0]) is not int:
                raise RemoteProtocolError(
                    f"terminate takes an integer code and a reason, got {args!r:.80}"
                )
            return args[0], _text(args[1]) if len(args) > 1 else ""
        return ()

    # -- the runtime's side: what the dev runtime's engine and services send --------------
    #: the headers element a runtime appends to every frame it sends (v0.12: the three trace
    #: headers, zero outside a trace [CORE12 `src/encoder.cpp` pack_headers]); empty: none
    runtime_headers: bytes = b""
    #: the code of the terminate an engine sends (v0.11 `normal`; v0.12 the slave category's
    #: `overseer_shutdowning`)
    engine_terminate_code: int = TERMINATE_NORMAL
    #: the first session id toward a worker, and whether ids count per worker connection
    #: (v0.12: a channel counter per slave) or per engine (v0.11: shared by every worker)
    first_session: int = 1
    sessions_per_connection: bool = False
    #: the engine takes a worker as active at its handshake (v0.12's node::v2, which starts
    #: the heartbeat timer then) rather than at its first heartbeat (v0.11)
    active_at_handshake: bool = False
    #: the engine terminates workers idle for the profile's idle-timeout (v0.11); node::v2
    #: reads the setting but has no idle timer
    idle_terminates: bool = True

    def engine_error_code(
        self, code: int, category_code: tuple[int, int]
    ) -> tuple[int, int | None]:
        """(code, category) of an error the engine itself gives a session: v0.11's code
        (category None) or v0.12's [category, code]."""
        return code, None

    def from_runtime(
        self, frame: Buffer | Sequence[Buffer], trace: Trace | None = None
    ) -> list[Buffer]:
        """One frame (a packed 3-element message, or its buffers back to back) as a runtime
        sends it: with the headers element in v0.12 (the session's trace, zeros outside a
        trace), unchanged in v0.11."""
        parts: list[Buffer] = [frame] if isinstance(frame, _BUFFERS) else list(frame)
        if not self.runtime_headers:
            return parts
        first = parts[0]
        if not first or first[0] != 0x93:
            raise ValueError("a frame to extend is a packed 3-element array")
        parts[0] = b"\x94" + bytes(first[1:])
        parts.append(self.runtime_headers if trace is None else stamp(trace))
        return parts

    def engine_request(self, session: int, event: str, chunks: Sequence[Buffer],
                       end: bool = True, trace: Trace | None = None) -> list[Buffer]:
        """What an engine sends a worker for one enqueued event: invoke, the request chunks
        so far, then (end=True) the end of the upstream (choke / close), each frame with the
        session's trace (v0.12)."""
        out = self.from_runtime(self.invoke(session, event), trace)
        for data in chunks:
            out += self.engine_chunk(session, data, trace)
        if end:
            out += self.from_runtime(self.choke(session), trace)
        return out

    def engine_chunk(
        self, session: int, data: Buffer, trace: Trace | None = None
    ) -> list[Buffer]:
        """One more request chunk of a session whose upstream is still open."""
        return self.from_runtime((self.chunk_header(session, len(data)), data), trace)

    def worker_kind(self, mid: int, session: int) -> Kind:
        """What a message from a worker means to its engine (the handshake is the first
        message, whatever its id; the engine handles it before this)."""
        return Kind(mid) if mid < Kind.OTHER else Kind.OTHER

    def call_router(self) -> CallRouter:
        """A fresh router for one connection to a service (the server's side)."""
        return CallRouter()

    def service_value(
        self, session: int, values: Sequence[Any], trace: Trace | None = None
    ) -> list[Buffer]:
        """A service's answer that ends the call: the method's return values (none for a
        void method); `trace`: the call's, stamped on v0.12 frames. v0.11 sends one chunk holding msgpack of the value (a list for several
        values, nothing for none), then choke [CORE11 `include/cocaine/rpc/slot/*`]."""
        out: list[Buffer] = []
        if values:
            blob = pack(values[0] if len(values) == 1 else list(values))
            out.append(self.chunk_header(session, len(blob)))
            out.append(blob)
        out.append(self.choke(session))
        return out

    def resolve_answer(
        self, endpoint: tuple[str, int], version: int, methods: dict[int, MethodProtocol]
    ) -> list[Any]:
        """The values of the locator's answer to `resolve` (the inverse of `resolution`)."""
        host, port = endpoint
        return [[[host, port], version, {mid: m.name for mid, m in methods.items()}]]

    #: a call of a method the service does not bind drops the connection (v0.12, seen on
    #: the runtime); v0.11 answers error(1, "unknown message type") and choke
    drops_unknown_method: bool = False
    #: methods every service of this dialect has besides its own (v0.12: the session's
    #: control messages, which resolve lists for every service)
    service_extras: dict[int, MethodProtocol] = {}

    # -- services --------------------------------------------------------------------------
    #: service replies follow each method's protocol graph (v0.12); in v0.11 they are
    #: chunk*, then error or choke, with fixed ids
    graph_replies: bool
    #: the locator's fixed methods (the locator itself is never resolved)
    locator: dict[int, MethodProtocol]
    #: the downstream graph of a method given without one (a plain {id: name} table)
    default_downstream: Graph | None = None

    def call(
        self, session: int, method: int, args: Sequence[Any], trace: Trace | None = None
    ) -> bytes:
        """A service call (v0.11) or a message on a channel (v0.12: the first opens it),
        carrying `trace` in its headers (v0.12 only: v0.11 frames have none).

        Raises:
            ValueError: a trace under v0.11, or one that is not three 64-bit integers.
        """
        raise NotImplementedError

    def trace(self, value: Any) -> Trace:
        """A caller's trace= checked for this dialect's calls.

        Raises:
            ValueError: v0.11 frames have no headers to carry it; v0.12: not three 64-bit
                integers.
        """
        raise ValueError("a trace needs v0.12 (protocol 1): v0.11 frames have no headers")

    def resolution(self, value: Any) -> Resolution:
        """The locator's answer to `resolve`, as a Resolution.

        Raises:
            RemoteProtocolError: the answer does not have this dialect's layout.
        """
        raise NotImplementedError

    # logging: the library's levels are v0.11's (1 error, 2 warning, 3 info, 4 debug)
    def log_level(self, level: int) -> int:
        """The wire level of a library level (v0.11: the same; v0.12: 3 error .. 0 debug)."""
        return level

    def library_level(self, wire: int) -> int:
        """The library level of a wire level (the inverse of `log_level`)."""
        return wire

    def log_enabled(self, level: int, verbosity: int) -> bool:
        """Whether the logging service keeps a message at library `level` under its wire
        `verbosity` (v0.11: level <= verbosity; v0.12: wire level >= verbosity)."""
        return 0 < level <= verbosity

    def emit_args(
        self, level: int, source: str, message: str, attributes: Sequence[tuple[str, Any]]
    ) -> list[Any]:
        """Arguments of `logging.emit` (v0.11 has no attributes: they are left out)."""
        return [level, source, message]  # v0.11 levels are the library's

    def service_error(self, args: list[Any]) -> tuple[int | None, int, str]:
        """(category, code, message) of a service's error reply; category None in v0.11.

        Raises:
            RemoteProtocolError: the arguments are not an error's.
        """
        code = args[0] if args else None
        category: int | None = None
        if type(code) is list and len(code) == 2 and all(type(c) is int for c in code):
            category, code = code
        if len(args) < 2 or type(code) is not int:
            raise RemoteProtocolError(f"error takes a code and a message, got {args!r:.80}")
        return category, code, _text(args[1])

    def router(self) -> Router:
        """A fresh router for one connection (v0.12 routing depends on the channels seen)."""
        raise NotImplementedError


class Router:
    """Classifies incoming messages; v0.11 needs no state, so one table serves every id."""

    _TABLE = tuple(Kind)

    def route(self, mid: int, session: int) -> Kind:
        return self._TABLE[mid] if mid < Kind.OTHER else Kind.OTHER


class CallRouter:
    """A service's side of one connection: which messages open a call and which continue
    one. In v0.11 every message is a call of its own (its id names the method)."""

    def route(self, mid: int, session: int) -> Kind:
        """INVOKE (a new call; `mid` is the method), CHUNK / ERROR / CHOKE (upstream of an
        open call) or OTHER (a message on a channel that is no longer open)."""
        return Kind.INVOKE

    def keep(self, session: int) -> None:
        """The call on `session` takes upstream messages (v0.12 methods whose upstream graph
        has `write`)."""


class V12CallRouter(CallRouter):
    """v0.12: the first message on a new channel is the call; channel ids must grow (the
    runtime revokes a reused one and drops the connection); an open upstream takes write 0,
    error 1 and close 2, and error or close ends it [CORE12 `src/session.cpp`]."""

    def __init__(self) -> None:
        self._open: set[int] = set()
        self._last = 0

    def route(self, mid: int, session: int) -> Kind:
        if session in self._open:
            if mid in (1, 2):
                self._open.discard(session)
            return (Kind.CHUNK, Kind.ERROR, Kind.CHOKE)[mid] if mid < 3 else Kind.OTHER
        if session <= self._last:
            return Kind.OTHER
        self._last = session
        return Kind.INVOKE

    def keep(self, session: int) -> None:
        self._open.add(session)


class V11(Dialect):
    """cocaine-runtime v0.11: `[id, session, args]`, control on session 0 (docs/protocol.md §3)."""

    name = "v0.11"
    protocol = 0
    control = 0
    error_ends_stream = False
    fast_ids = True
    raw_body = False
    eof_is_stop = False
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

    def error(
        self, session: int, code: int, message: str, category: int = APP_ERROR_CATEGORY
    ) -> bytes:
        return pack([Kind.ERROR, session, [code, message]])

    def choke(self, session: int) -> bytes:
        return b"\x93\x06" + pack_uint(session) + b"\x90"

    framing_layout = 0  # _cframing.V11

    def frame_response(
        self, session: int, chunks: Sequence[Payload], end: bool
    ) -> Buffer | list[Buffer]:
        # chunk_header() and choke() with the session id packed once per response
        packed = pack_uint(session)
        prefix = b"\x93\x04" + packed + b"\x91"
        out: list[Buffer] = []
        append = out.append
        size = 0
        for chunk in chunks:
            if isinstance(chunk, _BUFFERS):
                n = len(chunk)
                append(prefix + (_RAW_HEADERS[n] if n < 32 else raw_header(n)))
                append(chunk)
            else:  # usually [raw header, body]: two lengths, no sum() over a map()
                n = len(chunk[0]) + len(chunk[1]) if len(chunk) == 2 else sum(map(len, chunk))
                append(prefix + (_RAW_HEADERS[n] if n < 32 else raw_header(n)))
                out += chunk
            size += n
        if end:
            append(b"\x93\x06" + packed + b"\x90")
        return b"".join(out) if size <= SMALL_JOIN else out

    graph_replies = False

    def call(
        self, session: int, method: int, args: Sequence[Any], trace: Trace | None = None
    ) -> bytes:
        if trace is not None:
            self.trace(trace)
        return pack([method, session, list(args)])

    def resolution(self, value: Any) -> Resolution:
        # [[host, port], version, {id: name}] (docs/protocol.md §4.2)
        try:
            (host, port), version, table = value
            return Resolution(((_text(host), int(port)),), int(version), table_methods(table))
        except (TypeError, ValueError, AttributeError) as exc:
            raise RemoteProtocolError(
                f"a v0.11 resolve answer is [[host, port], version, {{id: method}}], "
                f"got {value!r:.120}"
            ) from exc

    def router(self) -> Router:
        return _V11_ROUTER


_V11_ROUTER = Router()


class V12Router(Router):
    """Worker-side routing of "protocol 1": channel 1 is control, other channels are sessions
    that open with invoke (id 0) and then stream write 0 / error 1 / close 2
    (docs/protocol.md §3.8)."""

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
    """cocaine v0.12 "protocol 1": `[channel, id, args]`, control on channel 1
    (docs/protocol.md §3.8)."""

    name = "v0.12"
    protocol = 1
    control = 1
    error_ends_stream = True
    fast_ids = False
    raw_body = True
    eof_is_stop = True

    def handshake(self, uuid: str) -> bytes:
        return pack([1, 0, [uuid]])

    def heartbeat(self) -> bytes:
        return b"\x93\x01\x00\x90"  # [1, 0, []]: heartbeat on the control channel

    def terminate(self, code: int, reason: str) -> bytes:
        return pack([1, 1, [code, reason]])

    def invoke(self, session: int, event: str) -> bytes:
        return pack([session, 0, [event]])

    def chunk_header(self, session: int, size: int) -> bytes:
        return b"\x93" + pack_uint(session) + b"\x00\x91" + raw_header(size)

    def error(
        self, session: int, code: int, message: str, category: int = APP_ERROR_CATEGORY
    ) -> bytes:
        return pack([session, 1, [[category, code], message]])

    def choke(self, session: int) -> bytes:
        return b"\x93" + pack_uint(session) + b"\x02\x90"

    framing_layout = 1  # _cframing.V12

    graph_replies = True
    runtime_headers = stamp(Trace(0, 0, 0))
    engine_terminate_code = 11
    drops_unknown_method = True
    first_session = 2
    sessions_per_connection = True
    active_at_handshake = True
    idle_terminates = False

    def engine_error_code(
        self, code: int, category_code: tuple[int, int]
    ) -> tuple[int, int | None]:
        return category_code[1], category_code[0]

    def terminate_answer(self, code: int | None) -> int:
        return TERMINATE_NORMAL if code is None else code

    def worker_kind(self, mid: int, session: int) -> Kind:
        if session == self.control:
            return (Kind.HEARTBEAT, Kind.TERMINATE)[mid] if mid < 2 else Kind.OTHER
        return (Kind.CHUNK, Kind.ERROR, Kind.CHOKE)[mid] if mid < 3 else Kind.OTHER

    def call_router(self) -> CallRouter:
        return V12CallRouter()

    def service_value(
        self, session: int, values: Sequence[Any], trace: Trace | None = None
    ) -> list[Buffer]:
        # the return values are the message's arguments [CORE12 `include/cocaine/rpc/slot`]
        return self.from_runtime(pack([session, 0, list(values)]), trace)

    def resolve_answer(
        self, endpoint: tuple[str, int], version: int, methods: dict[int, MethodProtocol]
    ) -> list[Any]:
        graph = {mid: [m.name, dump_graph(m.upstream), dump_graph(m.downstream)]
                 for mid, m in methods.items()}
        return [[list(endpoint)], version, graph]

    def log_level(self, level: int) -> int:
        # blackhole priorities: debug 0, info 1, warning 2, error 3 [CORE12 `forwards.hpp`]
        return max(0, 4 - level)

    def library_level(self, wire: int) -> int:
        return min(4, max(1, 4 - wire))

    def log_enabled(self, level: int, verbosity: int) -> bool:
        return level > 0 and self.log_level(level) >= verbosity

    def emit_args(
        self, level: int, source: str, message: str, attributes: Sequence[tuple[str, Any]]
    ) -> list[Any]:
        return [self.log_level(level), source, message, [list(a) for a in attributes]]

    def call(
        self, session: int, method: int, args: Sequence[Any], trace: Trace | None = None
    ) -> bytes:
        if trace is None:
            return pack([session, method, list(args)])
        # the static table's trace names, values little-endian, not stored (PY12's pack_trace)
        return pack([session, method, list(args), pack_trace(check_trace(trace))])

    def trace(self, value: Any) -> Trace:
        return check_trace(value)

    def resolution(self, value: Any) -> Resolution:
        # [[[host, port], ...], version, {id: [name, upstream, downstream]}]
        try:
            endpoints, version, graph = value
            if not all(isinstance(m, (list, tuple)) for m in graph.values()):
                raise ValueError("methods are [name, upstream, downstream]")
            methods = {
                int(mid): MethodProtocol(
                    _text(m[0]), parse_graph(m[1]) if len(m) > 1 else None,
                    parse_graph(m[2]) if len(m) > 2 else None,
                )
                for mid, m in graph.items()
            }
            found = tuple((_text(host), int(port)) for host, port in endpoints)
            if not found:
                raise ValueError("no endpoints")
            return Resolution(found, int(version), methods)
        except (TypeError, ValueError, AttributeError, IndexError, RemoteProtocolError) as exc:
            raise RemoteProtocolError(
                "a v0.12 resolve answer is [[[host, port], ...], version, "
                f"{{id: [method, upstream, downstream]}}], got {value!r:.120}"
            ) from exc

    def router(self) -> Router:
        return V12Router()


# the locators' fixed methods: v0.11 [CORE11 `include/cocaine/idl/locator.hpp`], v0.12 as its
# resolve("locator") describes itself [CORE12 `include/cocaine/idl/locator.hpp`]
_VALUE: Graph = {0: ("value", {}), 1: ("error", {})}
_STREAM: Graph = {0: ("write", None), 1: ("error", {}), 2: ("close", {})}
#: v0.12 graphs: one value or an error; a stream of writes ended by error or close.
VALUE_GRAPH, STREAM_GRAPH = _VALUE, _STREAM
V11.locator = table_methods({0: "resolve", 1: "synchronize", 2: "reports", 3: "refresh"})
V12.default_downstream = _VALUE  # most v0.12 methods answer one value or an error
V12.locator = {
    0: MethodProtocol("resolve", {}, _VALUE),
    1: MethodProtocol("connect", {}, _STREAM),
    2: MethodProtocol("refresh", {}, _VALUE),
    3: MethodProtocol("cluster", {}, _VALUE),
    6: MethodProtocol("uuid", {}, _VALUE),
}

# the control messages of a v0.12 session, listed by resolve for every service
# [CORE12 `include/cocaine/idl/primitive.hpp`, `src/session.cpp`]; each answers a value or an error
V12.service_extras = {
    0xFFFC: MethodProtocol("goaway", {}, _VALUE),
    0xFFFD: MethodProtocol("ping", {}, _VALUE),
    0xFFFE: MethodProtocol("settings", {}, _VALUE),
    0xFFFF: MethodProtocol("revoke", {}, _VALUE),
}

#: v0.12 error categories [CORE12 `src/errors.cpp` registrar, node plugin `error.hpp`].
ERROR_CATEGORIES = {
    1: "system", 2: "asio system", 3: "netdb", 4: "addrinfo", 5: "asio misc", 6: "transport",
    7: "dispatch", 8: "repository", 9: "security", 10: "locator", 11: "unicorn",
    12: "errno", 13: "protocol", 42: "worker", 43: "worker user", 0x51FF: "node",
    0x52FF: "overseer", 0x53FF: "slave", 0xFF: "unknown",
}
#: [category, code] of the v0.12 locator's "service is not available".
SERVICE_NOT_AVAILABLE = (10, 1)
#: The error a v0.12 runtime sends a worker on a session whose client left before it closed
#: its upstream (asio misc `eof`; node plugin `src/node/dispatch/client.cpp` discard).
CLIENT_GONE = (5, 2, "End of file")
#: [category, code] of the v0.12 node's answer to an enqueue on a connection to an app it has
#: stopped: errno EPIPE, with no message (the runtime logs "the application has been stopped"
#: but sends none) [node plugin `src/node/app.cpp` on_enqueue]; such connections stay open.
APP_STOPPED = (12, 32)

V0_11 = V11()
V0_12 = V12()


def get_dialect(protocol: str | int | None) -> Dialect:
    """Dialect for a `--protocol` value: absent or 0 means v0.11, 1 means v0.12."""
    if protocol in (None, "", "0", 0, "v0.11"):
        return V0_11
    if protocol in ("1", 1, "v0.12"):
        return V0_12
    raise ValueError(f"unknown protocol {protocol!r}; expected 0 (v0.11) or 1 (v0.12)")
