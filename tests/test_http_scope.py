"""ASGI scope and http.request messages, and the WSGI environ, built from parsed requests."""

from __future__ import annotations

import io
import wsgiref.validate

import pytest

from cocaine_http.http import (
    BodyReader,
    FileWrapper,
    HttpConfig,
    access_log_line,
    asgi_scope,
    parse_request,
    request_messages,
    wsgi_environ,
)
from cocaine_http.http.environ import EnvironBuilder
from tests.plugins.http import build_frame

HEADERS = [
    (b"Host", b"example.com:8080"),
    (b"Content-Type", b"text/plain"),
    (b"Accept", b"a"),
    (b"Accept", b"b"),
    (b"Cookie", b"x=1"),
    (b"Cookie", b"y=2"),
    (b"X_Under", b"spoof"),
]


def _request(uri=b"/a%20b?q=1", headers=HEADERS, body=b"", **kw):
    return parse_request(build_frame(uri=uri, headers=headers, body=body, **kw))


class TestAsgiScope:
    def test_scope_fields(self):
        """The scope has every ASGI 3.0 HTTP field with the right types."""
        scope = asgi_scope(_request(version=b"HTTP/1.0"))

        assert scope["type"] == "http"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
        assert scope["http_version"] == "1.0"
        assert scope["method"] == "GET"
        assert scope["scheme"] == "http"
        assert scope["path"] == "/a b"
        assert scope["raw_path"] == b"/a%20b"
        assert scope["query_string"] == b"q=1"
        assert scope["root_path"] == ""
        assert scope["server"] == ("example.com", 8080)
        assert scope["client"] is None
        assert scope["headers"][:4] == [(b"host", b"example.com:8080"),
                                        (b"content-type", b"text/plain"),
                                        (b"accept", b"a"), (b"accept", b"b")]
        assert "state" not in scope

    def test_state_is_a_shallow_copy(self):
        """Each scope gets its own copy of the lifespan state."""
        state = {"db": object()}

        scope = asgi_scope(_request(), state=state)

        assert scope["state"] == state and scope["state"] is not state
        assert scope["state"]["db"] is state["db"]

    def test_spec_version_is_the_adapters_choice(self):
        """An adapter whose send raises OSError after disconnect may announce 2.4."""
        assert asgi_scope(_request(), spec_version="2.4")["asgi"]["spec_version"] == "2.4"

    @pytest.mark.parametrize(
        "uri, path, raw_path",
        [
            pytest.param(b"/x", "/api/x", b"/api/x", id="prefixed"),
            pytest.param(b"/api/x", "/api/x", b"/api/x", id="already-prefixed"),
            pytest.param(b"/apix", "/api/apix", b"/api/apix", id="prefix-needs-a-slash"),
        ],
    )
    def test_root_path_prefixes_path(self, uri, path, raw_path):
        """path and raw_path include root_path, as uvicorn does."""
        scope = asgi_scope(_request(uri=uri), HttpConfig(root_path="/api"))

        assert (scope["root_path"], scope["path"], scope["raw_path"]) == ("/api", path, raw_path)

    def test_small_body_is_one_message(self):
        """A body that fits one message is sent whole with more_body False."""
        messages = list(request_messages(_request(body=b"abc", method=b"POST")))

        assert messages == [{"type": "http.request", "body": b"abc", "more_body": False}]

    def test_large_body_is_split_with_more_body(self):
        """A large body comes in chunk_size pieces; only the last has more_body False."""
        body = bytes(range(256)) * 1000
        req = _request(body=body, method=b"POST")

        messages = list(request_messages(req, chunk_size=65536))

        assert [len(m["body"]) for m in messages] == [65536] * 3 + [256000 - 3 * 65536]
        assert [m["more_body"] for m in messages] == [True, True, True, False]
        assert all(type(m["body"]) is bytes for m in messages)
        assert b"".join(m["body"] for m in messages) == body

    def test_views_hand_out_memoryviews(self):
        """views=True slices the body without copying."""
        body = b"x" * 200000
        messages = list(request_messages(_request(body=body, method=b"POST"), views=True))

        assert all(isinstance(m["body"], memoryview) for m in messages)
        assert b"".join(messages_body for messages_body in (m["body"] for m in messages)) == body


