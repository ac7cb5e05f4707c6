"""The C copy of the WSGI environ builder (csrc/environ.c) against its Python reference,
`EnvironBuilder._build`: the same environ for every request it accepts, None for the rest, the
everyday requests on the C path, and no crash or leak on anything."""

from __future__ import annotations

import importlib
import io
import sys
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from cocaine_http.errors import BadRequestError
from cocaine_http.http import environ as env_module
from cocaine_http.http import parse_request
from cocaine_http.http.environ import EnvironBuilder
from tests.plugins.http import build_frame

#: Imported directly, not through codec.native(): the copy is checked in the pure-Python run too.
_c = importlib.import_module("cocaine_http.http._cenviron")

NAMES = [b"Host", b"Accept", b"Cookie", b"Content-Type", b"Content-Length", b"X_Under",
         b"User-Agent", b"X-Forwarded-For", b"X-Real-IP", b"Accept-Encoding"]
#: Header names as a client may send them: tokens (RFC 9110 §5.6.2), any case.
TOKEN = "!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.one_of(st.sampled_from(NAMES),
                  st.text(TOKEN, min_size=1, max_size=12).map(str.encode))
values = st.binary(max_size=30).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b"")
                                    .replace(b"\x00", b"").strip(b" \t"))
hosts = st.sampled_from([b"example.com", b"example.com:8080", b"[::1]:81", b"127.0.0.1", b"h:x"])
targets = st.sampled_from([b"/", b"/a/b?x=1&y=2", b"/caf\xc3\xa9", b"/%41b", b"/?q", b"",
                           b"http://h.example/p?q=1", b"/\xff"])
requests = st.builds(
    lambda target, host, headers, body, method, version: (target, host, headers, body, method,
                                                         version),
    targets, st.one_of(st.none(), hosts), st.lists(st.tuples(names, values), max_size=8),
    st.sampled_from([b"", b"x", b"body" * 300]), st.sampled_from([b"GET", b"POST", b"HEAD"]),
    st.sampled_from([b"1.1", b"1.0", b"HTTP/1.1"]))


def _parsed(target, host, headers, body, method, version):
    if host is not None:
        headers = [(b"Host", host), *headers]
    try:
        return parse_request(build_frame(method=method, uri=target, version=version,
                                         headers=headers, body=body))
    except BadRequestError:
        return None


def _comparable(environ: dict[str, Any]) -> dict[str, Any]:
    """The environ with wsgi.input replaced by what it reads (each build makes its own)."""
    out = dict(environ)
    stream = out.pop("wsgi.input")
    out["wsgi.input"] = (type(stream).__name__, stream.read())
    return out


@settings(max_examples=300, deadline=None)
@given(requests, st.sampled_from(["", "/api"]))
def test_c_gives_the_reference_environ_or_declines(fields, root):
    """Where C builds an environ it is the Python builder's (same keys, values and order);
    before the builder learned the request's Host C declines, after it accepts every request
    without a root path or a '%' in its path."""
    request = _parsed(*fields)
    if request is None:
        return
    build = EnvironBuilder(root, errors=io.StringIO(), app="app")
    env_module._keys.clear()
    env_module._servers.clear()
    args = (build.template, request, 7, build.root, env_module._servers, env_module._keys)
    assert _c.environ(*args) is None
    expected = _comparable(build._build(request, 7))
    got = _c.environ(*args)
    if root or b"%" in request.raw_path:
        assert got is None
        return
    assert got is not None
    assert list(_comparable(got).items()) == list(expected.items())


def test_everyday_request_takes_the_c_path(monkeypatch):
    """A browser-like request is built by C once its names are known: the Python builder is
    not called for it (under COCAINE_HTTP_PUREPYTHON=1 it is, and C is not loaded)."""
    headers = [(b"Host", b"example.com"), (b"User-Agent", b"curl/8"), (b"Accept", b"*/*"),
               (b"Cookie", b"a=1"), (b"Cookie", b"b=2"), (b"Accept", b"text/html")]
    request = parse_request(build_frame(uri=b"/p?q=1", headers=headers, body=b"data"))
    build = EnvironBuilder("", errors=io.StringIO(), app="app")
    first = build(request, 3)
    calls = []
    monkeypatch.setattr(EnvironBuilder, "_build", lambda *a: calls.append(a) or {})
    second = build(request, 3)
    if env_module._c_environ is None:
        assert len(calls) == 1
        return
    assert calls == []
    assert second["HTTP_COOKIE"] == "a=1; b=2" and second["HTTP_ACCEPT"] == "*/*, text/html"
    assert _comparable(second) == _comparable(first)


class _Fake:
    """A request-shaped object with one field wrong."""

    def __init__(self, **changes: Any) -> None:
        fields = dict(raw_path=b"/", server=None, method="GET", query_string=b"",
                      http_version="1.1", body=b"", scheme="http", client=None, headers=[])
        fields.update(changes)
        self.__dict__.update(fields)


@pytest.mark.parametrize("request_", [
    _Fake(raw_path="/"), _Fake(body=memoryview(b"x")), _Fake(method=b"GET"),
    _Fake(http_version="2"), _Fake(headers=[(b"host", "x")]), _Fake(headers=((b"a", b"b"),)),
    _Fake(headers=[[b"host", b"x"]]), _Fake(client=["1.2.3.4", 0]), _Fake(client=()),
    _Fake(headers=[(b"never-seen", b"v")]), _Fake(server=("new", 1)), object(), None,
])
def test_odd_requests_decline(request_):
    """Requests of other shapes or types are declined, never a crash."""
    servers: dict[Any, tuple[str, str]] = {None: ("127.0.0.1", "80")}
    assert _c.environ({}, request_, 1, "", servers, {}) is None


@pytest.mark.parametrize("args", [
    ([], _Fake(), 1, "", {}, {}), ({}, _Fake(), 1, None, {}, {}), ({}, _Fake(), 1, "", [], {}),
    ({}, _Fake(), 1, "", {None: ("h", "1")}, []), ({}, _Fake(), 1, "", {None: "h"}, {}),
])
def test_odd_arguments_decline(args):
    assert _c.environ(*args) is None


def test_wrong_argument_count_raises():
    with pytest.raises(TypeError):
        _c.environ({}, _Fake())


def test_no_leak():
    """A hundred thousand builds, joined values, dropped names and declines among them, leave
    no objects behind."""
    keys = {b"host": "HTTP_HOST", b"cookie": "HTTP_COOKIE", b"x_y": None}
    servers = {("h", 80): ("h", "80")}
    good = _Fake(headers=[(b"host", b"h"), (b"cookie", b"1"), (b"cookie", b"2"), (b"x_y", b"z")],
                 server=("h", 80), body=b"abc", client=("1.2.3.4", 0), query_string=b"q=1")
    declined = _Fake(headers=[(b"other", b"v")], server=("h", 80))

    def run(n: int) -> None:
        for _ in range(n):
            _c.environ({"k": 1}, good, 1, "", servers, keys)
            _c.environ({"k": 1}, declined, 1, "", servers, keys)

    run(1000)
    before = sys.getallocatedblocks()
    run(100_000)
    assert sys.getallocatedblocks() - before < 100
