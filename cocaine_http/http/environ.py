# Strategy: the PEP 3333 environ is a copy of a per-adapter template (the keys that never
# change, held by the adapter's `EnvironBuilder`) plus the request's fields, filled in one
# pass over its headers. Header names map to their CGI keys through a small cache (the same few names come
# with every request), values are decoded as latin-1 (PEP 3333 "native strings"), repeated
# headers are joined with ", " (Cookie with "; ", RFC 6265 §5.4), and names with an underscore
# are dropped, as gunicorn does, so that `X_Forwarded_For` cannot pose as `X-Forwarded-For`.
# `EnvironBuilder._build` is the rule; csrc/environ.c is a checked copy of it for the common
# request (no root path, no '%' in the path, a bytes body, header names and Host already
# learned here), which declines anything else to it.
#
# PATH_INFO is the percent-decoded raw path decoded as latin-1, the way servers hand it to WSGI
# (wsgiref, gunicorn); SCRIPT_NAME is the root path, stripped from PATH_INFO when the uri
# already starts with it. The body is already complete, so wsgi.input never blocks:
# io.BytesIO over a bytes body (no copy), BodyReader over a memoryview body (no copy).
from __future__ import annotations

from io import BytesIO
import re
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import unquote_to_bytes

from cocaine_http.codec import native
from cocaine_http.http.request import DEFAULT_CONFIG, HttpConfig, Request

_keys: dict[bytes, str | None] = {}
_NEWLINE = re.compile(rb"\n")
_NO_HOST = ("127.0.0.1", 80)


def wsgi_environ(
    request: Request,
    config: HttpConfig = DEFAULT_CONFIG,
    *,
    errors: IO[str],
    session: object = None,
    app: str | None = None,
    file_wrapper: type | None = None,
) -> dict[str, Any]:
    """The WSGI environ for `request`.

    Args:
        errors: the text stream for `wsgi.errors` (the adapter's logger stream).
        session: the Cocaine session id (`cocaine.session`).
        app: the Cocaine app name (`cocaine.app`).
        file_wrapper: `wsgi.file_wrapper` (default: FileWrapper).
    """
    key = (config.root_path, errors, app, file_wrapper)
    build = _builders.get(key)
    if build is None:
        if len(_builders) >= 16:
            _builders.clear()
        build = _builders[key] = EnvironBuilder(
            config.root_path, errors=errors, app=app, file_wrapper=file_wrapper)
    return build(request, session)


class EnvironBuilder:
    """Builds the environs of one adapter: its template (the keys that never change) made
    once, copied per request and completed from the request's fields.

    Args:
        root: the root path (SCRIPT_NAME).
        errors, app, file_wrapper: as for `wsgi_environ`.
    """

    __slots__ = ("template", "root")

    def __init__(self, root: str, *, errors: object, app: str | None = None,
                 file_wrapper: type | None = None) -> None:
        self.root = root
        self.template: dict[str, Any] = {
            "SCRIPT_NAME": root.encode("utf-8").decode("latin-1") if root else "",
            "wsgi.version": (1, 0),
            "wsgi.input_terminated": True,
            "wsgi.errors": errors,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": file_wrapper or FileWrapper,
            "cocaine.app": app,
        }

    def __call__(self, request: Request, session: object = None) -> dict[str, Any]:
        """The environ of `request`; `session` is `cocaine.session`."""
        if _c_environ is not None:
            environ = _c_environ(self.template, request, session, self.root, _servers, _keys)
            if environ is not None:
                return environ
        return self._build(request, session)

    def _build(self, request: Request, session: object) -> dict[str, Any]:
        """The environ, by the rules of the module comment (the reference of the C copy)."""
        environ = self.template.copy()
        body = request.body
        environ["PATH_INFO"] = _path_info(request.raw_path, self.root)
        server = _servers.get(request.server) or _server(request.server)
        environ["REQUEST_METHOD"] = request.method
        environ["QUERY_STRING"] = request.query_string.decode("latin-1")
        environ["SERVER_NAME"] = server[0]
        environ["SERVER_PORT"] = server[1]
        environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(request.http_version) or (
            "HTTP/" + request.http_version)
        environ["CONTENT_LENGTH"] = str(len(body)) if body else "0"
        environ["wsgi.url_scheme"] = request.scheme
        environ["wsgi.input"] = BytesIO(body) if type(body) is bytes else BodyReader(body)
        environ["cocaine.session"] = session
        if request.client is not None:
            environ["REMOTE_ADDR"] = request.client[0]
        _headers_into(environ, request.headers)
        return environ


def _headers_into(environ: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    """The request headers as the environ's CGI keys (see the module comment)."""
    keys = _keys
    for name, value in headers:
        key = keys.get(name, "")
        if key == "":
            key = _learn_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if key in environ:
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text


_native = native("cocaine_http.http._cenviron")
_c_environ: Callable[..., dict[str, Any] | None] | None = (
    None if _native is None else _native.environ)


_builders: dict[tuple[Any, ...], EnvironBuilder] = {}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
#: request.server (host, port) -> (SERVER_NAME, SERVER_PORT), the port already a string.
_servers: dict[tuple[str, int] | None, tuple[str, str]] = {}


def _server(server: tuple[str, int] | None) -> tuple[str, str]:
    name, port = server or _NO_HOST
    if len(_servers) >= 1024:
        _servers.clear()
    hit = _servers[server] = (name, str(port))
    return hit


def _path_info(raw_path: bytes, root: str) -> str:
    path = (unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path).decode("latin-1")
    if root:
        script = root.encode("utf-8").decode("latin-1")
        if path == script or path.startswith(script + "/"):
            path = path[len(script) :]
    return path


def _learn_key(name: bytes) -> str | None:
    if b"_" in name:
        key = None
    elif name == b"content-type":
        key = "CONTENT_TYPE"
    elif name == b"content-length":
        key = None  # CONTENT_LENGTH comes from the body itself
    else:
        key = "HTTP_" + name.decode("ascii").upper().replace("-", "_")
    if len(_keys) >= 1024:
        _keys.clear()
    _keys[name] = key
    return key


class BodyReader:
    """wsgi.input over a memoryview body: read, readline, readlines and iteration, no copies
    beyond the bytes each call returns."""

    __slots__ = ("_view", "_pos")

    def __init__(self, body: bytes | memoryview) -> None:
        self._view = memoryview(body)
        self._pos = 0

    def read(self, size: int | None = -1) -> bytes:
        start = self._pos
        end = len(self._view) if size is None or size < 0 else min(start + size, len(self._view))
        self._pos = end
        return bytes(self._view[start:end])

    def readline(self, size: int | None = -1) -> bytes:
        start = self._pos
        end = len(self._view)
        if size is not None and size >= 0:
            end = min(end, start + size)
        match = _NEWLINE.search(self._view, start, end)
        return self.read((match.end() if match else end) - start)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        """Nothing to release: the body belongs to the request."""


class FileWrapper:
    """wsgi.file_wrapper: iterates a file in blocks; the adapter sends each as one chunk."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data  # type: ignore[no-any-return]
        raise StopIteration
