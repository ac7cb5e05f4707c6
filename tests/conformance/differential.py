# Strategy: one table of requests (CASES), each sent to the same app behind the real tornado
# proxy and under `cocaine-http dev`; `compare` reduces both replies to what must be equal
# (status, headers as the client received them, body) after removing, with an assertion each,
# exactly the differences docs/dev-runtime.md lists (DIFFERENCES, keyed by the ids used there).
# Whatever is left must be identical, so a new, undocumented difference fails the case.
"""The differential cases and the comparison of a real and a dev reply."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.conformance.client import Reply

#: Deliberate differences, by the id docs/dev-runtime.md gives each ("Differences from the real
#: runtime behind the tornado proxy"). test_differences_are_documented keeps the two in step.
DIFFERENCES = {
    "powered-by": "the dev front adds X-Powered-By: Cocaine; the tornado proxy does not",
    "server-date": "the dev front adds Server and Date when the app sends none; the tornado "
                   "proxy adds neither",
    "framing": "tornado buffers and sends Content-Length; the dev front streams chunked",
    "no-body-length": "tornado sends Content-Length: 0 on 204/304 and HEAD replies",
    "error-after-head": "an app failing after its head: tornado answers 502, dev drops the "
                        "connection after the partial body",
    "unknown-status": "tornado never answers a status missing from Python 2 httplib",
    "http10-close-delimited": "to an HTTP/1.0 client tornado sends Content-Length, the dev "
                              "front no framing header and closes the connection",
    "header-order": "tornado hands the app the request headers in its own order and "
                    "capitalization",
}

MIB = 1024 * 1024


def _blob(size: int) -> bytes:
    seed = hashlib.sha256(b"conformance").digest()
    return (seed * (size // len(seed) + 1))[:size]


def _multipart() -> tuple[list[tuple[str, str]], bytes]:
    boundary = "conformanceboundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.bin\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + _blob(300_000) + f"\r\n--{boundary}--\r\n".encode()
    return [("Content-Type", f"multipart/form-data; boundary={boundary}")], body


@dataclass
class Case:
    id: str
    app: str
    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | list[bytes] = b""
    #: regexes whose matches are masked in bodies and header values (random tokens, times)
    masks: tuple[str, ...] = ()
    #: the documented differences this case shows besides powered-by and framing
    expect: tuple[str, ...] = ()


_form_headers, _form_body = _multipart()
_TIME = r"\d\d:\d\d:\d\d GMT"
_CSRF = (r"[A-Za-z0-9]{32,64}", _TIME)
_SESSION = (r"session=[^;]+",)

CASES = [
    Case("flask-index", "flask", "GET", "/"),
    Case("flask-json-query", "flask", "GET", "/json?a=1&b=%20x&a=2&empty="),
    Case("flask-json-post", "flask", "POST", "/json?x=y", [("Content-Type", "application/json")],
         b'{"k": [1, 2, "\\u00e9"]}'),
    Case("flask-form-upload", "flask", "POST", "/form", _form_headers, _form_body),
    Case("flask-session-cookie", "flask", "GET", "/session", [("Cookie", "flavour=mint")],
         masks=_SESSION),
    Case("flask-redirect", "flask", "GET", "/redirect"),
    Case("flask-stream", "flask", "GET", "/stream?n=200"),
    Case("flask-download-3mib", "flask", "GET", f"/download?size={3 * MIB}"),
    Case("flask-upload-3mib", "flask", "POST", "/upload", body=_blob(3 * MIB)),
    Case("flask-upload-chunked", "flask", "POST", "/upload",
         body=[_blob(70_000), b"", _blob(1000), _blob(200_000)]),
    Case("flask-not-found", "flask", "GET", "/nope?x=1"),
    Case("flask-method-not-allowed", "flask", "PUT", "/json", body=b"x"),
    Case("flask-head", "flask", "HEAD", "/", expect=("no-body-length",)),
    Case("flask-options", "flask", "OPTIONS", "/json"),
    Case("djwsgi-index", "djwsgi", "GET", "/"),
    Case("djwsgi-item", "djwsgi", "GET", "/api/items/42/?q=caf%C3%A9"),
    Case("djwsgi-item-delete", "djwsgi", "DELETE", "/api/items/7/"),
    Case("djwsgi-form-get", "djwsgi", "GET", "/form/", masks=_CSRF),
    Case("djwsgi-form-no-csrf", "djwsgi", "POST", "/form/",
         [("Content-Type", "application/x-www-form-urlencoded")], b"name=a&message=b"),
    Case("djwsgi-admin-redirect", "djwsgi", "GET", "/admin/", masks=(_TIME,)),
    Case("djwsgi-stream", "djwsgi", "GET", "/stream/?n=100"),
    Case("djwsgi-file", "djwsgi", "GET", "/file/"),
    Case("djwsgi-not-found", "djwsgi", "GET", "/missing/"),
    Case("djasgi-index", "djasgi", "GET", "/"),
    Case("djasgi-item", "djasgi", "GET", "/api/items/42/?q=caf%C3%A9"),
    Case("djasgi-form-get", "djasgi", "GET", "/form/", masks=_CSRF),
    Case("djasgi-form-no-csrf", "djasgi", "POST", "/form/",
         [("Content-Type", "application/x-www-form-urlencoded")], b"name=a&message=b"),
    Case("djasgi-admin-redirect", "djasgi", "GET", "/admin/", masks=(_TIME,)),
    Case("djasgi-stream", "djasgi", "GET", "/stream/?n=100"),
    Case("djasgi-file", "djasgi", "GET", "/file/"),
    Case("djasgi-head", "djasgi", "HEAD", "/", expect=("no-body-length",)),
    Case("fastapi-root", "fastapi", "GET", "/"),
    Case("fastapi-item", "fastapi", "GET", "/items/5?q=x&limit=3"),
    Case("fastapi-echo", "fastapi", "POST", "/echo", [("Content-Type", "application/json")],
         b'{"a": 1}'),
    Case("fastapi-stream", "fastapi", "GET", "/stream?n=50"),
    Case("fastapi-not-found", "fastapi", "GET", "/nope"),
    Case("fastapi-method-not-allowed", "fastapi", "DELETE", "/"),
    Case("rawasgi-echo", "rawasgi", "PATCH", "/echo?x=1&y=%2F",
         [("X-Custom", "v1"), ("Accept", "*/*")], b"patch-body",
         expect=("header-order",)),
    Case("rawasgi-echo-cookies", "rawasgi", "GET", "/echo",
         [("Cookie", 'host=evil.example; x-forwarded-for=6.6.6.6; plain=1; bare; a:b=2; '
                     'q="x y"')],
         expect=("header-order",)),
    Case("rawasgi-created", "rawasgi", "POST", "/status/201", body=b"x"),
    Case("rawasgi-no-content", "rawasgi", "DELETE", "/status/204", expect=("no-body-length",)),
    Case("rawasgi-not-modified", "rawasgi", "GET", "/status/304", expect=("no-body-length",)),
    Case("rawasgi-unavailable", "rawasgi", "GET", "/status/503"),
    Case("rawasgi-stream", "rawasgi", "GET", "/stream?n=300"),
    Case("rawasgi-big-2mib", "rawasgi", "GET", f"/big?size={2 * MIB}"),
    Case("rawasgi-hop-by-hop", "rawasgi", "GET", "/hop"),
    Case("rawasgi-set-cookies", "rawasgi", "GET", "/cookies"),
    Case("rawasgi-redirect", "rawasgi", "GET", "/redirect"),
    Case("rawasgi-fail-before-head", "rawasgi", "GET", "/fail-before"),
    Case("rawasgi-not-found", "rawasgi", "GET", "/nowhere"),
    Case("rawwsgi-raise-before-head", "rawwsgi", "GET", "/raise"),
    Case("rawwsgi-write-callable", "rawwsgi", "GET", "/write"),
    Case("rawwsgi-generator", "rawwsgi", "GET", "/generator?n=500"),
    Case("rawwsgi-framing-and-hop-by-hop", "rawwsgi", "GET", "/framing"),
    Case("rawwsgi-empty", "rawwsgi", "POST", "/empty", body=b"ignored"),
    Case("rawwsgi-head-generator", "rawwsgi", "HEAD", "/generator", expect=("no-body-length",)),
]


@dataclass
class View:
    """What must match between fronts."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _mask(text: str, masks: tuple[str, ...]) -> str:
    for pattern in masks:
        text = re.sub(pattern, "<masked>", text)
    return text


