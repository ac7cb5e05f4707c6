"""The request checks the proxy adds on top of h11 (cocaine_http.proxy.checks).

Each test first shows that h11 itself lets the request through (so the rule is needed), then
that the check refuses it with the right status and exception class.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocaine_http.errors import BadRequestError
from cocaine_http.proxy import checks
from cocaine_http.proxy.checks import (HeadGuard, HeadLimits, check_raw_head, check_request,
                                       check_trailers)


def _h11_parse(raw: bytes) -> tuple[h11.Request, list[object]]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    events: list[object] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            break
        events.append(event)
        if isinstance(event, h11.EndOfMessage):
            break
    request = events[0]
    assert isinstance(request, h11.Request)
    return request, events


def _check(raw: bytes) -> None:
    """What the front does: the raw head, then h11's request and trailers."""
    check_raw_head(raw[: raw.index(b"\r\n\r\n") + 4])
    request, events = _h11_parse(raw)
    check_request(request.method, request.target, list(request.headers.raw_items()),
                  request.http_version)
    for event in events:
        if isinstance(event, h11.EndOfMessage):
            check_trailers(list(event.headers.raw_items()))


@pytest.mark.parametrize("raw, cls, status", [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", checks.BadFraming, 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
     checks.BadFraming, 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
     checks.BadFraming, 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", checks.BadFraming, 400),
    (b"GET foo/bar HTTP/1.1\r\nHost: a\r\n\r\n", checks.BadTarget, 400),
    (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", checks.BadTarget, 400),
    (b"GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", checks.BadTarget, 400),
    (b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", checks.BadTarget, 400),
    (b"GET /foo HTTP/2.0\r\nHost: a\r\n\r\n", checks.UnsupportedVersion, 505),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x07b\r\n\r\n", checks.BadFieldValue, 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\n",
     checks.RepeatedField, 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", checks.BadFieldValue, 400),
    (b"GET /" + b"a" * 4100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", checks.HeadTooLarge, 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 8186 + b"\r\n\r\n", checks.HeadTooLarge,
     431),  # 8191 bytes with CRLF
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"h%d: x\r\n" % i for i in range(101))
     + b"\r\n", checks.HeadTooLarge, 431),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
     b"Content-Length: 99\r\n\r\n", checks.ForbiddenTrailer, 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: b\r\n\r\n",
     checks.ForbiddenTrailer, 400),
])
def test_h11_accepts_but_the_check_refuses(raw: bytes, cls: type[BadRequestError],
                                           status: int) -> None:
    _h11_parse(raw)  # h11 alone lets it through

    with pytest.raises(cls) as info:
        _check(raw)

    assert info.value.status == status
    assert isinstance(info.value, BadRequestError)


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /path?q=1 HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
    b"GET http://example.com/foo HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET https://u:p@example.com:8080/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
    b"X-Checksum: 1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\nabcdefg",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: tab\there \xff obs-text\r\n\r\n",
])
def test_ordinary_requests_pass(raw: bytes) -> None:
    _check(raw)


def test_http11_without_host_and_duplicate_host_are_refused() -> None:
    """h11 refuses these itself; the check agrees (one rule, two places that may change)."""
    with pytest.raises(checks.BadHost):
        check_request(b"GET", b"/", [], b"1.1")
    with pytest.raises(checks.BadHost):
        check_request(b"GET", b"/", [(b"Host", b"a"), (b"host", b"b")], b"1.0")
    check_request(b"GET", b"/", [], b"1.0")


def test_limits_are_configurable() -> None:
    small = HeadLimits(max_request_line=20, max_field_size=10, max_fields=1)
    with pytest.raises(checks.HeadTooLarge):
        check_request(b"GET", b"/" + b"a" * 20, [(b"Host", b"a")], b"1.1", limits=small)
    with pytest.raises(checks.HeadTooLarge):
        check_request(b"GET", b"/", [(b"Host", b"a"), (b"X", b"y")], b"1.1", limits=small)
    check_request(b"GET", b"/", [(b"Host", b"a")], b"1.1", limits=small)


# -- raw head ------------------------------------------------------------------------------------


@pytest.mark.parametrize("head, message", [
    (b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", "bare LF"),
    (b"GET / HTTP/1.1\nHost: a\n\n", "bare LF"),
    (b"GET / HTTP/1.1\r\nLong: one\r\n two\r\nHost: a\r\n\r\n", "folding"),
    (b"GET / HTTP/1.1\r\nLong: one\r\n\ttwo\r\nHost: a\r\n\r\n", "folding"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "final"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "final"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", "final"),
    (b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding : chunked, identity\r\n\r\n", "final"),
])
def test_raw_head_rules(head: bytes, message: str) -> None:
    with pytest.raises(checks.RequestRejected, match=message) as info:
        check_raw_head(head)
    assert info.value.status == 400


def test_h11_hides_folding_and_bare_lf() -> None:
    """Why the raw check exists: h11 parses both without complaint, and its result cannot
    tell them from an ordinary request."""
    folded, _ = _h11_parse(b"GET / HTTP/1.1\r\nLong: one\r\n two\r\nHost: a\r\n\r\n")
    bare, _ = _h11_parse(b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n")

    assert (b"long", b"one two") in list(folded.headers)
    assert (b"x", b"1") in list(bare.headers)


def test_guard_checks_a_head_split_anywhere() -> None:
    raw = b"GET / HTTP/1.1\r\nLong: one\r\n two\r\nHost: a\r\n\r\n"
    for cut in range(1, len(raw)):
        guard = HeadGuard()
        guard.feed(raw[:cut])
        with pytest.raises(checks.BadLineEnding):
            guard.feed(raw[cut:])
            raise AssertionError(f"not caught at cut {cut}")  # pragma: no cover


def test_guard_ignores_the_body_and_resets_per_request() -> None:
    guard = HeadGuard()
    body = b"line one\nline two\n two"  # bare LFs and a fold-like body: not a head
    assert guard.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
                      + body) .endswith(body)
    guard.reset(b"GET / HTTP/1.1\r\nHost: a\n")
    with pytest.raises(checks.BadLineEnding):
        guard.feed(b"\r\n")


def test_guard_drops_one_empty_line_before_a_fresh_request_only() -> None:
    assert HeadGuard().feed(b"\r\nGET / HTTP/1.1\r\n") == b"GET / HTTP/1.1\r\n"
    guard = HeadGuard()
    assert guard.feed(b"\r\n") == b""
    assert guard.feed(b"\r\nGET /") == b"\r\nGET /"  # a second one is h11's to refuse
    assert HeadGuard().feed(b"\r\n\r\nGET /") == b"\r\nGET /"


def test_guard_stops_past_its_bound() -> None:
    guard = HeadGuard(max_head=100)
    guard.feed(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 30)
    assert guard.feed(b"Bad: fold\r\n fold\r\n\r\n") == b"Bad: fold\r\n fold\r\n\r\n"


@given(st.lists(st.tuples(st.from_regex(rb"\A[A-Za-z][A-Za-z0-9-]{0,10}\Z"),
                          st.from_regex(rb"\A[!-~]([ -~]{0,20}[!-~])?\Z")), max_size=8),
       st.integers(1, 50))
def test_guard_passes_well_formed_heads_in_any_split(fields: list[tuple[bytes, bytes]],
                                                     cut: int) -> None:
    fields = [(n, v) for n, v in fields if n.lower() not in (
        b"host", b"transfer-encoding", b"content-length")]
    raw = (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in fields)
           + b"\r\n")
    guard = HeadGuard()
    out = guard.feed(raw[:cut]) + guard.feed(raw[cut:])

    assert out == raw
    _check(raw)
