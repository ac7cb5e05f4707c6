# Strategy: a strict HTTP/1.1 client over a plain socket. h11 (as a client) parses the response
# and refuses malformed framing; the raw head bytes are kept as well, because h11 silently folds
# repeated identical Content-Length headers into one, and the suite must see every header line
# the front sent ("as a client sees them"). A read that stalls past the timeout raises
# ClientTimeout: the tornado proxy never answers some statuses.
"""A strict HTTP client for the conformance suite (h11 plus the raw head)."""

from __future__ import annotations

import socket
import subprocess
import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

FRAMING = (b"content-length", b"transfer-encoding")


class ClientTimeout(Exception):
    """No complete response within the timeout."""


class ConnectionDropped(Exception):
    """The front closed the connection before the response was complete."""


@dataclass
class Reply:
    status: int
    reason: bytes
    http_version: bytes
    raw_headers: list[tuple[bytes, bytes]]  # every header line, as sent
    body: bytes

    def header(self, name: str) -> str | None:
        """The last value of `name` (case-insensitive), as text."""
        values = self.all(name)
        return values[-1] if values else None

    def all(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.raw_headers if n.lower() == key]

    @property
    def framing(self) -> list[tuple[bytes, bytes]]:
        """The framing header lines (Content-Length, Transfer-Encoding) the front sent."""
        return [(n.lower(), v) for n, v in self.raw_headers if n.lower() in FRAMING]

    @property
    def names(self) -> set[str]:
        return {n.decode("latin-1").lower() for n, _ in self.raw_headers}


def _raw_head(data: bytes) -> list[tuple[bytes, bytes]]:
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return [(line.split(b":", 1)[0], line.split(b":", 1)[1].strip()) for line in head]


def request(url: str, method: str = "GET", target: str = "/", *,
            headers: Iterable[tuple[str, str]] = (), body: bytes | list[bytes] = b"",
            timeout: float = 30.0, version: str = "1.1", source: str | None = None) -> Reply:
    """One request on a fresh connection; a list body is sent chunked, piece by piece.

    version "1.0" writes an HTTP/1.0 request by hand (h11 sends only 1.1) and still reads the
    reply with h11.
    source: the local address to connect from (a loopback address other than 127.0.0.1 makes
    a client that no default trusts).
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conn = h11.Connection(h11.CLIENT)
    all_headers = [("Host", f"{host}:{port}"), *headers]
    if isinstance(body, list):
        all_headers.append(("Transfer-Encoding", "chunked"))
    elif body or method in ("POST", "PUT", "PATCH"):
        all_headers.append(("Content-Length", str(len(body))))
    sock = socket.create_connection((host, port), timeout=timeout,
                                    source_address=(source, 0) if source else None)
    try:
        full_target = parts.path.rstrip("/") + target
        out = conn.send(h11.Request(method=method, target=full_target, headers=all_headers))
        for piece in body if isinstance(body, list) else ([body] if body else []):
            out += conn.send(h11.Data(data=piece))
        out += conn.send(h11.EndOfMessage())
        if version == "1.0":
            assert not isinstance(body, list), "HTTP/1.0 has no chunked bodies"
            lines = [f"{method} {full_target} HTTP/1.0", *(f"{n}: {v}" for n, v in all_headers)]
            out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        sock.sendall(out)
        received = b""
        response = None
        chunks = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:  # e.g. EOF short of the declared length
                where = "before the head" if response is None else "mid-body"
                raise ConnectionDropped(f"{method} {target}: closed {where}: {exc}") from None
            if event is h11.NEED_DATA:
                try:
                    data = sock.recv(262144)
                except socket.timeout:
                    raise ClientTimeout(f"{method} {target}: no response in {timeout}s") from None
                if response is None:
                    received += data
                conn.receive_data(data)  # b"": EOF, which ends a close-delimited body
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionDropped(f"{method} {target}: closed")
        assert response is not None
        return Reply(response.status_code, bytes(response.reason), bytes(response.http_version),
                     _raw_head(received), b"".join(chunks))
    finally:
        sock.close()


NODE_CHECK = r"""
const http = require("http");
const urls = JSON.parse(process.argv[1]);
const out = {};
let left = urls.length;
for (const url of urls) {
  const req = http.get(url, {timeout: 10000}, (res) => {
    let size = 0;
    res.on("data", (d) => { size += d.length; });
    res.on("end", () => { out[url] = {status: res.statusCode, size}; if (--left === 0) done(); });
  });
  req.on("timeout", () => req.destroy(new Error("timeout")));
  req.on("error", (e) => { out[url] = {error: e.code || e.message}; if (--left === 0) done(); });
}
function done() { console.log(JSON.stringify(out)); }
"""


def node_get(urls: list[str]) -> dict[str, dict[str, object]]:
    """GET each url with Node's http client (its parser refuses a doubled Content-Length)."""
    proc = subprocess.run(["node", "-e", NODE_CHECK, json.dumps(urls)], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]
