"""The C response framing (csrc/framing.c) against its Python reference,
`Dialect.frame_response`: on generated inputs it gives exactly the reference's result (the
same bytes, or the same list with the very payload objects) or declines with None, never a
result where the reference raises; the adapters' real responses take it; it leaks nothing
and refuses wrong types without crashing.

The module is imported directly, so the pure-Python run of the suite checks it too (the
library itself then frames in Python, `codec.native`)."""

from __future__ import annotations

import array
import asyncio
import importlib
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocaine_http.adapters.asgi import ASGIAdapter
from cocaine_http.adapters.wsgi import WSGIAdapter
from cocaine_http.config import Config
from cocaine_http.protocol import dialect as dialect_module
from cocaine_http.protocol.dialect import SMALL_JOIN, V0_11, V0_12, Dialect, raw_header

from tests.plugins.apps import frame
from tests.plugins.worker import RecordingChannel, RecordingSession

cframing: Any = importlib.import_module("cocaine_http.protocol._cframing")

SETTINGS = settings(deadline=None, max_examples=400,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DIALECTS = [V0_11, V0_12]
IDS = ["v0.11", "v0.12"]

#: Every msgpack uint width of a session id, at and around its bounds.
SESSION_BOUNDS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
sessions = st.sampled_from(SESSION_BOUNDS) | st.integers(0, 2**64 - 1)
bad_sessions = (st.integers(max_value=-1) | st.integers(min_value=2**64) | st.booleans()
                | st.none() | st.floats() | st.text(max_size=3))  # fmt: skip
#: Payload sizes around the raw header widths and the join bound.
SIZES = [0, 1, 31, 32, 33, 255, 256, 4095, 4096, 4097, 65535, 65536, 65537]
sizes = st.sampled_from(SIZES) | st.integers(0, 300)


class Bytes(bytes):
    """A bytes subclass: the C framing declines it (its len() could be anything)."""


def released() -> memoryview:
    view = memoryview(b"gone")
    view.release()
    return view


@st.composite
def buffers(draw: Any) -> Any:
    """A payload buffer of every kind `Dialect.response` takes."""
    data = bytes(range(256)) * (draw(sizes) // 256 + 1)
    data = data[: draw(sizes)]
    kind = draw(st.sampled_from(["bytes", "bytearray", "memoryview", "slice"]))
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind == "slice":
        return memoryview(b"<" + data + b">")[1:-1]
    return data


#: Buffers and other things the C framing must decline (the reference may frame some of them,
#: or raise).
ODD = [
    lambda: Bytes(b"sub"), lambda: memoryview(b"abcdef")[::2],
    lambda: memoryview(b"")[::2], lambda: memoryview(b"ab")[::2],  # strided: empty, one item
    lambda: memoryview(array.array("I", [1, 2])), lambda: memoryview(b"abcd").cast("B", (2, 2)),
    released, lambda: "text", lambda: 7, lambda: None, lambda: array.array("B", b"ab"),
]  # fmt: skip
odd_buffers = st.integers(0, len(ODD) - 1).map(lambda i: ODD[i]())


@st.composite
def chunk(draw: Any, odd: bool) -> Any:
    part = (buffers() | odd_buffers) if odd else buffers()
    if draw(st.booleans()):
        return draw(part)
    parts = draw(st.lists(part, max_size=3))
    return parts if draw(st.booleans()) else tuple(parts)


def responses(odd: bool) -> Any:
    return st.tuples(
        st.lists(chunk(odd), max_size=4).map(list) | st.lists(chunk(odd), max_size=4).map(tuple),
        st.booleans(),
    )


def reference(dialect: Dialect, session: Any, chunks: Any, end: Any) -> Any:
    try:
        return dialect.frame_response(session, chunks, end)
    except Exception as exc:  # the reference's refusal: C must decline it
        return exc


def assert_same(c: Any, ref: Any) -> None:
    """C's result is the reference's: equal bytes, or a list of the same shape whose headers
    are equal bytes and whose payloads are the very objects passed in."""
    assert not isinstance(ref, Exception), f"C framed what the reference refuses: {ref!r}"
    assert type(c) is type(ref)
    if isinstance(ref, bytes):
        assert c == ref
        return
    assert len(c) == len(ref)
    for ours, theirs in zip(c, ref):
        assert ours is theirs or (type(ours) is bytes and type(theirs) is bytes
                                  and ours == theirs)


def test_the_constants_agree_with_the_dialects() -> None:
    assert cframing.SMALL_JOIN == SMALL_JOIN
    assert (V0_11.framing_layout, V0_12.framing_layout) == (cframing.V11, cframing.V12)


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
@SETTINGS
@given(session=sessions, response=responses(odd=False))
def test_c_frames_every_plain_response_as_the_reference(
    dialect: Dialect, session: int, response: Any
) -> None:
    """Exact ints, lists/tuples of bytes, bytearray and contiguous byte memoryviews: C always
    frames (no decline) and gives the reference's result, joined or listed alike."""
    chunks, end = response
    c = cframing.response(dialect.framing_layout, session, chunks, end)
    assert c is not None
    assert_same(c, reference(dialect, session, chunks, end))


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
@SETTINGS
@given(session=sessions | bad_sessions, response=responses(odd=True),
       end=st.booleans() | st.sampled_from([0, 1, None, "yes"]))
def test_c_gives_the_reference_or_declines(
    dialect: Dialect, session: Any, response: Any, end: Any
) -> None:
    """Any input: C's result is the reference's, or None; never one where the reference
    raises, and never an exception of its own."""
    chunks = response[0]
    c = cframing.response(dialect.framing_layout, session, chunks, end)
    if c is not None:
        assert_same(c, reference(dialect, session, chunks, end))


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
@pytest.mark.parametrize("size", [SMALL_JOIN - 1, SMALL_JOIN, SMALL_JOIN + 1])
def test_the_join_bound_counts_payload_bytes(dialect: Dialect, size: int) -> None:
    head = b"\x92\xcc\xc8\x90"
    body = bytes(size - len(head))
    c = dialect.response(70000, [head, [raw_header(len(body)), body]], True)
    assert_same(c, dialect.frame_response(70000, [head, [raw_header(len(body)), body]], True))
    assert isinstance(c, bytes) == (size + 3 <= SMALL_JOIN)


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
def test_strided_views_are_judged_as_the_reference_judges_them(dialect: Dialect) -> None:
    """An empty strided memoryview is contiguous to PyBuffer_IsContiguous but not to the
    memoryview itself, so the reference's join refuses it: C declines it. A one-item strided
    view joins, and C frames it as the reference does."""
    empty, one = memoryview(b"")[::2], memoryview(b"ab")[::2]
    with pytest.raises(TypeError):
        dialect.frame_response(9, [b"head", empty], True)
    assert cframing.response(dialect.framing_layout, 9, [b"head", empty], True) is None
    assert_same(cframing.response(dialect.framing_layout, 9, [b"head", one], True),
                dialect.frame_response(9, [b"head", one], True))


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
def test_other_sequences_decline_to_python(dialect: Dialect) -> None:
    """A chunks sequence C does not walk (here a range-like Sequence) goes to Python."""
    from collections import deque

    chunks: Any = deque([b"a", b"b"])
    assert cframing.response(dialect.framing_layout, 5, chunks, True) is None
    assert dialect.response(5, chunks, True) == dialect.frame_response(5, [b"a", b"b"], True)


@pytest.mark.parametrize("args", [
    (), (0, 1, []), (0, 1, [], True, 5), ("0", 1, [], True), (2, 1, [], True),
    (-1, 1, [], True), (2**70, 1, [], True), (None, 1, [], True), (0.0, 1, [], True),
])  # fmt: skip
def test_wrong_arguments_raise_type_or_value_errors(args: tuple[Any, ...]) -> None:
    with pytest.raises((TypeError, ValueError, OverflowError)):
        cframing.response(*args)


@pytest.mark.parametrize("args", [
    (0, -1, [b"x"], True), (0, 2**64, [b"x"], True), (1, True, [b"x"], True),
    (0, 1, [b"x"], 1), (0, 1, b"xy", True), (0, 1, "xy", True), (0, 1, None, True),
    (0, 1, [None], True), (0, 1, [[b"a", None]], True), (0, 1, [[[b"a"]]], True),
    (0, 1, [released()], True), (1, 1, [object()], False),
])  # fmt: skip
def test_inputs_it_cannot_frame_decline(args: tuple[Any, ...]) -> None:
    assert cframing.response(*args) is None


def test_a_huge_payload_declines_without_reading_it() -> None:
    """Sizes of raw32 and beyond: the reference raises struct.error; C declines. A view of
    a sparse mapping would do, but a memoryview cannot lie about its size: 2**32 bytes of
    zero pages are only touched if copied, and C never copies past the join bound."""
    pytest.importorskip("mmap")
    import mmap

    with mmap.mmap(-1, 2**32) as big:
        view = memoryview(big)
        try:
            assert cframing.response(0, 1, [view], True) is None
            with pytest.raises(Exception):
                V0_11.frame_response(1, [view], True)
        finally:
            view.release()


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
def test_a_framer_frames_in_c_and_falls_back_to_its_reference(dialect: Dialect) -> None:
    calls: list[Any] = []

    def fallback(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return dialect.frame_response(*args, **kwargs)

    framer = cframing.Framer(dialect.framing_layout, fallback)
    chunks = [b"head", [b"\xa5", b"hello"]]
    assert framer(7, chunks, True) == dialect.frame_response(7, chunks, True)
    assert calls == []
    odd: Any = iter([b"x"])
    assert framer(7, odd, True) == dialect.frame_response(7, [b"x"], True)
    assert framer(-1 + 2, [b"y"], end=False) == dialect.frame_response(1, [b"y"], False)
    assert len(calls) == 2 and calls[1][1] == {"end": False}  # keywords go to Python
    with pytest.raises(TypeError):
        framer()  # the reference's own TypeError
    with pytest.raises(struct_error()):
        framer(-1, [b"x"], True)


def struct_error() -> type[Exception]:
    import struct

    return struct.error


@pytest.mark.parametrize("args", [(2, print), (0, None), ("0", print), (0,), ()])
def test_a_framer_refuses_a_bad_layout_or_fallback(args: tuple[Any, ...]) -> None:
    with pytest.raises((TypeError, ValueError)):
        cframing.Framer(*args)


def test_framing_leaks_nothing() -> None:
    """100k calls over every outcome (joined, listed, declined, refused): the number of
    allocated blocks does not grow."""
    big = bytes(SMALL_JOIN + 1)
    cases: list[tuple[Any, ...]] = [
        (0, 3, [b"head", [b"\xa5", b"hello"]], True),
        (1, 70000, [b"head", memoryview(b"body"), bytearray(b"x")], False),
        (0, 2**40, [b"head", [raw_header(len(big)), big]], True),
        (1, 9, (big, (b"a", b"b")), True),
        (0, -1, [b"x"], True),
        (0, 1, [[b"a", None]], True),
        (0, 1, [released()], True),
    ]

    framer = cframing.Framer(0, V0_11.frame_response)

    def run(n: int) -> None:
        for i in range(n):
            case = cases[i % len(cases)]
            cframing.response(*case)
            try:
                framer(*case[1:])
            except Exception:
                pass
            try:
                cframing.response(5, 1, [], True)
            except ValueError:
                pass

    run(2000)
    before = sys.getallocatedblocks()
    run(100_000)
    assert sys.getallocatedblocks() - before < 100


# -- the real responses take the C path ------------------------------------------------------


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Records every `response()` call of the two dialects and every framing Python does.
    With the C framing on, each dialect's response is checked to be the C Framer falling
    back to its `frame_response`, and is swapped for the same Framer with a counting
    fallback."""
    seen: dict[str, list[Any]] = {"response": [], "python": []}
    for dialect in DIALECTS:
        python = dialect.frame_response

        def fallback(*args: Any, python: Any = python) -> Any:
            seen["python"].append(args)
            return python(*args)

        framing: Any = fallback
        if dialect_module._cframing is not None:
            assert type(dialect.response) is cframing.Framer
            assert dialect.response.fallback == python
            assert dialect.response.layout == dialect.framing_layout
            framing = cframing.Framer(dialect.framing_layout, fallback)

        def response(*args: Any, dialect: Dialect = dialect, framing: Any = framing) -> Any:
            seen["response"].append((dialect, args))
            return framing(*args)

        monkeypatch.setattr(dialect, "response", response)
    return seen


def assert_c_path(seen: dict[str, list[Any]], calls: int) -> None:
    """`calls` responses were framed; C frames each exactly as the reference does; and when
    the library uses C (not under COCAINE_HTTP_PUREPYTHON=1), Python framed none of them."""
    assert len(seen["response"]) == calls
    assert len(seen["python"]) == (0 if dialect_module._cframing is not None else calls)
    for dialect, args in seen["response"]:
        c = cframing.response(dialect.framing_layout, *args)
        assert c is not None, f"the C framing declines a real response: {args!r:.200}"
        assert_same(c, reference(dialect, *args))


class Recording12(RecordingChannel):
    """A v0.12 session's wire: the bytes it was sent; `choked` set by the close."""

    dialect = V0_12

    def __init__(self) -> None:
        super().__init__()
        self.data = b""

    def send(self, session: int, message: Any) -> None:
        parts = [message] if isinstance(message, (bytes, bytearray, memoryview)) else message
        self.data += b"".join(bytes(p) for p in parts)
        if self.data.endswith(V0_12.choke(session)):
            self.choked.set()


class Worker12:
    dialect = V0_12


def session_on(dialect: Dialect) -> RecordingSession:
    """A recording session whose channel speaks `dialect`."""
    session = RecordingSession()
    if dialect is V0_12:
        session.wire = session._channel = Recording12()  # type: ignore[assignment]
        session.dialect = V0_12
        session.done = session.wire.choked
    return session


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def streamed(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"a" * 40, "more_body": True})
    await send({"type": "http.response.body", "body": bytes(70000), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def failing(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("before the head")


ASGI_CASES = [(hello, "GET", 1), (hello, "HEAD", 1), (streamed, "GET", 3), (failing, "GET", 1)]


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
@pytest.mark.parametrize(("app", "method", "calls"), ASGI_CASES,
                         ids=["hello", "head", "streamed", "500"])
async def test_asgi_responses_take_the_c_path(
    spied: dict[str, list[Any]], dialect: Dialect, app: Any, method: str, calls: int
) -> None:
    adapter = ASGIAdapter(app, Config(access_log=False, lifespan="off"),
                          Worker12() if dialect is V0_12 else None)
    await adapter.startup()
    session = session_on(dialect)
    adapter(session)
    session.request(frame(method))
    await asyncio.wait_for(session.done.wait(), 10)
    assert_c_path(spied, calls)


def wsgi_hello(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def wsgi_pieces(environ: Any, start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one"
    yield bytes(5000)


def wsgi_writer(environ: Any, start_response: Any) -> list[bytes]:
    write = start_response("201 Created", [])
    write(b"written")
    return [b"", b"returned"]


@pytest.mark.parametrize("dialect", DIALECTS, ids=IDS)
@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "pool"])
@pytest.mark.parametrize("app", [wsgi_hello, wsgi_pieces, wsgi_writer],
                         ids=["hello", "iterated", "write"])
async def test_wsgi_responses_take_the_c_path(
    spied: dict[str, list[Any]], dialect: Dialect, threads: int, app: Any
) -> None:
    adapter = WSGIAdapter(app, Config(access_log=False, threads=threads),
                          Worker12() if dialect is V0_12 else None)
    await adapter.startup()
    try:
        session = session_on(dialect)
        adapter(session)
        session.request(frame())
        await asyncio.wait_for(session.done.wait(), 10)
    finally:
        await adapter.shutdown()
    assert spied["response"], "no response was framed"
    assert_c_path(spied, len(spied["response"]))
    if dialect is V0_11:
        assert session.ended and session.status in (200, 201)
