# Strategy: h11 parses requests the way RFC 9112 allows a lenient recipient to, which is more
# than a front that hands requests to other software should accept: whatever the front lets
# through, the app (or a cache or proxy behind it) may read differently. This module holds the
# rules that the front adds on top of h11, in two places that see different things:
#
# * `HeadGuard` sees the raw bytes of each request head, before h11 does, because some
#   leniencies leave no trace in what h11 returns: a bare LF as line end, obsolete line folding
#   (h11 joins the lines), a Transfer-Encoding list whose last coding is not chunked (h11 answers
#   501 where RFC 9112 §6.1 says 400), and one empty line before the request line (h11 refuses
#   it, RFC 9112 §2.2 says a server should ignore it); and Content-Length in list form or
#   repeated (h11 merges equal values, RFC 9110 §8.6 allows it; a front must not, as whatever
#   reads the request behind it may not merge).
# * `check_request` sees the parsed request (h11's Request event) and `check_trailers` its
#   trailers (the EndOfMessage event): version, target form, header and line sizes, framing
#   headers, repeated singleton fields, control characters in values, fields forbidden in
#   trailers.
#
# Each rule raises `BadRequestError` (a subclass saying which rule) with the status to answer;
# the front answers it and closes the connection. docs/proxy-parsing.md lists the rules.
"""Request checks the front applies on top of h11 (docs/proxy-parsing.md).

The front uses them like this::

    guard = HeadGuard()                    # per connection
    data = guard.feed(data)                # in data_received, before conn.receive_data(data)
    ...                                    # on h11.Request:
    check_request(r.method, r.target, list(r.headers.raw_items()), r.http_version)
    ...                                    # on h11.EndOfMessage:
    check_trailers(list(event.headers.raw_items()))
    ...                                    # after conn.start_next_cycle():
    guard.reset(conn.trailing_data[0])

Every function raises a `RequestRejected` subclass of `BadRequestError`; answer
`exc.status` and close the connection.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import BadRequestError


class RequestRejected(BadRequestError):
    """A request that h11 would accept but the front refuses (base of the rules below)."""


class BadFraming(RequestRejected):
    """The body length cannot be determined reliably (RFC 9112 §6): a smuggling risk."""


class BadLineEnding(RequestRejected):
    """A bare LF or an obsolete line fold in the request head (RFC 9112 §2.2, §5.2)."""


class BadTarget(RequestRejected):
    """A request-target in a form its method does not allow (RFC 9112 §3.2)."""


class BadHost(RequestRejected):
    """No Host in an HTTP/1.1 request, or more than one (RFC 9112 §3.2)."""


class BadFieldValue(RequestRejected):
    """A control character in a field value (RFC 9110 §5.5)."""


class RepeatedField(RequestRejected):
    """A field that admits one value sent more than once (RFC 9110 §5.3): which one the app
    would see is anybody's guess."""


class ForbiddenTrailer(RequestRejected):
    """A trailer field that must not be sent as a trailer (RFC 9110 §6.5.1)."""


class HeadTooLarge(RequestRejected):
    """The request line, a field line or the number of fields is over its limit."""


class UnsupportedVersion(RequestRejected):
    """An HTTP version other than 1.0 and 1.1 on an HTTP/1 connection (505)."""


@dataclass(frozen=True)
class HeadLimits:
    """Size limits of a request head, in bytes and fields (gunicorn's defaults).

    Attributes:
        max_request_line: length of `METHOD SP target SP HTTP/x.y` (414 past it).
        max_field_size: length of one field line with its CRLF (431 past it).
        max_fields: number of header fields (431 past it).
    """

    max_request_line: int = 4094
    max_field_size: int = 8190
    max_fields: int = 100


DEFAULT_LIMITS = HeadLimits()
#: The end of a request head, as h11 finds it (a bare LF counts, so both agree on the bytes).
_HEAD_END = re.compile(rb"\n\r?\n")
_TE_LINE = re.compile(rb"(?im)^transfer-encoding[ \t]*:([^\r\n]*)")
_CL_LINE = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$")
#: Controls other than HTAB, and DEL: not allowed in a field value (field-vchar, obs-text).
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]+")
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]")
_AUTHORITY = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+):[0-9]+")
#: RFC 9110 §6.5.1: framing, routing, request modifiers, authentication and content metadata.
FORBIDDEN_TRAILERS = frozenset({
    b"content-length", b"transfer-encoding", b"trailer", b"host", b"te", b"connection",
    b"keep-alive", b"upgrade", b"expect", b"range", b"if-match", b"if-none-match",
    b"if-modified-since", b"if-unmodified-since", b"if-range", b"max-forwards",
    b"cache-control", b"authorization", b"proxy-authorization", b"cookie", b"content-type",
    b"content-encoding", b"content-range",
})


