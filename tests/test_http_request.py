"""Request frame parsing: spellings, uri forms, headers, bodies, limits and error statuses."""

from __future__ import annotations

import msgpack
import pytest

from cocaine_http.errors import BadRequestError
from cocaine_http.http import HttpConfig, parse_request
from cocaine_http.http.request import LARGE_FRAME, cookie_copies
from tests.plugins.http import build_frame

VECTOR = bytes.fromhex("95a3474554aa2f68656c6c6f3f783d31a3312e319192a4486f7374a168a0")


class TestParseRequest:
    def test_protocol_vector_is_parsed(self):
        """The docs/protocol.md §11.2 request frame gives the request it encodes."""
        req = parse_request(VECTOR)

        assert (req.method, req.target, req.http_version) == ("GET", b"/hello?x=1", "1.1")
        assert (req.raw_path, req.path, req.query_string) == (b"/hello", "/hello", b"x=1")
        assert req.headers == [(b"host", b"h")]
        assert req.body == b""
        assert req.server == ("h", 80)

    @pytest.mark.parametrize(
        "version, expected",
        [
            pytest.param(b"1.1", "1.1", id="bare-1.1"),
            pytest.param(b"1.0", "1.0", id="bare-1.0"),
            pytest.param(b"HTTP/1.1", "1.1", id="prefixed-1.1"),
            pytest.param(b"HTTP/1.0", "1.0", id="prefixed-1.0"),
        ],
    )
    def test_both_version_spellings_are_accepted(self, version, expected):
        """The native proxy sends "1.1", the tornado proxy "HTTP/1.1" (docs/protocol.md §6.1)."""
        req = parse_request(build_frame(version=version))

        assert req.http_version == expected

    @pytest.mark.parametrize(
        "uri, raw_path, path, query",
        [
            pytest.param(b"/x?q=1", b"/x", "/x", b"q=1", id="path-and-query"),
            pytest.param(b"?q=1", b"/", "/", b"q=1", id="query-only"),
            pytest.param(b"", b"/", "/", b"", id="empty"),
            pytest.param(b"/", b"/", "/", b"", id="root"),
            pytest.param(b"/a%20b/%C3%A9?x=%20", b"/a%20b/%C3%A9", "/a b/\u00e9", b"x=%20",
                         id="percent-encoded-utf8"),
            pytest.param(b"/a?b?c", b"/a", "/a", b"b?c", id="second-question-mark"),
            pytest.param(b"http://h:1/x?y", b"/x", "/x", b"y", id="absolute-form"),
            pytest.param(b"http://h", b"/", "/", b"", id="absolute-form-no-path"),
            pytest.param(b"*", b"*", "*", b"", id="asterisk"),
        ],
    )
    def test_uri_forms(self, uri, raw_path, path, query):
        """`/x?q`, `?q` and empty uris are all valid; the path is percent-decoded."""
        req = parse_request(build_frame(uri=uri))

        assert (req.raw_path, req.path, req.query_string) == (raw_path, path, query)
        assert req.target == uri

    def test_repeated_headers_keep_order_and_duplicates(self):
        """Headers are lower-cased pairs in the order sent, duplicates kept."""
        headers = [(b"Host", b"h"), (b"X-A", b"1"), (b"Set-Thing", b"x"), (b"x-a", b"2")]

        req = parse_request(build_frame(headers=headers))

        assert req.headers == [(b"host", b"h"), (b"x-a", b"1"), (b"set-thing", b"x"),
                               (b"x-a", b"2")]

    @pytest.mark.parametrize("body", [b"", b"\x00\xff\r\n binary", bytes(range(256)) * 4])
    def test_binary_bodies_are_kept_exactly(self, body):
        """Bodies are raw bytes, empty or binary."""
        req = parse_request(build_frame(method=b"POST", body=body))

        assert bytes(req.body) == body
        assert req.content_length == len(body)

    def test_large_body_is_a_view_of_the_frame(self):
        """A large frame's body is not copied: it is a memoryview into the frame."""
        body = bytes(range(256)) * (LARGE_FRAME // 128)
        frame = build_frame(method=b"POST", headers=[(b"Content-Length", b"%d" % len(body))],
                            body=body)

        req = parse_request(frame)

        assert isinstance(req.body, memoryview)
        assert req.body.obj is frame
        assert req.body == body

    def test_missing_host_on_http11_is_tolerated(self):
        """The proxy owns the client connection, so no Host is not an error (h11 says 400)."""
        req = parse_request(build_frame(headers=[]))

        assert req.server is None
        assert req.headers == []

    def test_expect_100_continue_is_accepted_and_kept(self):
        """Expect: 100-continue is just a header here: the body has already arrived."""
        req = parse_request(build_frame(method=b"POST", body=b"x",
                                        headers=[(b"Expect", b"100-continue")]))

        assert req.headers == [(b"expect", b"100-continue")]
        assert req.body == b"x"

    def test_extra_frame_fields_are_ignored(self):
        """A frame with more than five fields (a newer proxy) still parses."""
        frame = msgpack.packb([b"GET", b"/", b"1.1", [], b"", b"extra"], use_bin_type=False)

        assert parse_request(frame).method == "GET"

    def test_transfer_encoding_chunked_body_needs_no_content_length(self):
        """A de-chunked body (Transfer-Encoding: chunked) is taken as it is."""
        req = parse_request(build_frame(method=b"POST", body=b"abc",
                                        headers=[(b"Transfer-Encoding", b"Chunked")]))

        assert req.body == b"abc"

    def test_parse_is_stable_across_cache_hits(self):
        """The second parse of the same frame (cache hits) gives the same request."""
        frame = build_frame(headers=[(b"Host", b"a:8"), (b"Content-Type", b"text/x")])

        first, second = parse_request(frame), parse_request(frame)

        assert first.headers == second.headers == [(b"host", b"a:8"), (b"content-type", b"text/x")]
        assert first.content_type == second.content_type == b"text/x"
        assert first.headers is not second.headers


BAD = [
    pytest.param(b"not msgpack \xc1", 400, id="not-msgpack"),
    pytest.param(msgpack.packb([b"GET", b"/", b"1.1", []]), 400, id="four-fields"),
    pytest.param(msgpack.packb({b"a": 1}), 400, id="a-map"),
    pytest.param(build_frame(body=b"x") + b"\x00", 400, id="trailing-bytes"),
    pytest.param(build_frame(body=b"x" * LARGE_FRAME) + b"\x00", 400,
                 id="trailing-bytes-large-frame"),
    pytest.param(msgpack.packb([b"GET", b"/", b"1.1", [[b"X", b"x" * LARGE_FRAME]], None]), 400,
                 id="nil-body-large-frame"),
    pytest.param(build_frame(method=b"GE T"), 400, id="method-with-space"),
    pytest.param(build_frame(method=b""), 400, id="empty-method"),
    pytest.param(build_frame(uri=b"/a b"), 400, id="space-in-target"),
    pytest.param(build_frame(uri=b"/\xc3\xa9"), 400, id="non-ascii-target"),
    pytest.param(build_frame(version=b"2.0"), 505, id="version-2.0"),
    pytest.param(build_frame(version=b"HTTP/0.9"), 505, id="version-0.9"),
    pytest.param(build_frame(version=b"1.1 "), 400, id="version-garbage"),
    pytest.param(build_frame(headers=[(b"Bad Name", b"x")]), 400, id="space-in-name"),
    pytest.param(build_frame(headers=[(b"", b"x")]), 400, id="empty-name"),
    pytest.param(build_frame(headers=[(b"X", b"a\r\nb")]), 400, id="crlf-in-value"),
    pytest.param(build_frame(headers=[(b"X", b"a\x00")]), 400, id="nul-in-value"),
    pytest.param(build_frame(headers=[(b"X", b" a")]), 400, id="leading-space-in-value"),
    pytest.param(build_frame(headers=[(b"Host", b"a"), (b"Host", b"b")]), 400,
                 id="two-hosts"),
    pytest.param(build_frame(headers=[(b"Content-Length", b"x")], body=b""), 400,
                 id="content-length-not-digits"),
    pytest.param(build_frame(headers=[(b"Content-Length", b"1, 2")], body=b"x"), 400,
                 id="content-length-conflict"),
    pytest.param(build_frame(headers=[(b"Content-Length", b"5")], body=b"abc"), 400,
                 id="content-length-body-mismatch"),
    pytest.param(build_frame(headers=[(b"Transfer-Encoding", b"gzip")]), 501,
                 id="unknown-transfer-coding"),
    pytest.param(build_frame(headers=[(b"Transfer-Encoding", b"chunked")] * 2), 501,
                 id="two-transfer-encodings"),
    pytest.param(msgpack.packb([b"GET", b"/", b"1.1", [[b"a", {b"x": 1}]], b""]), 400,
                 id="map-as-header-value"),
    pytest.param(msgpack.packb([b"GET", b"/", b"1.1", [[b"a"]], b""]), 400,
                 id="header-not-a-pair"),
    pytest.param(msgpack.packb([1, b"/", b"1.1", [], b""]), 400, id="int-method"),
    pytest.param(msgpack.packb([b"GET", b"/", b"1.1", [], None]), 400, id="nil-body"),
]


@pytest.mark.parametrize("frame, status", BAD)
def test_bad_requests_are_refused_with_their_status(frame, status):
    """Each kind of bad request raises BadRequestError with the status to answer."""
    with pytest.raises(BadRequestError) as info:
        parse_request(frame)

    assert info.value.status == status
    assert info.value.reason


class TestLimits:
    def test_too_many_headers_get_431(self):
        """More header fields than max_headers is 431."""
        frame = build_frame(headers=[(b"X-%d" % i, b"v") for i in range(11)])

        with pytest.raises(BadRequestError) as info:
            parse_request(frame, HttpConfig(max_headers=10))

        assert info.value.status == 431

    def test_too_many_header_bytes_get_431(self):
        """Header names and values above max_header_size is 431."""
        frame = build_frame(headers=[(b"X-Big", b"v" * 200)])

        with pytest.raises(BadRequestError) as info:
            parse_request(frame, HttpConfig(max_header_size=100))

        assert info.value.status == 431

    def test_headers_at_the_limit_pass(self):
        """Exactly max_header_size is allowed."""
        frame = build_frame(headers=[(b"X", b"v" * 99)])

        assert parse_request(frame, HttpConfig(max_header_size=100)).headers

    @pytest.mark.parametrize("size", [100, LARGE_FRAME * 2], ids=["small-frame", "large-frame"])
    def test_oversized_body_gets_413(self, size):
        """A body above max_body_size is 413, whichever path decoded the frame."""
        frame = build_frame(method=b"POST", body=b"x" * size)

        with pytest.raises(BadRequestError) as info:
            parse_request(frame, HttpConfig(max_body_size=size - 1))

        assert info.value.status == 413

    def test_default_body_limit_is_64_mib(self):
        """The default max body size is 64 MiB."""
        assert HttpConfig().max_body_size == 64 * 1024 * 1024


class TestProxyHeaders:
    HEADERS = [
        (b"Host", b"example.com"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-For", b"10.0.0.1, 10.0.0.2"),
    ]

    def test_trusted_proxy_sets_scheme_client_and_default_port(self):
        """With proxy_headers the scheme and client come from X-Forwarded-*."""
        req = parse_request(build_frame(headers=self.HEADERS))

        assert req.scheme == "https"
        assert req.client == ("10.0.0.2", 0)
        assert req.server == ("example.com", 443)

    def test_real_ip_wins_over_forwarded_for(self):
        """X-Real-IP, set by the proxy itself, is preferred."""
        req = parse_request(build_frame(headers=[*self.HEADERS, (b"X-Real-IP", b"192.0.2.7")]))

        assert req.client == ("192.0.2.7", 0)

    def test_untrusted_proxy_headers_are_ignored(self):
        """proxy_headers=False: scheme http, no client, headers still passed on."""
        req = parse_request(build_frame(headers=self.HEADERS), HttpConfig(proxy_headers=False))

        assert (req.scheme, req.client, req.server) == ("http", None, ("example.com", 80))
        assert (b"x-forwarded-proto", b"https") in req.headers

    @pytest.mark.parametrize(
        "host, server",
        [
            pytest.param(b"h", ("h", 80), id="name"),
            pytest.param(b"h:8080", ("h", 8080), id="name-port"),
            pytest.param(b"[::1]", ("::1", 80), id="ipv6"),
            pytest.param(b"[::1]:9", ("::1", 9), id="ipv6-port"),
            pytest.param(b"h:x", ("h:x", 80), id="bad-port-kept-as-name"),
        ],
    )
    def test_server_comes_from_host(self, host, server):
        """server is (host, port) from the Host header."""
        assert parse_request(build_frame(headers=[(b"Host", host)])).server == server


class TestTornadoCookieCopies:
    """The tornado proxy's `name: value` copies of request cookies, ahead of the real headers,
    are dropped; nothing else is."""

    REAL = [(b"Host", b"example.com"), (b"Cookie", b'host=evil; x-forwarded-for=6.6.6.6; q="a b"')]
    COPIES = [(b"x-forwarded-for", b"6.6.6.6"), (b"host", b"evil"), (b"q", b"a b")]

    def test_copies_are_dropped_before_anything_reads_the_headers(self):
        """A cookie named host or x-forwarded-for does not become that header."""
        req = parse_request(build_frame(headers=self.COPIES + self.REAL, version=b"HTTP/1.1"))

        assert req.headers == [(b"host", b"example.com"), (b"cookie", self.REAL[1][1])]
        assert req.server == ("example.com", 80)
        assert req.client is None

    def test_only_the_tornado_spelling_is_touched(self):
        """Other fronts send "1.1" and no copies: a header equal to a cookie stays."""
        headers = [(b"host", b"evil"), (b"Cookie", b"host=evil")]

        req = parse_request(build_frame(headers=headers, version=b"1.1"))

        assert req.headers == [(b"host", b"evil"), (b"cookie", b"host=evil")]

    def test_the_run_stops_at_the_first_real_header(self):
        """A later header that equals a cookie is a real header."""
        headers = [(b"a", b"1"), (b"Host", b"h"), (b"b", b"2"), (b"Cookie", b"a=1; b=2")]

        req = parse_request(build_frame(headers=headers, version=b"HTTP/1.1"))

        assert req.headers == [(b"host", b"h"), (b"b", b"2"), (b"cookie", b"a=1; b=2")]

    def test_a_value_that_differs_is_not_a_copy(self):
        headers = [(b"a", b"2"), (b"Cookie", b"a=1")]

        assert parse_request(build_frame(headers=headers, version=b"HTTP/1.1")).headers[0] == (
            b"a", b"2")

    def test_copies_that_are_not_valid_headers_do_not_fail_the_request(self):
        """tornado copies cookie names with `:` and quoted values with spaces verbatim."""
        headers = [(b"a:b", b"1"), (b"s", b" x "), (b"Cookie", b'a:b=1; s=" x "')]

        req = parse_request(build_frame(headers=headers, version=b"HTTP/1.1"))

        assert req.headers == [(b"cookie", b'a:b=1; s=" x "')]

    def test_each_cookie_is_matched_once_and_cookie_never(self):
        headers = [(b"a", b"1"), (b"a", b"1"), (b"Cookie", b"a=1")]

        req = parse_request(build_frame(headers=headers, version=b"HTTP/1.1"))

        assert req.headers == [(b"a", b"1"), (b"cookie", b"a=1")]

    def test_escaped_quoted_values_are_unquoted_as_python_does(self):
        headers = [(b"e", b'x"y\n'), (b"Cookie", b'e="x\\"y\\012"')]

        assert cookie_copies(tuple(headers)) == 1

    def test_without_cookie_header_nothing_is_dropped(self):
        assert cookie_copies(((b"host", b"h"),)) == 0
