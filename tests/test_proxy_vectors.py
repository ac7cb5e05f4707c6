"""gunicorn's request vectors, sent raw to the HTTP front (docs/proxy-parsing.md).

The vectors are the `tests/requests/{valid,invalid}/*.http` files of gunicorn's sdist, with
a `.py` file each saying what gunicorn's parser makes of them. They are fetched from PyPI
(`pip download`) into ~/.cache/cocaine-http/gunicorn-vectors on first use; nothing is vendored.

Each vector goes on its own connection to two real fronts: `cocaine-http dev` with an echo app
(which its front routes every path to), and `cocaine-http proxy` in front of that runtime's
locator (which routes `/<app>/<event>` paths, so most vectors reach no app there: a routed 404
counts as accepted, the verdict being the parser's):

* valid: every request the `.py` file lists is answered by the app (the echo header is there,
  with the method and body length gunicorn reads), except an HTTP/1.1 request without Host,
  which RFC 9112 §3.2 makes a 400.
* invalid: the front answers 4xx (or 505 for an HTTP version it does not speak) or closes the
  connection; the app never answers.

Some vectors are only valid or invalid under a gunicorn setting other than its default (a
relaxation such as `permit_obsolete_folding`, the PROXY protocol, a lowered limit); `DIFFERENT`
states what this front does with each of them, and why.
"""

from __future__ import annotations

import builtins
import os
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: The gunicorn release whose vectors (and the verdicts in DIFFERENT) this file is written against.
GUNICORN = "27.0.1"
CACHE = Path(os.environ.get("COCAINE_HTTP_VECTORS",
                            Path.home() / ".cache" / "cocaine-http" / "gunicorn-vectors"))
ROOT = Path(__file__).resolve().parent.parent
ECHO = "X-Echo"

ECHO_APP = '''
def app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Echo", "1")])
    return [("%s %d" % (environ["REQUEST_METHOD"], len(body))).encode()]
'''

#: Vectors whose verdict here differs from that of gunicorn's default parser, or that depend on
#: a gunicorn setting: what this front answers ("app", a status, or "rejected": 4xx/closed).
DIFFERENT: dict[str, tuple[str, str]] = {
    # valid only with a gunicorn relaxation that this front does not offer
    "valid/028": ("400", "space before the colon: RFC 9112 §5.1 says 400 (strip_header_spaces)"),
    "valid/031compat": ("rejected", "lower-case method and no Host (casefold_http_method)"),
    "valid/031compat2": ("rejected", "unconventional method and no Host"),
    "valid/compat_obs_fold": ("400", "obsolete line folding (permit_obsolete_folding)"),
    "valid/compat_obs_fold_huge": ("rejected", "obsolete line folding, and no Host"),
    "valid/pp_01": ("400", "PROXY protocol line: not spoken here (proxy_protocol)"),
    "valid/pp_02": ("400", "PROXY protocol line"),
    "valid/pp_04": ("400", "PROXY protocol v2 header"),
    "valid/pp_05": ("400", "PROXY protocol v2 header"),
    "valid/024": ("414", "an 8 KiB request line: over the default limit (limit_request_line)"),
    "valid/026": ("431", "an 8 KiB field: over the default limit (limit_request_field_size)"),
    "valid/099": ("rejected", "Content-Length 17914 with 8599 bytes of body: the front waits for "
                              "the rest, and the stream ends (gunicorn reads what is there)"),
    # transfer codings other than plain chunked: 501 (RFC 9112 §6.1, as h11 answers)
    "valid/025": ("501", "Transfer-Encoding: gzip, chunked"),
    "valid/025_line": ("501", "Transfer-Encoding: gzip, chunked"),
    "valid/029": ("501", "Transfer-Encoding: chunked with another coding"),
    "valid/030": ("501", "Transfer-Encoding: chunked with another coding"),
    "valid/rfc9112_smuggle_gzip_chunked_01": ("501", "Transfer-Encoding: gzip, chunked"),
    "valid/rfc9112_smuggle_te_identity_chunked_01": ("501", "Transfer-Encoding: identity, "
                                                            "chunked"),
    # invalid only under a lowered gunicorn limit: fine under this front's defaults
    "invalid/011": ("app", "three header fields (limit_request_fields=2 there)"),
    "invalid/012": ("app", "a 100-byte field (limit_request_field_size=98 there)"),
    # underscored names: gunicorn refuses them only with header_map=refuse; here they pass to
    # the app, whose adapter drops them (docs/http.md), as gunicorn's default does
    "invalid/040": ("app", "Transfer_Encoding / Content_Length names (header_map=refuse)"),
}


# -- vectors -------------------------------------------------------------------------------------