def check_request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                  http_version: bytes, *, limits: HeadLimits = DEFAULT_LIMITS) -> None:
    """Refuse a request h11 parsed but the front does not serve.

    Args:
        method, target, http_version: as in h11's Request event (`b"1.1"`).
        headers: the raw (name, value) pairs in order, names as sent.
        limits: the size limits to hold the head to.

    Raises:
        RequestRejected: a subclass naming the rule broken, with the status to answer.
    """
    if http_version not in (b"1.1", b"1.0"):
        raise UnsupportedVersion(505, f"HTTP/{http_version.decode('latin-1')} not supported")
    if len(method) + len(target) + 10 > limits.max_request_line:
        raise HeadTooLarge(414, "request line too long")
    if len(headers) > limits.max_fields:
        raise HeadTooLarge(431, "too many header fields")
    _check_target(method, target)
    hosts = lengths = codings = types = 0
    for name, value in headers:
        if len(name) + len(value) + 4 > limits.max_field_size:  # `name: value` CRLF
            raise HeadTooLarge(431, "header field too large")
        lowered = name.lower()
        if lowered == b"host":
            hosts += 1
        elif lowered == b"content-length":
            lengths += 1
            if not _DIGITS.fullmatch(value):
                raise BadFraming(400, "Content-Length must be one decimal number")
        elif lowered == b"transfer-encoding":
            codings += 1
        elif lowered == b"content-type":
            types += 1
    if headers and _CTL.search(b" ".join(value for _, value in headers)):
        raise BadFieldValue(400, "control character in a header value")
    if hosts > 1 or (hosts == 0 and http_version == b"1.1"):
        raise BadHost(400, "an HTTP/1.1 request needs exactly one Host" if hosts == 0
                      else "more than one Host header")
    if types > 1:
        raise RepeatedField(400, "more than one Content-Type header")
    if lengths > 1:
        raise BadFraming(400, "more than one Content-Length header")
    if codings and lengths:
        raise BadFraming(400, "both Transfer-Encoding and Content-Length")
    if codings and http_version == b"1.0":
        raise BadFraming(400, "Transfer-Encoding in an HTTP/1.0 request")


def _check_target(method: bytes, target: bytes) -> None:
    """RFC 9112 §3.2: origin-form or absolute-form; authority-form only for CONNECT and
    asterisk-form only for OPTIONS."""
    if method == b"CONNECT":
        if not _AUTHORITY.fullmatch(target):
            raise BadTarget(400, "CONNECT needs an authority-form target (host:port)")
        return
    if target.startswith(b"/"):
        return
    if target == b"*":
        if method != b"OPTIONS":
            raise BadTarget(400, "the asterisk-form target is for OPTIONS only")
        return
    if not _ABSOLUTE.match(target):
        raise BadTarget(400, "the request target must start with / or be an absolute URI")


def check_trailers(trailers: Sequence[tuple[bytes, bytes]]) -> None:
    """Refuse a chunked body whose trailer section carries a field that trailers must not
    (RFC 9110 §6.5.1), or a control character in a trailer value."""
    for name, value in trailers:
        if name.lower() in FORBIDDEN_TRAILERS:
            raise ForbiddenTrailer(400, f"{name.decode('latin-1')} is not allowed in trailers")
        if _CTL.search(value):
            raise BadFieldValue(400, "control character in a trailer value")


def check_raw_head(head: bytes) -> None:
    """The checks that need a request head's bytes (request line through the empty line)."""
    if head.count(b"\n") != head.count(b"\r\n"):
        raise BadLineEnding(400, "bare LF in the request head")
    if b"\n " in head or b"\n\t" in head:
        raise BadLineEnding(400, "obsolete line folding in the request head")
    lengths = _CL_LINE.findall(head)
    if len(lengths) > 1 or (lengths and not _DIGITS.fullmatch(lengths[0])):
        raise BadFraming(400, "Content-Length must be one header with one decimal number")
    lines = _TE_LINE.findall(head)
    if lines:
        codings = [c.strip().lower() for c in b",".join(lines).split(b",") if c.strip()]
        if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
            raise BadFraming(400, "chunked must be the final transfer coding, once")


class HeadGuard:
    """Watches the raw bytes of each request head of one connection on their way to h11.

    It keeps the bytes of the current head (bounded by `max_head`; past it h11 refuses the
    head itself) and checks them with `check_raw_head` once the empty line that ends the head
    has arrived. Bytes after the head (the body, the next request) are not looked at until the
    front starts the next cycle with `reset`.
    """

    def __init__(self, max_head: int = 16 * 1024) -> None:
        self.max_head = max_head
        self._head = bytearray()
        self._done = False
        self._may_skip = True

    def reset(self, pending: bytes = b"") -> None:
        """Start on the next request head; `pending` is what h11 already holds of it
        (`conn.trailing_data[0]`)."""
        self._head = bytearray()
        self._done = False
        self._may_skip = not pending
        if pending:
            self.feed(pending)

    def feed(self, data: bytes) -> bytes:
        """Look at received bytes; return those to give h11.

        One empty line before the request line (RFC 9112 §2.2) is dropped here, as h11 would
        refuse it; it can be dropped only while h11 holds nothing of the head.

        Raises:
            RequestRejected: the head breaks a rule of `check_raw_head`.
        """
        if self._done or not data:
            return data
        if self._may_skip and not self._head:
            self._may_skip = False
            if data.startswith(b"\r\n"):
                data = data[2:]
        start = max(0, len(self._head) - 2)
        self._head += data
        end = _HEAD_END.search(self._head, start)
        if end is not None:
            self._done = True
            head, self._head = bytes(self._head[: end.end()]), bytearray()
            check_raw_head(head)
        elif len(self._head) > self.max_head:
            self._done = True
            self._head = bytearray()
        return data
