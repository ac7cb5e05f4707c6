"""Response state machine: payload bytes, body rules, Content-Length and header validation."""

from __future__ import annotations

from array import array

import msgpack
import pytest

from cocaine_http.errors import LocalProtocolError
from cocaine_http.http import Response, ResponseState, error_response
from cocaine_http.http.response import is_front_owned
from tests.plugins.http import decode_payloads

class Subclass(bytes):
    """A bytes subclass: sent as a view of its bytes."""


HEAD_VECTOR = bytes.fromhex("92ccc89192ac436f6e74656e742d54797065aa746578742f706c61696e")
BODY_VECTOR = bytes.fromhex("a568656c6c6f")


class TestPayloads:
    def test_head_and_body_match_protocol_vectors(self):
        """Head and body payloads are byte-identical to docs/protocol.md §11.2."""
        resp = Response()
        resp.start(200, [(b"Content-Type", b"text/plain")])

        out = resp.body(b"hello", more=False)

        assert out[0] == HEAD_VECTOR
        assert isinstance(out[1], list) and b"".join(out[1]) == BODY_VECTOR
        assert resp.state is ResponseState.DONE

    def test_body_is_not_copied_or_joined(self):
        """A v0.11 body chunk is [raw header, the very same data object]."""
        data = b"x" * 70000
        resp = Response()
        resp.start(200, [])

        out = resp.body(data, more=False)

        assert out[1][1] is data
        assert out[1][0] == b"\xdb" + len(data).to_bytes(4, "big")

    def test_raw_body_dialect_sends_bytes_as_they_are(self):
        """v0.12 body writes are the raw bytes (docs/protocol.md §6.2)."""
        resp = Response(raw_body=True)
        resp.start(200, [])

        out = resp.body(b"hello", more=False)

        assert out[1] == b"hello"

    def test_str_headers_are_latin1(self):
        """WSGI str headers stand for latin-1 bytes (PEP 3333)."""
        resp = Response()
        resp.start(200, [("X-Name", "caf\xe9")])

        (status, headers), _ = decode_payloads(resp.end())

        assert (status, headers) == (200, [[b"X-Name", b"caf\xe9"]])

    def test_many_headers_use_array16(self):
        """Sixteen or more headers still encode as msgpack would."""
        headers = [(b"x-%d" % i, b"v") for i in range(20)]
        resp = Response()
        resp.start(404, headers)

        out = resp.end()

        assert out[0] == msgpack.packb([404, [list(h) for h in headers]], use_bin_type=False)


