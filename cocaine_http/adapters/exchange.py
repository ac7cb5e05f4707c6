# Strategy: what an ASGI and a WSGI request/response cycle have in common lives here once. An
# `Exchange` binds itself to a raw session (its chunks gather the request frame, its end parses
# it, its failure is the adapter's business), answers a frame the sans-IO parser refuses with
# the matching 4xx/5xx, starts the access-log clock and writes the line at the end. The ASGI
# and WSGI `_Cycle` classes subclass it and add only what differs: running a coroutine on the
# loop, or a blocking call on a pool thread.
"""The request/response cycle both HTTP adapters share: request frame, bad request, access log."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from time import perf_counter
from typing import Any

from ..config import Config
from ..errors import BadRequestError
from ..http import HttpConfig, Payload, Request, error_response, parse_request
from .accesslog import AccessLog

log = logging.getLogger("cocaine_http.http")

#: Largest body per http.request message. A body that arrived as bytes (a frame up to
#: http.request.LARGE_FRAME) goes as it is, in one message; a larger one is a view into the
#: frame and goes in slices of this size, each copied to bytes as the app asks for it. Small
#: slices come from reused heap memory: one 1 MiB copy per request cost about 400 µs more
#: (fresh pages from the kernel each time) than 16 slices of 64 KiB.
REQUEST_PIECE = 64 * 1024
#: Session error code for an app failure after the response head went out.
APP_ERROR = 1

_NO_PARTS: list[bytes] = []


class SessionGoneError(ConnectionResetError):
    """send() or a WSGI write after the session ended or failed (ASGI asks for an OSError
    subclass, and a WSGI app's thread stops producing on it)."""


def http_config(config: Config) -> HttpConfig:
    """The sans-IO core's limits and options, from the worker's Config."""
    return HttpConfig(
        max_body_size=config.max_body_size,
        max_header_size=config.max_header_size,
        max_headers=config.max_headers,
        root_path=config.root_path,
        proxy_headers=config.proxy_headers,
        body_chunk_size=REQUEST_PIECE,
    )


def write_last(session: Any, payloads: Sequence[Payload]) -> None:
    """The last chunks of a response and its end, as one write."""
    session.write_chunks(payloads, end=True)


class Exchange:
    """One request/response on one raw session: the part both adapters share.

    Subclasses define `on_end()` (the request is complete: call `read_request()` first) and
    `on_fail(code, message)`; the adapter they are made by has `http` (HttpConfig),
    `raw_body` (bool) and `access` (AccessLog).
    """

    __slots__ = ("adapter", "session", "parts", "request", "started")

    def __init__(self, adapter: Any, session: Any) -> None:
        self.adapter = adapter
        self.session = session
        self.parts: list[bytes] = []
        self.request: Request | None = None
        self.started = 0.0
        session.on_chunk = self.parts.append
        session.on_end = self.on_end
        session.on_fail = self.on_fail

    def on_end(self) -> None:
        raise NotImplementedError

    def on_fail(self, code: int, message: str) -> None:
        raise NotImplementedError

    def read_request(self) -> Request | None:
        """The request frame, parsed; None when it was refused (the session is answered)."""
        adapter = self.adapter
        if adapter.access.enabled:
            self.started = perf_counter()
        parts = self.parts
        frame = parts[0] if len(parts) == 1 else b"".join(parts)
        self.parts = _NO_PARTS
        try:
            request = self.request = parse_request(frame, adapter.http)
        except BadRequestError as exc:
            log.warning("bad request on session %s: %s", self.session.id, exc)
            self.reply_bad_request(exc)
            return None
        return request

    def reply_bad_request(self, exc: BadRequestError) -> None:
        """Answer a refused request frame with its status and reason, as plain text."""
        write_last(self.session, error_response(exc.status, exc.reason,
                                                raw_body=self.adapter.raw_body))
        self.log_access(exc.status, 0)

    def log_access(self, status: int, size: int) -> None:
        """The access-log line of this exchange (when the log is on)."""
        access: AccessLog = self.adapter.access
        if access.enabled:
            access.log(self.request, status, size, self.started)
