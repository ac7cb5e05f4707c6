"""The C fast path of parse_request (csrc/request.c) against its Python reference.

`_crequest.parse(frame, config)` must give exactly the fields `parse_reference` gives (same
values, same types) or decline with None; it must never accept what the reference refuses. It is
tested whatever COCAINE_HTTP_PUREPYTHON says (that switch only decides whether parse_request
uses it), and a missing build fails here instead of skipping. The common frames of every front
must take the C path, or the fast path could silently decline everything.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

import h11
import msgpack
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from bench.bench_worker import REQUEST as BENCH_REQUEST
from cocaine_http.errors import BadRequestError
from cocaine_http.http import request as request_module
from cocaine_http.http.request import (
    DEFAULT_CONFIG,
    LARGE_FRAME,
    HttpConfig,
    Request,
    parse_reference,
    parse_request,
)
from cocaine_http.proxy.connection import request_frame
from cocaine_http.proxy.forwarded import ForwardedPolicy
from tests.plugins.http import build_frame

crequest: Any = importlib.import_module("cocaine_http.http._crequest")


def cparse(frame: Any, config: Any) -> Request | None:
    """The C fast path as parse_request calls it."""
    return crequest.parse(Request, frame, config)  # type: ignore[no-any-return]


def fields(req: Request) -> tuple[Any, ...]:
    return tuple(getattr(req, name) for name in Request.__slots__)


def typed(fields: Any) -> list[Any]:
    """The fields with their types (b"x" == memoryview(b"x"), but they are not the same field),
    the headers pair by pair."""
    out = [(type(value), value) for value in fields]
    headers = fields[Request.__slots__.index("headers")]
    out.append([(type(pair), [type(part) for part in pair]) for pair in headers])
    return out


def reference_fields(frame: Any, config: HttpConfig) -> tuple[Any, ...] | None:
    """The reference's Request as a tuple in __slots__ order; None when it refuses the frame."""
    try:
        req = parse_reference(frame, config)
    except BadRequestError:
        return None
    return fields(req)


def check(frame: Any, config: HttpConfig = DEFAULT_CONFIG) -> Any:
    """C agrees with the reference on `frame` (twice: the second call hits C's caches)."""
    want = reference_fields(frame, config)
    got = cparse(frame, config)
    again = cparse(frame, config)
    if want is None:
        assert got is None, ("C accepted a frame the reference refuses", frame, got)
        assert again is None
        return None
    for result in (got, again):
        if result is not None:
            assert type(result) is Request
            assert typed(fields(result)) == typed(want), frame
    return got


def _bytes_from(alphabet: bytes, max_size: int = 8) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(list(alphabet)), max_size=max_size).map(bytes)