class TestBodyRules:
    def test_empty_chunks_are_skipped(self):
        """Empty body pieces produce no chunk."""
        resp = Response()
        resp.start(200, [])

        out = resp.body(b"a") + resp.body(b"") + resp.body(b"b") + resp.end()

        assert len(out) == 3
        assert decode_payloads(out)[1] == b"ab"

    def test_head_waits_for_first_non_empty_body(self):
        """The head is held until there is body data or the end (WSGI rule)."""
        resp = Response()
        resp.start(200, [])

        assert resp.body(b"") == []
        assert not resp.head_sent
        assert len(resp.body(b"x")) == 2
        assert resp.head_sent

    def test_flush_sends_held_head(self):
        """flush() sends the head now and then nothing more."""
        resp = Response()
        resp.start(200, [])

        assert len(resp.flush()) == 1
        assert resp.flush() == []

    def test_empty_response_still_sends_head(self):
        """start + end with no body is a head alone."""
        resp = Response()
        resp.start(204, [])

        assert resp.end() == [msgpack.packb([204, []])]

    @pytest.mark.parametrize(
        "method, status",
        [
            pytest.param("HEAD", 200, id="head-request"),
            pytest.param("GET", 204, id="204"),
            pytest.param("GET", 304, id="304"),
            pytest.param("GET", 101, id="1xx"),
        ],
    )
    def test_no_body_responses_drop_the_body(self, method, status):
        """HEAD, 1xx, 204 and 304 carry no body, whatever the app writes."""
        resp = Response(method)
        resp.start(status, [(b"content-length", b"3")])

        out = resp.body(b"abc") + resp.end()

        assert len(out) == 1
        assert msgpack.unpackb(out[0])[0] == status

    def test_body_after_end_is_refused(self):
        """Nothing can be sent after the response ended."""
        resp = Response()
        resp.start(200, [])
        resp.end()

        with pytest.raises(LocalProtocolError):
            resp.body(b"x")

    def test_body_before_start_is_refused(self):
        """A body needs a head first."""
        with pytest.raises(LocalProtocolError):
            Response().body(b"x")

    @pytest.mark.parametrize("body", ["text", 5, None, memoryview(b"abcd")[::2],
                                      memoryview(b"")[::2]])
    def test_a_body_that_is_not_contiguous_bytes_is_refused_before_the_state_moves(self, body):
        """A str, an int or a strided view raises, and the held head can still become a 500."""
        resp = Response()
        resp.start(200, [])
        with pytest.raises(LocalProtocolError, match="response body must be"):
            resp.body(body, more=False)
        assert resp.state is ResponseState.HELD and resp.bytes_sent == 0
        assert msgpack.unpackb(resp.fail()[0])[0] == 500

    @pytest.mark.parametrize("body", [array("I", [1, 2]), memoryview(array("I", [1, 2])),
                                      memoryview(b"abcdefgh").cast("B", (2, 4)),
                                      Subclass(b"\x01\x00\x00\x00\x02\x00\x00\x00")])
    def test_other_bytes_like_bodies_are_counted_and_sent_in_bytes(self, body):
        """An array, a view of wider items, a 2-D view, a bytes subclass: their bytes, and
        their byte count is what Content-Length is checked against."""
        resp = Response()
        resp.start(200, [("Content-Length", "8")])
        payloads = resp.body(body, more=False)
        _, sent = decode_payloads(payloads)
        assert sent == bytes(memoryview(body).cast("B")) and resp.bytes_sent == 8

    def test_second_start_is_refused_unless_replacing(self):
        """start twice raises; replace=True swaps a held head (WSGI exc_info)."""
        resp = Response()
        resp.start(200, [])
        with pytest.raises(LocalProtocolError):
            resp.start(200, [])

        resp.start(500, [], replace=True)

        assert msgpack.unpackb(resp.end()[0])[0] == 500

    def test_replace_after_head_sent_is_refused(self):
        """Once the head went out it cannot be replaced."""
        resp = Response()
        resp.start(200, [])
        resp.flush()

        with pytest.raises(LocalProtocolError):
            resp.start(500, [], replace=True)


class TestContentLength:
    def test_matching_length_passes(self):
        """A body that matches its Content-Length goes out."""
        resp = Response()
        resp.start(200, [(b"Content-Length", b"5")])

        out = resp.body(b"hel") + resp.body(b"lo", more=False)

        assert decode_payloads(out)[1] == b"hello"

    def test_too_much_raises_at_the_offending_chunk(self):
        """Bytes beyond Content-Length raise before that chunk is returned."""
        resp = Response()
        resp.start(200, [(b"Content-Length", b"3")])
        resp.body(b"ab")

        with pytest.raises(LocalProtocolError, match="exceeds"):
            resp.body(b"cd")

        assert resp.bytes_sent == 2

    def test_too_little_raises_at_end(self):
        """A body short of its Content-Length raises at the end."""
        resp = Response()
        resp.start(200, [(b"Content-Length", b"3")])
        resp.body(b"ab")

        with pytest.raises(LocalProtocolError, match="short"):
            resp.end()

    def test_conflicting_lengths_are_refused(self):
        """Two different Content-Length headers are an error at start."""
        with pytest.raises(LocalProtocolError):
            Response().start(200, [(b"content-length", b"1"), (b"Content-Length", b"2")])