def _ports(text: str, real_port: int, dev_port: int) -> str:
    return text.replace(f":{real_port}", ":<port>").replace(f":{dev_port}", ":<port>")


NO_BODY = (204, 304)


def view(reply: Reply, case: Case, front: str, head: bool, fix: Callable[[str], str]) -> View:
    """The reply with the documented differences asserted and taken out."""
    names = [n.lower() for n, _ in reply.raw_headers]
    framing = reply.framing
    no_body = head or reply.status in NO_BODY
    if front == "dev":
        # powered-by: exactly one, added by the front.
        assert reply.all("x-powered-by") == ["Cocaine"], reply.raw_headers
        # server-date: exactly one of each, added by the front (no example app sends them).
        assert len(reply.all("server")) == 1 and len(reply.all("date")) == 1, reply.raw_headers
        # framing: the dev front streams; no-body replies carry no length (h11 adds chunked to
        # HEAD replies as it would to the GET).
        if reply.status in NO_BODY:
            assert framing == [], framing
        else:
            assert framing == [(b"transfer-encoding", b"chunked")], framing
    else:
        assert "x-powered-by" not in names, reply.raw_headers
        expected = b"0" if no_body else str(len(reply.body)).encode()
        assert framing == [(b"content-length", expected)], framing
    headers = [(n.decode("latin-1").lower(), fix(v.decode("latin-1")))
               for n, v in reply.raw_headers
               if n.lower() not in (b"x-powered-by", b"content-length", b"transfer-encoding",
                                    b"server", b"date")]
    # Werkzeug builds Allow from a set of str, so its order follows each process's hash seed.
    headers = [(n, ", ".join(sorted(v.split(", "))) if n == "allow" else v) for n, v in headers]
    body = fix(reply.body.decode("latin-1")).encode("latin-1")
    return View(reply.status, sorted(headers), body)


def app_headers(body: bytes) -> list[tuple[str, str]]:
    """rawasgi /echo's record of the request headers, in a front-independent form
    (header-order: tornado reorders and recapitalizes them)."""
    import json

    seen = json.loads(body)
    return sorted((n.lower(), v) for n, v in seen["headers"])
