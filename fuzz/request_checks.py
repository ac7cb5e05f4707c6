"""The checks of fuzz/fuzz_request.py, apart from its fuzzing engine: what an input means, what
must hold for it, the seeds, and the replay of inputs against the library's own builds (which
tests/test_fuzz_request_seeds.py runs in the suite)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import os
from pathlib import Path
from typing import Any

import msgpack

from cocaine_http.errors import BadRequestError
from cocaine_http.http import accesslog as formats
from cocaine_http.http import environ as environ_module
from cocaine_http.http.accesslog import RecordPrefix, record_line
from cocaine_http.http.environ import EnvironBuilder
from cocaine_http.http.request import HttpConfig, Request, parse_reference

#: Where the sanitizer builds are (made by `make fuzz`), and the library's own builds.
NATIVE = Path(os.environ.get("FUZZ_NATIVE", "build/fuzz/native"))
LIBRARY = Path(__file__).resolve().parent.parent / "cocaine_http" / "http"

#: The configurations a frame is parsed under (picked by the frame's length): the default, no
#: proxy headers with a root path, and tight limits.
CONFIGS = [
    HttpConfig(),
    HttpConfig(proxy_headers=False, root_path="/api"),
    HttpConfig(max_body_size=16, max_header_size=64, max_headers=3),
]
BUILDERS = [EnvironBuilder("", errors=io.StringIO(), app="app"),
            EnvironBuilder("/api", errors=io.StringIO(), app="app")]
PREFIX = RecordPrefix(4242, "INFO", "cocaine_http.access")
NOW = 1_764_576_000.25
#: The caches the environ copy shares with the builder, emptied when they grow past this.
CACHE_BOUND = 4096


def load(name: str, directory: Path) -> Any:
    """The extension module `name` built into `directory` (its last dotted part is the file)."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    path = directory / (name.rsplit(".", 1)[1] + suffix)
    if not path.exists():
        raise SystemExit(f"{path} is missing (`make fuzz` builds the sanitizer ones)")
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def fields(request: Request) -> list[Any]:
    """The request's slots with their types, header pairs included (b"x" == memoryview(b"x"),
    but they are not the same field)."""
    values = [getattr(request, name) for name in Request.__slots__]
    out: list[Any] = [(type(value), value) for value in values]
    out.append([(type(pair), [type(part) for part in pair]) for pair in request.headers])
    return out


def comparable(environ: dict[str, Any]) -> list[tuple[str, Any]]:
    """The environ's items in order, wsgi.input replaced by what it reads."""
    out = dict(environ)
    stream = out.pop("wsgi.input")
    out["wsgi.input"] = (type(stream).__name__, stream.read())
    return list(out.items())


class Disagreement(AssertionError):
    """A compiled copy gave another result than its Python rule."""


def frame_of(data: bytes) -> bytes:
    """The request frame an input spells (see the module docstring)."""
    if not data or not data[0] & 1:
        return data[1:]
    fields = data[1:].split(b"\x00")
    head = fields[:3] + [b"GET", b"/", b"1.1"][len(fields):]  # the fields it lacks: defaults
    rest = fields[3:]
    body = rest.pop() if len(rest) % 2 else b""
    headers = [[rest[i], rest[i + 1]] for i in range(0, len(rest), 2)]
    return msgpack.packb([*head, headers, body], use_bin_type=False)  # type: ignore[no-any-return]


def spelled(method: bytes, uri: bytes, version: bytes, headers: list[tuple[bytes, bytes]],
            body: bytes = b"") -> bytes:
    """The field-wise input (first byte odd) for a frame."""
    parts = [method, uri, version, *(part for pair in headers for part in pair)]
    return b"\x01" + b"\x00".join(parts + ([body] if body else []))


def check(data: bytes, crequest: Any, cenviron: Any, caccess: Any) -> str:
    """Check one input; what happened to its frame: "refused" (by both), "declined" (C left it
    to the reference) or "parsed" (C gave the reference's Request)."""
    frame = frame_of(data)
    config = CONFIGS[len(frame) % len(CONFIGS)]
    try:
        want: Request | None = parse_reference(frame, config)
    except BadRequestError:
        want = None
    got = crequest.parse(Request, frame, config)
    if want is None:
        if got is not None:
            raise Disagreement(f"C accepted a frame the reference refuses: {frame!r}")
        return "refused"
    if got is not None and fields(got) != fields(want):
        raise Disagreement(f"C parsed {frame!r} otherwise: {fields(got)} != {fields(want)}")
    check_environ(want, cenviron)
    check_line(want, len(frame), caccess)
    return "declined" if got is None else "parsed"


def check_environ(request: Request, cenviron: Any) -> None:
    if len(environ_module._keys) > CACHE_BOUND or len(environ_module._servers) > CACHE_BOUND:
        environ_module._keys.clear()
        environ_module._servers.clear()
    for builder in BUILDERS:
        want = comparable(builder._build(request, 7))
        got = cenviron.environ(builder.template, request, 7, builder.root,
                               environ_module._servers, environ_module._keys)
        if got is not None and comparable(got) != want:
            raise Disagreement(f"C environ differs: {comparable(got)} != {want}")


def check_line(request: Request, n: int, caccess: Any) -> None:
    status, size, duration = 100 + n % 500, n * 37, (n % 2000) / 1000
    want = record_line(PREFIX, request, status, size, NOW, duration)
    got = caccess.line(request, status, size, NOW, duration, formats._last_second,
                       PREFIX.second, PREFIX.tail)
    if got is not None and got != want:
        raise Disagreement(f"C access line differs: {got!r} != {want!r}")