class TestFrontOwnedHeaders:
    """Framing and hop-by-hop headers never leave the worker: the front frames the body."""

    @pytest.mark.parametrize("name", [
        b"Content-Length", b"Transfer-Encoding", b"Connection", b"Keep-Alive", b"TE",
        b"Trailer", b"Upgrade", b"Proxy-Authenticate", b"proxy-connection",
    ])
    def test_dropped_from_the_head(self, name):
        value = b"5" if name.lower() == b"content-length" else b"x"
        resp = Response()
        resp.start(200, [(b"Content-Type", b"text/plain"), (name, value), (b"X-Kept", b"1")])

        (_, headers), body = decode_payloads(resp.body(b"hello", more=False))

        assert headers == [[b"Content-Type", b"text/plain"], [b"X-Kept", b"1"]]
        assert body == b"hello"

    def test_dropped_from_a_cached_head_too(self):
        """The second identical head (served from the caches) is the same, still without it."""
        pairs = [(b"Content-Length", b"2"), (b"Connection", b"close")]
        first, second = Response(), Response()
        first.start(200, list(pairs))
        second.start(200, list(pairs))

        heads = [first.body(b"ok", more=False)[0], second.body(b"ok", more=False)[0]]

        assert heads[0] == heads[1]
        assert msgpack.unpackb(heads[1]) == [200, []]

    def test_dropped_content_length_is_still_enforced(self):
        """The app's declared length is checked against its body although it is not sent."""
        resp = Response()
        resp.start(200, [(b"Content-Length", b"3")])

        with pytest.raises(LocalProtocolError, match="exceeds"):
            resp.body(b"abcd")

    @pytest.mark.parametrize("name", [b"X-Connection", b"Content-Type", b"Trailers-X", b"Tea"])
    def test_similar_names_are_kept(self, name):
        assert not is_front_owned(name)

    def test_the_rule_is_one_function(self):
        assert is_front_owned(b"PROXY-Foo") and is_front_owned(b"content-length")


class TestHeaderValidation:
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param([(b"X", b"a\r\nSet-Cookie: x")], id="crlf-value"),
            pytest.param([(b"X", b"a\nb")], id="lf-value"),
            pytest.param([(b"X", b"a\x00")], id="nul-value"),
            pytest.param([(b"Bad Name", b"x")], id="space-in-name"),
            pytest.param([(b"", b"x")], id="empty-name"),
            pytest.param([("X", "\u20ac")], id="not-latin1"),
            pytest.param([(b"Content-Length", b"-1")], id="negative-length"),
            pytest.param([(b"X",)], id="not-a-pair"),
            pytest.param([(b"X", 1)], id="int-value"),
        ],
    )
    def test_bad_headers_are_refused_before_anything_is_sent(self, headers):
        """Invalid headers raise in start(); nothing was returned to send."""
        resp = Response()

        with pytest.raises(LocalProtocolError):
            resp.start(200, headers)

        assert resp.state is ResponseState.IDLE

    @pytest.mark.parametrize("status", [99, 1000, "200", 200.0, True])
    def test_bad_status_is_refused(self, status):
        """Status must be an int from 100 to 999."""
        with pytest.raises(LocalProtocolError):
            Response().start(status, [])

    def test_list_pairs_are_accepted(self):
        """ASGI apps may send [name, value] lists."""
        resp = Response()
        resp.start(200, [[b"x", b"1"]])

        assert decode_payloads(resp.end())[0] == [200, [[b"x", b"1"]]]


class TestFailure:
    def test_failure_before_head_sends_500(self):
        """An app failing before the head was sent gets a complete 500 response."""
        resp = Response()
        resp.start(200, [])

        out = resp.fail()

        (status, headers), body = decode_payloads(out)
        assert status == 500
        assert body.startswith(b"500 Internal Server Error")
        assert resp.status == 500 and resp.done

    def test_failure_after_head_sends_nothing(self):
        """After the head, fail() returns nothing: the session gets a Cocaine error."""
        resp = Response()
        resp.start(200, [])
        resp.body(b"partial")

        assert resp.fail() == []
        assert resp.state is ResponseState.FAILED


class TestErrorResponse:
    def test_error_response_is_head_and_text_body(self):
        """error_response gives a plain-text head and body; the front frames it."""
        (status, headers), body = decode_payloads(error_response(431, "too many headers"))

        assert status == 431
        assert body == b"431 Request Header Fields Too Large: too many headers\n"
        assert headers == [[b"content-type", b"text/plain; charset=utf-8"]]

    def test_error_response_to_head_has_no_body(self):
        """A HEAD request's error response is the head alone."""
        assert len(error_response(400, head_request=True)) == 1

    def test_error_response_raw_body(self):
        """raw_body=True sends the text as is (v0.12)."""
        out = error_response(413, raw_body=True)

        assert out[1] == b"413 Content Too Large\n" or out[1].startswith(b"413 ")