class TestWsgiEnviron:
    def _environ(self, req=None, config=HttpConfig(), **kw):
        return wsgi_environ(req or _request(), config, errors=io.StringIO(), session=7,
                            app="echo", **kw)

    def test_cgi_fields(self):
        """The CGI variables PEP 3333 asks for, as native strings."""
        env = self._environ(_request(uri=b"/caf%C3%A9/a%20b?x=%20", body=b"hi"))

        assert env["REQUEST_METHOD"] == "GET"
        assert env["SCRIPT_NAME"] == ""
        assert env["PATH_INFO"] == "/caf\xc3\xa9/a b"  # UTF-8 bytes seen as latin-1
        assert env["QUERY_STRING"] == "x=%20"
        assert env["CONTENT_TYPE"] == "text/plain"
        assert env["CONTENT_LENGTH"] == "2"
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
        assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert "REMOTE_ADDR" not in env

    def test_headers_become_http_keys_joined(self):
        """Repeated headers join with ", " (cookies with "; "); underscores are dropped."""
        env = self._environ()

        assert env["HTTP_HOST"] == "example.com:8080"
        assert env["HTTP_ACCEPT"] == "a, b"
        assert env["HTTP_COOKIE"] == "x=1; y=2"
        assert "HTTP_X_UNDER" not in env
        assert "HTTP_CONTENT_TYPE" not in env

    def test_wsgi_keys(self):
        """wsgi.* and cocaine.* keys."""
        errors = io.StringIO()
        env = wsgi_environ(_request(body=b"a\nb\n"), errors=errors, session=7, app="echo")

        assert env["wsgi.version"] == (1, 0)
        assert env["wsgi.url_scheme"] == "http"
        assert env["wsgi.input"].read() == b"a\nb\n"
        assert env["wsgi.input_terminated"] is True
        assert env["wsgi.errors"] is errors
        assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True
        assert env["wsgi.run_once"] is False
        assert env["wsgi.file_wrapper"] is FileWrapper
        assert (env["cocaine.session"], env["cocaine.app"]) == (7, "echo")

    def test_root_path_is_script_name(self):
        """root_path becomes SCRIPT_NAME and is stripped from PATH_INFO when present."""
        config = HttpConfig(root_path="/api")

        assert self._environ(_request(uri=b"/api/x"), config)["PATH_INFO"] == "/x"
        assert self._environ(_request(uri=b"/x"), config)["PATH_INFO"] == "/x"
        assert self._environ(_request(uri=b"/x"), config)["SCRIPT_NAME"] == "/api"

    def test_trusted_proxy_fills_remote_addr_and_scheme(self):
        """X-Forwarded-* give REMOTE_ADDR and wsgi.url_scheme."""
        req = _request(headers=[(b"X-Forwarded-For", b"10.1.1.1"),
                                (b"X-Forwarded-Proto", b"https")])

        env = self._environ(req)

        assert env["REMOTE_ADDR"] == "10.1.1.1"
        assert env["wsgi.url_scheme"] == "https"
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "80")

    def test_passes_wsgiref_validator(self):
        """A validator-wrapped app accepts the environ and its input stream."""
        def app(environ, start_response):
            environ["wsgi.input"].readline()
            environ["wsgi.input"].read(100)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        env = self._environ(_request(body=b"line\nrest", method=b"POST"))
        result = wsgiref.validate.validator(app)(env, lambda status, headers, exc=None: None)

        assert list(result) == [b"ok"]
        result.close()

    def test_builder_gives_what_wsgi_environ_gives(self):
        """An adapter's EnvironBuilder and wsgi_environ agree, and each environ is a fresh
        dict: an app that mutates one does not change the next."""
        errors = io.StringIO()
        build = EnvironBuilder("/api", errors=errors, app="echo")
        req = _request(uri=b"/api/caf%C3%A9?x=1", body=b"hi")

        first = build(req, 7)
        first["HTTP_X_ADDED"] = "by the app"
        second = build(req, 8)

        expected = wsgi_environ(req, HttpConfig(root_path="/api"), errors=errors, session=8,
                                app="echo")
        for env in (second, expected):
            env.pop("wsgi.input")
        assert second == expected
        assert second["PATH_INFO"] == "/caf\xc3\xa9" and second["SCRIPT_NAME"] == "/api"
        assert "HTTP_X_ADDED" not in second

    def test_server_protocol_and_port_strings(self):
        """HTTP/1.0, a request without Host (the default server pair), SERVER_PORT a str."""
        env = self._environ(_request(version=b"HTTP/1.0", headers=[(b"Accept", b"*/*")]))

        assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "80")
        assert env["CONTENT_LENGTH"] == "0"

    def test_large_body_input_is_a_body_reader(self):
        """A large body is read through BodyReader without copying it whole."""
        body = b"line one\nline two\n" + b"x" * 100000
        env = self._environ(_request(body=body, method=b"POST"))

        stream = env["wsgi.input"]
        assert isinstance(stream, BodyReader)
        assert stream.readline() == b"line one\n"
        assert list(stream)[0] == b"line two\n"