#: What a proxy never sends where a string belongs (maps, ints, arrays, nil...).
odd = st.one_of(
    st.integers(-3, 300), st.none(), st.booleans(), st.floats(allow_nan=False),
    st.dictionaries(st.binary(max_size=2), st.binary(max_size=2), max_size=1),
    st.lists(st.binary(max_size=2), max_size=3),
)
def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten: most frames get far enough to be compared, not declined."""
    return st.integers(0, 9).flatmap(lambda pick: bad if pick == 0 else good)


methods = mostly(
    st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"get", b"PURGE", b"M-SEARCH"]),
    st.one_of(_bytes_from(b"GETa0-!~ \t\x00\x7f\x80\xff(),/:@"), odd),
)
targets = mostly(
    st.one_of(
        st.sampled_from([
            b"", b"/", b"?", b"?q", b"/x?q", b"/x?", b"*", b"/a%20b", b"/%C3%A9?x=%20", b"/%e9",
            b"/%zz%4", b"/%%41", b"/%", b"/a%2", b"http://h/x?y", b"http://h", b"/#f",
            b"?u=http://x/y", b"abc?x", b"/a?b%20", b"/a?b?c", b"ftp://h/", b"/x://y",
        ]),
        _bytes_from(b"/az09?=&%#~:*AFf", max_size=12),
    ),
    st.one_of(_bytes_from(b"/az09?=&%#~:*AFf\x21\x7e \t\x00\x7f\x80\xff", max_size=12), odd),
)
versions = mostly(
    st.sampled_from([b"1.1", b"1.0", b"HTTP/1.1", b"HTTP/1.0"]),
    st.one_of(st.sampled_from([b"2.0", b"HTTP/2.0", b"1.1 ", b"http/1.1", b"1.2", b"",
                               b"HTTP/1.1x", b"HTTP-1.1"]), odd),
)
names = mostly(
    st.sampled_from([
        b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"Transfer-Encoding",
        b"Content-Type", b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Real-IP", b"Upgrade",
        b"Cookie", b"User-Agent", b"ACCEPT", b"Accept-Encoding", b"X-A", b"x-" + b"Long" * 20,
        b"X-Forwarded-Host", b"Expect", b"x-real-ip", b"X-FORWARDED-PROTO",
    ]),
    _bytes_from(b"aZ09-!_~ :\t\x00\x7f\xff(\"\r\n"),
)
values = mostly(
    st.sampled_from([
        # hosts
        b"h", b"h:8080", b"[::1]", b"[::1]:9", b"[::1", b"[]", b"[]:", b"[::1]:", b"h:", b"h:x",
        b"a:b:c", b"h:\xb2", b"h:\xb9\xb3", b"h:0123", b"h:99999999999999999999", b"\xe9:80",
        b"[::1]x", b"[::1]:\xb9", b"[::1]:80x", b":80", b"h:1234567890123456789",
        # proxy headers
        b"https", b"HTTPS", b"wss", b"WsS", b"http, https", b"https ,http", b"https,\thttp",
        b"10.0.0.1, 10.0.0.2", b"a,", b",", b"\xe9", b"10.0.0.1,\t", b"a ,\tb",
        # framing and the rest
        b"0", b"3", b"03", b"3, 3", b"3,4", b"+3", b"", b"123456789012345678901",
        b"1234567890123456789", b"chunked", b"Chunked", b"gzip", b"websocket", b"WebSocket",
        b"h2c", b"x websocket", b"a=1", b"host=evil", b"text/html; charset=utf-8", b"a b",
        b"\x01ctl", b"\x80\xff", b"x" * 600,
    ]),
    _bytes_from(b"a0: \t\x00\r\n\x0b\x0c\x01\x1f\x7f\x80\xff,3[]"),
)
pairs = mostly(
    st.tuples(names, values).map(list),
    st.one_of(odd, st.tuples(names, odd).map(list), st.tuples(odd, values).map(list),
              st.tuples(names, values, values).map(list), st.tuples(names).map(list)),
)
bodies = mostly(st.sampled_from([b"", b"abc", b"\x00\xff\r\n", b"x" * 40]), odd)
configs = st.sampled_from([
    DEFAULT_CONFIG,
    DEFAULT_CONFIG,
    HttpConfig(max_headers=2),
    HttpConfig(max_header_size=20),
    HttpConfig(max_body_size=2),
    HttpConfig(proxy_headers=False),
    HttpConfig(max_headers=0, max_header_size=0, max_body_size=0),
])


@st.composite
def frames(draw: Any) -> bytes:
    """Request frames, mostly well shaped, with every field sometimes wrong."""
    fields = [draw(methods), draw(targets), draw(versions),
              draw(mostly(st.lists(pairs, max_size=5), odd)), draw(bodies)]
    shape = draw(st.sampled_from(["five"] * 12 + ["six", "four", "map", "trailing", "cut"]))
    if shape == "six":
        fields.append(b"extra")
    elif shape == "four":
        fields.pop()
    packed = msgpack.packb({b"m": fields} if shape == "map" else fields,
                           use_bin_type=draw(st.booleans()))
    if shape == "trailing":
        packed += b"\x00"
    elif shape == "cut":
        packed = packed[: draw(st.integers(0, max(len(packed) - 1, 0)))]
    return packed


@given(st.lists(st.tuples(frames(), configs), min_size=1, max_size=4))
def test_c_agrees_with_the_reference_on_generated_frames(cases):
    """On valid and invalid frames, in sequence (C's caches carry over from one to the next),
    C gives the reference's exact fields or declines, and never accepts a refused frame."""
    for frame, config in cases:
        event("C declined" if check(frame, config) is None else "C parsed")


@st.composite
def valid_frames(draw: Any) -> bytes:
    """Frames of the shapes the proxies send, mostly valid: the C path should take them."""
    headers = draw(st.lists(st.tuples(
        st.sampled_from([b"Host", b"User-Agent", b"Accept", b"X-Forwarded-For", b"X-Real-IP",
                         b"X-Forwarded-Proto", b"Content-Type", b"X-Trace", b"content-length"]),
        st.sampled_from([b"h", b"h:81", b"[::1]:8", b"*/*", b"https", b"1.2.3.4, 5.6.7.8",
                         b"text/plain", b"3", b"ab", b"curl/8.5.0"]),
    ), max_size=5))
    return build_frame(
        method=draw(st.sampled_from([b"GET", b"POST", b"PATCH", b"PURGE"])),
        uri=draw(st.sampled_from([b"/", b"", b"?q=1", b"/a/b?c=d", b"/%E2%82%AC", b"/x%zz"])),
        version=draw(st.sampled_from([b"1.1", b"1.0", b"HTTP/1.1"])),
        headers=headers,
        body=draw(st.sampled_from([b"", b"abc"])),
    )


@given(st.lists(st.tuples(valid_frames(), configs), min_size=1, max_size=4))
def test_c_agrees_with_the_reference_on_plausible_frames(cases):
    """Mostly valid frames, so that most comparisons are of two results, not of declines."""
    for frame, config in cases:
        event("C declined" if check(frame, config) is None else "C parsed")


# -- the frames of the real fronts take the C path ------------------------------------------------


def _h11_headers(raw: bytes) -> tuple[h11.Request, list[tuple[bytes, bytes]]]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    req = conn.next_event()
    assert isinstance(req, h11.Request)
    return req, list(req.headers.raw_items())


FRONT_REQUESTS = [
    pytest.param(b"GET /hello?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\n"
                 b"Accept: */*\r\n\r\n", b"", id="curl-get"),
    pytest.param(b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/x-www-"
                 b"form-urlencoded\r\nContent-Length: 7\r\nAccept-Encoding: gzip, deflate\r\n"
                 b"Connection: keep-alive\r\n\r\n", b"a=1&b=2", id="form-post"),
    pytest.param(b"GET /caf%C3%A9/ HTTP/1.0\r\nHost: [::1]:8080\r\n\r\n", b"", id="http10-ipv6"),
]


@pytest.mark.parametrize("raw, body", FRONT_REQUESTS)
def test_frames_of_the_proxy_and_dev_front_take_the_c_path(raw, body):
    """The frame the proxy front and the dev front build (request_frame, with the forwarded
    headers the front sets) is parsed in C, with the reference's result."""
    req, headers = _h11_headers(raw)
    headers = ForwardedPolicy([]).rewrite(headers, "127.0.0.1", "http")
    frame = bytes(request_frame(req.method, req.target, req.http_version, headers,
                                bytearray(body)))

    got = check(frame)

    assert got is not None
    assert got.client == ("127.0.0.1", 0)


@pytest.mark.parametrize("uri", [b"", b"?q=1", b"/rest?a=b"], ids=["empty", "query", "path"])
def test_frames_of_the_native_proxies_take_the_c_path(uri):
    """The native proxy's path route leaves `?q` or an empty uri (docs/protocol.md §6.1)."""
    frame = msgpack.packb(["GET", uri, "1.1", [["Host", "h:8080"], ["Accept", "*/*"],
                                                ["User-Agent", "curl/8"]], b""],
                          use_bin_type=False)

    assert check(frame) is not None


def test_frames_of_the_tornado_proxy_without_cookies_take_the_c_path():
    """The tornado proxy's "HTTP/1.1" spelling is parsed in C when there are no cookie copies
    to look for (no Cookie header)."""
    frame = build_frame(version=b"HTTP/1.1", uri=b"/x", headers=[
        (b"Host", b"h"), (b"Accept", b"*/*"), (b"X-Real-Ip", b"10.1.1.1")])

    got = check(frame)

    assert got is not None
    assert got.http_version == "1.1"


def test_tornado_frames_with_cookies_decline_to_the_reference():
    """Its cookie copies are the reference's rule alone."""
    frame = build_frame(version=b"HTTP/1.1", headers=[(b"a", b"1"), (b"Cookie", b"a=1")])

    assert cparse(frame, DEFAULT_CONFIG) is None
    assert parse_request(frame).headers == [(b"cookie", b"a=1")]


def test_the_bench_frame_takes_the_c_path():
    assert check(BENCH_REQUEST) is not None


def test_parse_request_uses_c_unless_python_is_forced():
    """COCAINE_HTTP_PUREPYTHON=1 leaves parse_request on the reference alone."""
    if os.environ.get("COCAINE_HTTP_PUREPYTHON") == "1":
        assert request_module._cparse is None
    else:
        assert request_module._cparse is crequest.parse


@pytest.mark.parametrize("frame", [
    build_frame(headers=[(b"Host", b"h")] * 2),
    build_frame(headers=[(b"Transfer-Encoding", b"chunked")]),
    build_frame(headers=[(b"Content-Length", b"1, 1")], body=b"x"),
    build_frame(headers=[(b"Upgrade", b"websocket")]),
    build_frame(uri=b"http://h/x"),
    build_frame(body=b"x" * LARGE_FRAME),
    msgpack.packb([b"GET", b"/", b"1.1", [], b"", b"extra"]),
], ids=["two-hosts", "transfer-encoding", "content-length-list", "websocket", "absolute-form",
        "large-frame", "six-fields"])
def test_rare_frames_decline(frame):
    """The rare shapes are left to the reference (its result or its error stands)."""
    assert cparse(frame, DEFAULT_CONFIG) is None
    check(frame)


def test_limits_are_those_of_the_config():
    """At max_header_size C parses; one byte over it declines (and the reference says 431)."""
    frame = build_frame(headers=[(b"X", b"v" * 99)])

    assert check(frame, HttpConfig(max_header_size=100)) is not None
    assert cparse(frame, HttpConfig(max_header_size=99)) is None
    with pytest.raises(BadRequestError):
        parse_request(frame, HttpConfig(max_header_size=99))


def test_large_frame_is_the_reference_constant():
    assert crequest.LARGE_FRAME == LARGE_FRAME


def test_host_port_of_latin1_digits_is_a_name():
    """`h:²` is a name with no port (isdigit would call ² a digit that int() refuses)."""
    frame = build_frame(headers=[(b"Host", b"h:\xb2")])

    assert parse_request(frame).server == ("h:\xb2", 80)
    assert check(frame) is not None


# -- reference counts and wrong types ------------------------------------------------------------

LEAK_FRAMES = [
    BENCH_REQUEST,
    build_frame(method=b"POST", uri=b"/a%20b?x", body=b"abc", headers=[
        (b"Host", b"[::1]:8"), (b"Content-Type", b"text/plain"), (b"Content-Length", b"3"),
        (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-For", b"1.2.3.4, 5.6.7.8")]),
    build_frame(uri=b"?q", headers=[(b"X-Real-IP", b" 9.9.9.9 "), (b"X-Long", b"v" * 700)]),
    build_frame(method=b"PURGE", uri=b"*", headers=[(b"X-A", b"1")] * 40),
    build_frame(headers=[(b"Host", b"a"), (b"X", b"\x00")]),  # declines mid-headers
    build_frame(headers=[(b"Host", b"a"), (b"Host", b"b")]),
    build_frame(method=b"G T"),  # declines after the headers
    build_frame(uri=b"/\x80"),  # declines at the target
    build_frame(headers=[(b"Host", b"h:99999999999999999999")]),  # declines at the host
    build_frame(headers=[(b"Content-Length", b"9")]),  # declines at the body
    build_frame(version=b"HTTP/1.1", headers=[(b"Cookie", b"a=1")]),
    msgpack.packb([b"GET", b"/", b"1.1", [[b"a", {b"x": 1}]], b""]),
]


def test_no_reference_leaks():
    """100k calls on varied frames (parsed and declined at each step, caches replaced) leave
    the number of allocated blocks where it was: a leak of one object per call would show."""
    targets = [b"/t%d" % i for i in range(7)]
    hosts = [b"h%d:%d" % (i, i) for i in range(5)]
    frames = LEAK_FRAMES + [
        build_frame(uri=t, headers=[(b"Host", h), (b"X-I", t)]) for t in targets for h in hosts
    ]
    configs = [DEFAULT_CONFIG, HttpConfig(proxy_headers=False), HttpConfig(max_headers=3)]

    def run(times: int) -> None:
        for i in range(times):
            cparse(frames[i % len(frames)], configs[i % 7 % len(configs)])

    run(2000)
    gc.collect()
    before = sys.getallocatedblocks()
    run(100_000)
    gc.collect()

    assert sys.getallocatedblocks() - before < 200


@pytest.mark.parametrize("frame", [
    None, 1, "GET", bytearray(BENCH_REQUEST), memoryview(BENCH_REQUEST), [BENCH_REQUEST],
    b"", b"\x95", BENCH_REQUEST[:-1],
    b"\x95\xa3GET\xa1/\xa31.1\xdd\x7f\xff\xff\xff\xa0",  # 2**31 headers announced
])
def test_wrong_frames_decline(frame):
    assert cparse(frame, DEFAULT_CONFIG) is None


class Unreadable:
    """A config whose limits cannot be read as a config's."""

    max_body_size = "many"
    max_headers = 10
    max_header_size = 10

    @property
    def proxy_headers(self) -> bool:
        raise RuntimeError("no")


@pytest.mark.parametrize("config", [None, object(), Unreadable(), 7],
                         ids=["none", "object", "unreadable", "int"])
def test_wrong_configs_decline(config):
    assert cparse(BENCH_REQUEST, config) is None


def test_a_config_with_huge_limits_is_read_as_unbounded():
    config = HttpConfig(max_body_size=10**30, max_headers=10**30, max_header_size=10**30)

    assert check(BENCH_REQUEST, config) is not None
    assert cparse(b"\x95\xa3GET\xa1/\xa31.1\xdd\x7f\xff\xff\xff\xa0", config) is None


@pytest.mark.parametrize("args", [(), (Request, BENCH_REQUEST),
                                  (Request, BENCH_REQUEST, DEFAULT_CONFIG, 1)])
def test_wrong_argument_counts_raise_type_error(args):
    with pytest.raises(TypeError):
        crequest.parse(*args)


class NotARequest:
    __slots__ = ("method", "http_version")


class PropertyFields:
    """A class with every field, but as properties, not slots."""

    method = http_version = target = raw_path = query_string = path = headers = body = \
        content_type = scheme = client = server = property(lambda self: None)


@pytest.mark.parametrize("cls", [None, int, tuple, NotARequest, PropertyFields, Request()],
                         ids=["none", "int", "tuple", "few-slots", "properties", "an-instance"])
def test_wrong_classes_decline(cls):
    """Only a class with a writable slot for each field gets one built."""
    assert crequest.parse(cls, BENCH_REQUEST, DEFAULT_CONFIG) is None
    assert crequest.parse(Request, BENCH_REQUEST, DEFAULT_CONFIG) is not None


def test_the_request_is_an_ordinary_instance():
    """What C builds behaves as Request() with its fields set: repr, slots, deletion, gc."""
    req = cparse(BENCH_REQUEST, DEFAULT_CONFIG)

    assert repr(req) == "<Request GET b'/' HTTP/1.1>"
    assert req is not None and req.content_length == 0
    req.method = "POST"
    del req.body
    assert not hasattr(req, "body")
    assert gc.is_tracked(req)
