# Strategy: h11's validity rules for a request (method token, request target, header names and
# values, Content-Length and Transfer-Encoding) restated so that one request costs a few dict
# lookups instead of a regex per field.
#
# - The rules are h11's own (h11/_abnf.py, h11/_headers.py, h11/_events.py; RFC 7230 §3.2,
#   §3.3, §5.3): token = 1*tchar; target = 1*VCHAR; field-value =
#   [ field-vchar *( 1*(SP / HTAB) field-vchar ) ] where field-vchar is any octet except NUL and
#   the ASCII whitespace set. tests/test_http_oracle.py checks, with hypothesis, that this module
#   accepts and rejects exactly what h11 does.
# - A validated header *pair* is remembered: its next occurrence costs one dict lookup that
#   returns the lower-cased pair, what kind of header it is, and its size. Methods and versions
#   are remembered the same way. The caches are bounded and simply cleared when full, so unique
#   values (an attacker's or a cookie's) cost the slow path and a little memory, never more.
# - Checks on a cache miss use bytes.translate (delete every allowed octet, anything left is a
#   violation) rather than regexes: it is a single C loop with no backtracking.
from __future__ import annotations

import re

from cocaine_http.errors import BadRequestError

# Header kinds that the request builder looks at (0 = ordinary header).
HOST = 1
CONTENT_LENGTH = 2
TRANSFER_ENCODING = 3
CONTENT_TYPE = 4
X_FORWARDED_FOR = 5
X_FORWARDED_PROTO = 6
X_REAL_IP = 7
UPGRADE = 8

_KINDS = {
    b"host": HOST,
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"content-type": CONTENT_TYPE,
    b"x-forwarded-for": X_FORWARDED_FOR,
    b"x-forwarded-proto": X_FORWARDED_PROTO,
    b"x-real-ip": X_REAL_IP,
    b"upgrade": UPGRADE,
}

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VCHAR = bytes(range(0x21, 0x7F))
# Octets allowed anywhere in a field value; SP and HTAB additionally may not start or end it.
_FIELD_OCTETS = bytes(b for b in range(256) if b not in b"\x00\n\x0b\x0c\r")
_DIGITS = b"0123456789"
_VERSION_SYNTAX = re.compile(rb"(?:HTTP/)?[0-9]\.[0-9]")

CACHE_SIZE = 4096
#: Longer header values are validated every time instead of being remembered.
CACHE_VALUE_MAX = 512
#: h11 refuses Content-Length values with more digits (h11/_headers.py).
CONTENT_LENGTH_MAX_DIGITS = 20

VERSIONS: dict[bytes, str] = {
    b"1.1": "1.1",
    b"1.0": "1.0",
    b"HTTP/1.1": "1.1",
    b"HTTP/1.0": "1.0",
}
_methods: dict[bytes, str] = {}
_pairs: dict[object, tuple[tuple[bytes, bytes], int, int]] = {}


def is_token(data: bytes) -> bool:
    """RFC 7230 token: one or more tchar (method and header field names)."""
    return bool(data) and not data.translate(None, _TCHAR)


def is_target(data: bytes) -> bool:
    """h11's request-target (1*VCHAR), except that empty is valid here (the proxy strips
    `/<app>/<event>` from `/app/event`, leaving nothing)."""
    return not data.translate(None, _VCHAR)


def is_field_value(data: bytes) -> bool:
    """h11's field-value: no NUL, CR, LF, VT or FF; SP/HTAB only between other octets."""
    if data.translate(None, _FIELD_OCTETS):
        return False
    return not data or (data[0] not in (32, 9) and data[-1] not in (32, 9))


def method(raw: object) -> str:
    """The method as a str, or BadRequestError(400) unless it is a token."""
    hit: str | None = _methods.get(raw)  # type: ignore[call-overload]
    if hit is not None:
        return hit
    if type(raw) is not bytes or not is_token(raw):
        raise BadRequestError(400, f"illegal method {raw!r}")
    if len(_methods) >= 64:
        _methods.clear()
    text = _methods[raw] = raw.decode("ascii")
    return text


def version(raw: object) -> str:
    """"1.0" or "1.1" from either spelling; 505 for other versions, 400 for non-versions."""
    hit: str | None = VERSIONS.get(raw)  # type: ignore[call-overload]
    if hit is not None:
        return hit
    if type(raw) is bytes and _VERSION_SYNTAX.fullmatch(raw):
        raise BadRequestError(505, f"HTTP version {raw.decode()} is not supported")
    raise BadRequestError(400, f"illegal HTTP version {raw!r}")


def header(pair: object) -> tuple[tuple[bytes, bytes], int, int]:
    """Validate one `[name, value]` pair: ((lower_name, value), kind, size in bytes).

    Callers try `pairs_cache().get(pair)` first; this is the miss path.
    """
    if type(pair) is not tuple or len(pair) != 2:
        raise BadRequestError(400, f"malformed header entry {pair!r}")
    name, value = pair
    if type(name) is not bytes or not is_token(name):
        raise BadRequestError(400, f"illegal header name {name!r}")
    if type(value) is not bytes or not is_field_value(value):
        raise BadRequestError(400, f"illegal header value {value!r}")
    lower = name.lower()
    hit = ((lower, value), _KINDS.get(lower, 0), len(name) + len(value))
    if len(value) <= CACHE_VALUE_MAX:
        if len(_pairs) >= CACHE_SIZE:
            _pairs.clear()
        _pairs[pair] = hit
    return hit


def methods_cache() -> dict[bytes, str]:
    """The validated-method cache (bytes -> str)."""
    return _methods


def pairs_cache() -> dict[object, tuple[tuple[bytes, bytes], int, int]]:
    """The validated-pair cache (for the request builder's fast loop)."""
    return _pairs


def framing(special: list[tuple[int, bytes]]) -> int | None:
    """h11's Content-Length and Transfer-Encoding rules over the headers seen so far.

    Returns the declared Content-Length, or None when there is none or Transfer-Encoding
    (chunked, de-chunked by the proxy) overrides it. Raises BadRequestError: 400 for a bad or
    conflicting Content-Length, 501 for several Transfer-Encodings or one that is not chunked.
    """
    declared = None
    chunked = False
    for kind, value in special:
        if kind == CONTENT_LENGTH:
            length = _content_length(value)
            if declared is not None and declared != length:
                raise BadRequestError(400, "conflicting Content-Length headers")
            declared = length
        elif kind == TRANSFER_ENCODING:
            if chunked:
                raise BadRequestError(501, "multiple Transfer-Encoding headers")
            if value.lower() != b"chunked":
                raise BadRequestError(501, f"unsupported Transfer-Encoding {value!r}")
            chunked = True
    return None if chunked else declared


def _content_length(value: bytes) -> int:
    """One Content-Length value; a comma list must repeat the same digits (h11/_headers.py)."""
    lengths = {part.strip() for part in value.split(b",")}
    if len(lengths) != 1:
        raise BadRequestError(400, "conflicting Content-Length headers")
    text = lengths.pop()
    if not text or text.translate(None, _DIGITS) or len(text) > CONTENT_LENGTH_MAX_DIGITS:
        raise BadRequestError(400, f"bad Content-Length {text!r}")
    return int(text)