class TestBodyReader:
    def test_reads_like_bytesio(self):
        """read, readline with limits, readlines and iteration behave as io.BytesIO does."""
        data = b"a\nbb\n\nccc"
        ours, ref = BodyReader(memoryview(data)), io.BytesIO(data)

        for call in ("readline", "read", "readline", "readline", "read", "read"):
            args = (2,) if call == "read" else ()
            assert getattr(ours, call)(*args) == getattr(ref, call)(*args)

        assert BodyReader(data).readlines() == io.BytesIO(data).readlines()
        assert BodyReader(data).readline(1) == b"a"
        assert list(BodyReader(data)) == list(io.BytesIO(data))
        assert BodyReader(data).readlines(3) == [b"a\n", b"bb\n"]


class TestFileWrapper:
    def test_iterates_blocks_and_closes(self):
        """FileWrapper yields blksize blocks and forwards close()."""
        stream = io.BytesIO(b"abcdefg")
        wrapper = FileWrapper(stream, 3)

        assert list(wrapper) == [b"abc", b"def", b"g"]
        wrapper.close()
        assert stream.closed


class TestAccessLog:
    def test_default_format(self):
        """The gunicorn-style line with the request line, status, size, referer, agent."""
        req = _request(headers=[(b"X-Real-IP", b"1.2.3.4"), (b"Referer", b"http://r"),
                                (b"User-Agent", b"curl/8")])

        line = access_log_line(req, 200, 12, started=0.0, duration=0.0125)

        assert line.startswith("1.2.3.4 - - [")
        assert line.endswith('] "GET /a%20b?q=1 HTTP/1.1" 200 12 "http://r" "curl/8" 12ms')

    def test_atoms_and_missing_request(self):
        """Every atom formats; a None request gives "-" fields; size 0 is "-" for %(b)s."""
        fmt = "%(h)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(b)s|%(B)s|%(T)s|%(D)s|%(L)s|%(x)s"

        assert access_log_line(None, 400, 0, started=0.0, duration=1.5, fmt=fmt) == (
            "-|-|-|-|-|-|400|-|0|1|1500000|1.500000|-"
        )
        line = access_log_line(_request(), 200, 5, started=0.0, duration=0.0, fmt=fmt)
        assert line.split("|")[1:6] == ["GET /a%20b?q=1 HTTP/1.1", "GET", "/a b", "q=1",
                                        "HTTP/1.1"]
