"""The C copy of the environ's header loop (csrc/environ.c) against its Python reference,
`http.environ._headers_into`: the same environ for every header list it accepts, a decline
(environ untouched) for the rest, and the everyday requests on the C path."""

from __future__ import annotations

import importlib
import io
import sys

import pytest
from hypothesis import given, settings, strategies as st

from cocaine_http.http import environ as env_module
from cocaine_http.http import parse_request, wsgi_environ
from tests.plugins.http import build_frame

#: Imported directly, not through codec.native(): the copy is checked in the pure-Python run too.
_c = importlib.import_module("cocaine_http.http._cenviron")

NAMES = [b"host", b"accept", b"cookie", b"content-type", b"content-length", b"x_under",
         b"user-agent", b"x-forwarded-for", b"accept-encoding"]
#: Request header names as the parser leaves them: lower-case tokens (RFC 9110 §5.6.2).
TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
names = st.one_of(st.sampled_from(NAMES),
                  st.text(TOKEN, min_size=1, max_size=12).map(str.encode))
values = st.binary(max_size=40)
header_lists = st.lists(st.tuples(names, values), max_size=12)
TEMPLATE = {"SCRIPT_NAME": "", "HTTP_ACCEPT": "preset", "REQUEST_METHOD": "GET"}


def _reference(headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    environ = dict(TEMPLATE)
    env_module._headers_into(environ, headers)
    return environ


@settings(max_examples=400, deadline=None)
@given(header_lists)
def test_c_gives_the_reference_environ_or_declines(headers):
    """Where C accepts a header list its environ is the Python loop's; where it declines the
    environ is left as it was."""
    expected = _reference(headers)  # learns every name, so C can accept the list next
    environ = dict(TEMPLATE)
    assert _c.headers_into(environ, headers, env_module._keys) is True
    assert environ == expected
    env_module._keys.clear()
    untouched = dict(TEMPLATE)
    accepted = _c.headers_into(untouched, headers, env_module._keys)
    assert accepted is (not headers)  # nothing learned: C declines any header
    assert untouched == TEMPLATE


def test_everyday_request_takes_the_c_path(monkeypatch):
    """A browser-like request is served by C once its names are known: the Python loop is
    not called for it (under COCAINE_HTTP_PUREPYTHON=1 it is, and C is not loaded)."""
    headers = [(b"Host", b"example.com"), (b"User-Agent", b"curl/8"), (b"Accept", b"*/*"),
               (b"Cookie", b"a=1"), (b"Cookie", b"b=2"), (b"Accept", b"text/html")]
    request = parse_request(build_frame(uri=b"/", headers=headers))
    first = wsgi_environ(request, errors=io.StringIO())
    calls = []
    monkeypatch.setattr(env_module, "_headers_into", lambda *a: calls.append(a))
    second = wsgi_environ(request, errors=io.StringIO())
    if env_module._c_headers_into is None:
        assert len(calls) == 1
        return
    assert calls == []
    assert second["HTTP_COOKIE"] == "a=1; b=2" and second["HTTP_ACCEPT"] == "*/*, text/html"
    assert {k: v for k, v in second.items() if k.startswith("HTTP_")} == {
        k: v for k, v in first.items() if k.startswith("HTTP_")}


@pytest.mark.parametrize("args", [
    ({}, [(b"host", b"x")], None),
    ({}, [(b"host", "x")], {b"host": "HTTP_HOST"}),
    ({}, [("host", b"x")], {b"host": "HTTP_HOST"}),
    ({}, [(b"host",)], {b"host": "HTTP_HOST"}),
    ({}, [[b"host", b"x"]], {b"host": "HTTP_HOST"}),
    ({}, ((b"host", b"x"),), {b"host": "HTTP_HOST"}),
    ({}, [(b"host", b"x")], {b"host": 5}),
    ([], [(b"host", b"x")], {b"host": "HTTP_HOST"}),
])
def test_odd_arguments_decline(args):
    """Arguments of other shapes or types are declined, never a crash."""
    assert _c.headers_into(*args) is False


def test_wrong_argument_count_raises():
    with pytest.raises(TypeError):
        _c.headers_into({}, [])


def test_no_leak():
    """A hundred thousand calls, joined values and dropped names among them, leave no objects
    behind."""
    keys = {b"host": "HTTP_HOST", b"cookie": "HTTP_COOKIE", b"x_y": None}
    headers = [(b"host", b"a"), (b"cookie", b"1"), (b"cookie", b"2"), (b"x_y", b"z")]

    def run(n: int) -> None:
        for _ in range(n):
            _c.headers_into({}, headers, keys)
            _c.headers_into({}, [(b"other", b"v")], keys)

    run(1000)
    before = sys.getallocatedblocks()
    run(100_000)
    assert sys.getallocatedblocks() - before < 100