def _sdist() -> Path:
    """The unpacked gunicorn sdist in the cache, downloaded with pip on first use (unpacked
    beside and renamed into place, so that a concurrent run never sees half of it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for done in sorted(CACHE.glob(f"gunicorn-{GUNICORN}/tests/requests")):
        return done.parent.parent
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                   f"gunicorn=={GUNICORN}", "-d", tmp]
        try:  # metadata from the installed setuptools, else from an isolated build env
            subprocess.run([*command, "--no-build-isolation"], check=True, capture_output=True,
                           timeout=300)
        except subprocess.CalledProcessError:
            subprocess.run(command, check=True, capture_output=True, timeout=300)
        archive = max(Path(tmp).glob("gunicorn-*.tar.gz"))
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers()
                       if "/tests/requests/" in m.name and m.isfile()]
            try:
                tar.extractall(tmp, members=members, filter="data")
            except TypeError:  # a Python without extraction filters: members are plain files
                tar.extractall(tmp, members=members)
        unpacked = Path(tmp) / archive.name.removesuffix(".tar.gz")
        try:
            unpacked.rename(CACHE / unpacked.name)
        except OSError:  # another run got there first
            pass
    return max(p.parent.parent for p in CACHE.glob(f"gunicorn-{GUNICORN}/tests/requests"))


def decode_vector(text: bytes) -> bytes:
    """A `.http` file's bytes on the wire: newlines in the file are layout only; `\\r\\n`,
    `\\n`, `\\t`, `\\0` and `\\xHH` are escapes."""
    text = text.replace(b"\n", b"")
    escapes = {b"\\r\\n": b"\r\n", b"\\n": b"\n", b"\\t": b"\t", b"\\0": b"\0"}
    out = re.sub(rb"\\r\\n|\\n|\\t|\\0|\\x([0-9A-Fa-f]{2})",
                 lambda m: bytes([int(m.group(1), 16)]) if m.group(1) else escapes[m.group(0)],
                 text)
    assert b"\\" not in out, "an escape this reader does not know"
    return out


class _Config:
    """Stands in for gunicorn's Config in a `.py` file: records the settings it changes."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}

    def set(self, name: str, value: Any) -> None:
        self.settings[name] = value


def _stub_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                 level: int = 0) -> Any:
    if not name.startswith("gunicorn"):
        return builtins.__import__(name, globals, locals, fromlist, level)
    module = type(sys)(name)
    for attr in fromlist or ():
        setattr(module, attr, _Config if attr == "Config" else type(attr, (Exception,), {}))
    return module


def expectation(path: Path) -> tuple[Any, dict[str, Any]]:
    """What a vector's `.py` file expects (a list of request dicts, or an error class), and
    the gunicorn settings it changes, read without gunicorn installed."""
    cfg = _Config()
    scope: dict[str, Any] = {
        "__builtins__": {**vars(builtins), "__import__": _stub_import},
        "cfg": cfg, "uri": lambda raw: {"raw": raw},
    }
    exec(compile(path.read_text(), str(path), "exec"), scope)
    config = scope["cfg"] if isinstance(scope["cfg"], _Config) else cfg
    request = scope["request"]
    if isinstance(request, dict):
        request = [request]
    return request, config.settings


def _vectors() -> list[Any]:
    try:
        root = _sdist() / "tests" / "requests"
    except (subprocess.SubprocessError, OSError) as exc:  # reported by the test below
        return [pytest.param(None, None, id=f"unavailable: {exc}")]
    return [pytest.param(kind, path, id=f"{kind}/{path.stem}")
            for kind in ("valid", "invalid") for path in sorted((root / kind).glob("*.http"))]


# -- the front -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], cwd: Path, env: dict[str, str], ready: str) -> tuple[
        subprocess.Popen[str], tuple[str, int]]:
    """A cocaine-http command as a process, once it prints its `ready` line (host:port)."""
    process = subprocess.Popen([sys.executable, "-m", "cocaine_http", *args], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        match = re.search(ready + r" \S*\s*(?:on )?http://([^:]+):(\d+)", line)
        if match:
            return process, (match.group(1), int(match.group(2)))
    process.wait()
    raise AssertionError(f"{args[0]} did not start:\n" + "".join(lines))


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="module")
def fronts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, int]]]:
    """`cocaine-http dev` serving the echo app (its own front routes every path to the app),
    and `cocaine-http proxy` in front of the dev runtime's locator: both real processes."""
    where = tmp_path_factory.mktemp("vectors")
    (where / "vector_echo.py").write_text(ECHO_APP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), str(ROOT)])}
    locator = _free_port()
    dev, dev_address = _start(
        ["dev", "--port", "0", "--locator-port", str(locator), "--header-timeout", "3",
         "--keep-alive-timeout", "3", "vector_echo:app"], where, env, "Serving")
    try:
        proxy, proxy_address = _start(
            ["proxy", "--locator", f"127.0.0.1:{locator}", "--port", "0", "--header-timeout",
             "3", "--keep-alive-timeout", "3", "--no-access-log"], where, env, "Listening")
        try:
            yield {"dev": dev_address, "proxy": proxy_address}
        finally:
            _stop(proxy)
    finally:
        _stop(dev)