def seeds() -> list[bytes]:
    """Inputs of both spellings for frames of every front (the native and dev fronts' "1.1", tornado's "HTTP/1.1" with its
    cookie copies), with proxy headers, bodies, a bad Content-Length, and odd shapes."""

    def frame(method: Any = b"GET", uri: Any = b"/", version: Any = b"1.1",
              headers: Any = ((b"Host", b"example.com"),), body: Any = b"") -> bytes:
        return msgpack.packb([method, uri, version, [list(p) for p in headers], body],
                             use_bin_type=False)

    browser = [(b"Host", b"h:8080"), (b"User-Agent", b"curl/8"), (b"Accept", b"*/*"),
               (b"Referer", b"http://r/"), (b"X-Forwarded-For", b"10.0.0.1, 10.0.0.2"),
               (b"X-Forwarded-Proto", b"https"), (b"X-Real-IP", b"10.0.0.9")]
    raw = [
        frame(),
        frame(headers=browser),
        frame(b"POST", b"/a/b?x=1&y=%20", headers=[(b"Host", b"h"), (b"Content-Length", b"5"),
                                                   (b"Content-Type", b"text/plain")],
              body=b"hello"),
        frame(b"HEAD", b"/caf%C3%A9?q", b"1.0", headers=[]),
        frame(version=b"HTTP/1.1", headers=[(b"a", b"1"), (b"Cookie", b"a=1; b=2"),
                                            (b"Host", b"h")]),
        frame(b"PUT", b"http://h/x", headers=[(b"Host", b"h"), (b"Transfer-Encoding",
                                                                 b"chunked")], body=b"xyz"),
        frame(headers=[(b"Host", b"h"), (b"Content-Length", b"9")], body=b"short"),
        frame(b"GET", b"*", b"2.0", headers=[(b"Upgrade", b"websocket")]),
        frame(headers=[(b"Host", b"[::1]:99"), (b"X-Forwarded-Host", b"o")] * 3),
        frame("GET", "/", "1.1", [("Host", "h")], b""),
        frame(body=b"x" * 70000),
    ]
    host = (b"Host", b"h")
    fieldwise = [spelled(b"GET", b"/", b"1.1", browser)] + [
        spelled(method, uri, version, headers, body)
        for method, uri, version, headers, body in [
            (b"POST", b"/p?q=%41", b"1.1", [host, (b"Content-Length", b"3")], b"abc"),
            (b"POST", b"/", b"1.1", [host, (b"Content-Length", b"3"),
                                     (b"Content-Length", b"3")], b"abc"),
            (b"GET", b"/", b"HTTP/1.1", [(b"a", b"1"), (b"Cookie", b"a=1"), host], b""),
            (b"GET", b"/", b"HTTP/1.0", [(b"Cookie", b"x=\"q\"; y"), (b"x", b"q")], b""),
            (b"OPTIONS", b"*", b"1.1", [host], b""),
            (b"GET", b"http://h:81/a?b", b"1.1", [(b"Host", b"h:81")], b""),
            (b"GET", b"?only", b"1.0", [], b""),
            (b"GET", b"/%e9%zz/%2F", b"1.1", [(b"Host", b"[::1]:8080")], b""),
            (b"GET", b"/", b"1.1", [host, (b"X-Forwarded-Proto", b"http, wss"),
                                    (b"X-Forwarded-For", b"1.2.3.4"),
                                    (b"X-Real-IP", b"5.6.7.8")], b""),
            (b"GET", b"/", b"1.1", [host, (b"X-Forwarded-Proto", b"ws")], b""),
            (b"GET", b"/", b"1.1", [(b"Host", b"h:99999"), (b"Expect", b"100-continue")], b""),
            (b"GET", b"/", b"1.1", [host, (b"Connection", b"Upgrade"),
                                    (b"Upgrade", b"websocket")], b""),
            (b"PATCH", b"/", b"1.1", [host, (b"Transfer-Encoding", b"chunked"),
                                      (b"Content-Type", b"application/json")], b"{}"),
            (b"GET", b"/", b"1.1", [host, (b"Referer", b""), (b"User-Agent", b"\xff\xfe")],
             b""),
            (b"get", b"/ x", b"1.1", [(b"Bad Name", b"v"), (b"X", b"a\r\nb")], b""),
        ]
    ]
    return [b"\x00" + data for data in raw] + fieldwise


def modules(directory: Path = NATIVE) -> tuple[Any, Any, Any]:
    """The three compiled modules from `directory`: the parser, the environ, the access line
    (bound to Request)."""
    crequest, cenviron, caccess = (load(f"cocaine_http.http.{name}", directory)
                                   for name in ("_crequest", "_cenviron", "_caccess"))
    if not caccess.bind(Request):
        raise SystemExit("the access-line module does not know Request's slots")
    return crequest, cenviron, caccess


def replay(inputs: list[bytes], built: tuple[Any, Any, Any] | None = None) -> dict[str, int]:
    """Every input through check(), with `built` (by default the library's own builds of the
    modules, no sanitizers): how many had each outcome. A disagreement raises."""
    if built is None:
        built = modules(LIBRARY)
    outcomes: dict[str, int] = {}
    for data in inputs:
        outcome = check(data, *built)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
