"""h11 is the authority on valid HTTP: parse_request must accept and reject exactly what h11
does, checked with hypothesis on generated requests.

The oracle: h11.Request(...) judges the fields (the frame is structured, like its arguments),
then an h11 server connection is fed the request as it would arrive on the wire, to judge the
body framing (Content-Length / Transfer-Encoding against the body the proxy buffered); the
request is valid when h11 yields exactly that body and the end of the message.

Deliberate exceptions (docs/http-core.md), applied to the oracle's input before asking h11:
- a missing Host on HTTP/1.1 is tolerated (the proxy owns the client connection): a Host header
  is added for h11;
- an empty uri is valid (the proxy strips `/app/event`): h11 is given "/";
- versions: the frame carries "1.0"/"1.1" or "HTTP/1.0"/"HTTP/1.1" (mapped for h11); any other
  version is refused with 505 or 400 (tested in test_http_request.py), where h11 would take any
  HTTP/d.d;
- a body with neither Content-Length nor Transfer-Encoding is the body (the proxy framed it;
  on the wire h11 would read no body): a Content-Length header is added for h11;
- Expect: 100-continue never produces a 100 (the body is already here): it does not affect
  validity, which the oracle confirms by generating the header;
- frames with the tornado proxy's "HTTP/1.x" spelling lose their leading copies of the
  request's cookies before anything is validated (`cookie_copies`, whose own rule is tested in
  test_http_request.py): the oracle drops the same headers before asking h11.
"""

from __future__ import annotations

import h11
import msgpack
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cocaine_http.errors import BadRequestError
from cocaine_http.http import parse_request
from cocaine_http.http.request import cookie_copies

_SPELLINGS = {b"1.1": b"1.1", b"1.0": b"1.0", b"HTTP/1.1": b"1.1", b"HTTP/1.0": b"1.0"}


def _bytes_from(alphabet: bytes, max_size: int = 8) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(list(alphabet)), max_size=max_size).map(bytes)


methods = st.one_of(
    st.sampled_from([b"GET", b"POST", b"HEAD", b"M-SEARCH", b"get", b"!#$%&'*+-.^_`|~"]),
    _bytes_from(b"GETa0-!~ \t\x00\x7f\x80\xff(),/:@[]\"{}"),
)
targets = st.one_of(
    st.sampled_from([b"", b"/", b"?q", b"/x?q", b"*", b"/a%20b", b"http://h/x?y", b"/#f"]),
    _bytes_from(b"/az09?=&%#~:\x21\x7e \t\x00\x7f\x80\xff\r\n"),
)
names = st.one_of(
    st.sampled_from([
        b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"Content-Type", b"Expect",
        b"X-Forwarded-For", b"X-Real-IP", b"Cookie",
    ]),
    _bytes_from(b"aZ09-!_~ :\t\x00\x7f\xff(\"\r\n"),
)
values = st.one_of(
    st.sampled_from([
        b"", b"chunked", b"CHUNKED", b"gzip", b"gzip, chunked", b"0", b"3", b"3, 3", b"3,4",
        b"+3", b"100-continue", b"a b", b" a", b"a\t", b"\x01ctl", b"\x80\xff",
        b"123456789012345678901",
    ]),
    _bytes_from(b"a0 \t\x00\r\n\x0b\x0c\x01\x1f\x7f\x80\xff,3"),
)
bodies = st.sampled_from([b"", b"abc", b"\x00\xff\r\n"])


def _without_cookie_copies(version, headers):
    """The headers left once the tornado proxy's cookie copies are dropped (its spelling only)."""
    return headers[cookie_copies(tuple(headers)):] if version.startswith(b"HTTP/") else headers


def _h11_verdict(method, target, version, headers, body) -> int | None:
    """None if h11 accepts the request with this body, else the status h11 would answer."""
    h11_version = _SPELLINGS[version]
    headers = _without_cookie_copies(version, headers)
    h11_headers = list(headers)
    if h11_version == b"1.1" and not any(n.lower() == b"host" for n, _ in headers):
        h11_headers.append((b"Host", b"added-for-h11"))
    framing = {b"content-length", b"transfer-encoding"}
    if body and not any(n.lower() in framing for n, _ in headers):
        h11_headers.append((b"Content-Length", b"%d" % len(body)))
    try:
        request = h11.Request(
            method=method, target=target or b"/", headers=h11_headers, http_version=h11_version
        )
    except h11.LocalProtocolError as exc:
        return exc.error_status_hint
    return None if _h11_wire_accepts(request, body) else 400


def _h11_wire_accepts(request: h11.Request, body: bytes) -> bool:
    chunked = any(n == b"transfer-encoding" for n, _ in request.headers)
    wire = b"%s %s HTTP/%s\r\n" % (request.method, request.target, request.http_version)
    wire += b"".join(b"%s: %s\r\n" % pair for pair in request.headers.raw_items()) + b"\r\n"
    if chunked and body:
        wire += b"%x\r\n" % len(body) + body + b"\r\n"
    wire += b"0\r\n\r\n" if chunked else body
    server = h11.Connection(h11.SERVER)
    server.receive_data(wire)
    received = b""
    while True:
        event = server.next_event()
        if type(event) is h11.Data:
            received += event.data
        elif type(event) is h11.EndOfMessage:
            return received == body and server.trailing_data == (b"", False)
        elif event is h11.NEED_DATA:
            return False


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=methods,
    target=targets,
    version=st.sampled_from(sorted(_SPELLINGS)),
    headers=st.lists(st.tuples(names, values), max_size=5),
    body=bodies,
)
def test_parse_request_agrees_with_h11(method, target, version, headers, body):
    """parse_request accepts exactly the requests h11 accepts, with h11's status on refusal."""
    frame = msgpack.packb([method, target, version, [list(h) for h in headers], body],
                          use_bin_type=False)
    expected = _h11_verdict(method, target, version, headers, body)

    try:
        request = parse_request(frame)
        got = None
    except BadRequestError as exc:
        got = exc.status

    event(f"h11 verdict: {expected or 'accepted'}")
    assert got == expected, (method, target, version, headers, body)
    if got is None:
        kept = _without_cookie_copies(version, headers)
        assert request.headers == [(n.lower(), v) for n, v in kept]
        assert bytes(request.body) == body


plausible_names = st.one_of(
    st.sampled_from([b"Host", b"host", b"Content-Type", b"Cookie", b"Expect"]),
    _bytes_from(b"aZ09-!_~", max_size=6),
)
plausible_values = _bytes_from(b"a/:;=,. \t\x01\x80\xff", max_size=10)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from([b"GET", b"POST", b"OPTIONS", b"PURGE"]),
    target=_bytes_from(b"/az?=&%#~:*", max_size=12),
    version=st.sampled_from(sorted(_SPELLINGS)),
    headers=st.lists(st.tuples(plausible_names, plausible_values), max_size=6),
    body=bodies,
)
def test_parse_request_agrees_with_h11_on_plausible_requests(method, target, version, headers,
                                                              body):
    """Mostly valid requests (whitespace and odd octets in values) get h11's verdict too."""
    test_parse_request_agrees_with_h11.hypothesis.inner_test(  # type: ignore[attr-defined]
        method=method, target=target, version=version, headers=headers, body=body
    )