def exchange(address: tuple[str, int], data: bytes, want: int, timeout: float = 5.0) -> bytes:
    """Send `data`, then read until `want` responses are complete, the front closes, or it
    stays silent for a second; if it waits for more (an incomplete request), half-close and
    read what it says to the end."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        received = bytearray()
        deadline = time.monotonic() + timeout
        sock.settimeout(1.0)
        half_closed = False
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if not half_closed and not received:
                    sock.shutdown(socket.SHUT_WR)
                    half_closed = True
                    continue
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            if len(responses(bytes(received), at_eof=False)) >= want:
                break
        return bytes(received)


def responses(data: bytes, at_eof: bool = True) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """The complete responses in what the front sent: (status, headers, body), framed by
    Content-Length, chunked, or (HTTP/1.0) by the end of the stream when `at_eof`."""
    out = []
    while data.startswith(b"HTTP/"):
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(b":") for line in lines[1:])}
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = bytearray()
            while True:
                size_line, found, rest = rest.partition(b"\r\n")
                if not found:
                    return out  # incomplete
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    if not rest.startswith(b"\r\n"):  # no trailers from this front
                        return out
                    rest = rest[2:]
                    break
                if len(rest) < size + 2:
                    return out
                body += rest[:size]
                rest = rest[size + 2:]
            out.append((status, headers, bytes(body)))
            data = rest
        elif b"content-length" in headers:
            size = int(headers[b"content-length"])
            if len(rest) < size:
                break
            out.append((status, headers, rest[:size]))
            data = rest[size:]
        else:  # an HTTP/1.0 client: the body runs to the end of the connection
            if at_eof:
                out.append((status, headers, rest))
            break
    return out


# -- the test ------------------------------------------------------------------------------------


def _verdict(answers: list[tuple[int, dict[bytes, bytes], bytes]]) -> str:
    if any(ECHO.lower().encode() in headers for _, headers, _ in answers):
        return "app"
    if not answers:
        return "closed"
    return str(answers[0][0])


def _served_then(requests: list[dict[str, Any]]) -> tuple[int, str]:
    """How many of a valid vector's requests the app answers, and what comes next ("" for
    nothing, or "400" for an HTTP/1.1 request without Host, RFC 9112 §3.2). The front closes
    the connection after an HTTP/1.0 request (h11 keeps no HTTP/1.0 connection alive, which
    RFC 9112 §9.3 allows), so what follows one is not answered."""
    for count, request in enumerate(requests):
        names = {name.lower() for name, _ in request.get("headers", [])}
        version = tuple(request.get("version", (1, 1)))
        if version == (1, 1) and "host" not in names:
            return count, "400"
        if version == (1, 0):
            return count + 1, ""
    return len(requests), ""


def _routed(answers: list[tuple[int, dict[bytes, bytes], bytes]]) -> bool:
    """The proxy parsed the request and routed it: the app answered, or there is no app of
    the name its path gives (the proxy routes `/<app>/<event>`, the vectors' paths are not)."""
    return bool(answers) and (_verdict(answers) == "app" or (
        answers[0][0] == 404 and answers[0][2].startswith(b"no such app")))


@pytest.mark.parametrize("via", ["dev", "proxy"])
@pytest.mark.parametrize("kind, path", _vectors())
def test_vector(fronts: dict[str, tuple[str, int]], via: str, kind: str | None,
                path: Path | None) -> None:
    """Through the dev front every path reaches the echo app, so what it read is compared with
    gunicorn's expectation; through the proxy the verdict is compared (routed or refused)."""
    assert kind is not None and path is not None, "the gunicorn sdist could not be fetched"
    key = f"{kind}/{path.stem}"
    requests, _settings = expectation(path.with_suffix(".py"))
    count, then = _served_then(requests) if isinstance(requests, list) else (0, "")
    want = 1 if key in DIFFERENT or kind == "invalid" else count + bool(then)
    answers = responses(exchange(fronts[via], decode_vector(path.read_bytes()), want))

    if key in DIFFERENT or kind == "invalid":
        want = DIFFERENT[key][0] if key in DIFFERENT else "rejected"
        got = _verdict(answers)
        if via == "proxy" and want == "app":
            assert _routed(answers), (key, answers[:1])
        elif want == "rejected":
            assert not _routed(answers), (key, answers[:1])
            assert got == "closed" or got.startswith("4") or got == "505", (key, answers[:1])
        else:
            assert got == want, (key, answers[:1])
        return
    if via == "proxy":
        assert all(_routed([answer]) for answer in answers[:count]), (key, answers)
        assert len(answers) >= count, (key, answers)
    else:
        served = [body for _, headers, body in answers[:count]
                  if ECHO.lower().encode() in headers]
        expected = [f"{r['method']} {len(r.get('body', b''))}".encode()
                    for r in requests[:count]]
        if requests[0]["method"] == "CONNECT":  # a 2xx answer to CONNECT has no body
            expected = [b""] * count
        assert served == expected, (key, answers)
    assert [status for status, _, _ in answers[count:]] == ([int(then)] if then else []), key
