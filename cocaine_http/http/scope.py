# Strategy: the ASGI 3.0 HTTP scope is one dict literal filled from fields the request parser
# already computed (docs/benchmarks.md: a fresh scope must cost about 2 µs, so nothing here scans
# headers or parses anything). The headers list is the request's own (it is fresh per request), and
# the body is handed out as `http.request` messages lazily, one slice at a time, so a large
# body is never copied as a whole.
#
# root_path follows uvicorn: `path` and `raw_path` include it (Starlette strips it back off for
# routing), unless the uri already starts with it (the proxy routed by headers and passed the
# full URL).
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cocaine_http.http.request import DEFAULT_CONFIG, HttpConfig, Request

ASGI_VERSION = "3.0"
#: 2.3 is what we implement unconditionally; 2.4 additionally promises that `send` raises
#: OSError once the client is gone, which only the adapter can promise.
SPEC_VERSION = "2.3"


def asgi_scope(
    request: Request,
    config: HttpConfig = DEFAULT_CONFIG,
    state: dict[str, Any] | None = None,
    spec_version: str = SPEC_VERSION,
) -> dict[str, Any]:
    """The ASGI HTTP connection scope for `request`.

    Args:
        state: the lifespan state; the scope gets a shallow copy (ASGI lifespan "state").
        spec_version: the ASGI HTTP spec version the adapter honours.
    """
    root = config.root_path
    path = request.path
    raw_path = request.raw_path
    if root and path != root and not path.startswith(root + "/"):
        path = root + path
        raw_path = root.encode("utf-8") + raw_path
    scope = {
        "type": "http",
        "asgi": {"version": ASGI_VERSION, "spec_version": spec_version},
        "http_version": request.http_version,
        "server": request.server,
        "client": request.client,
        "scheme": request.scheme,
        "method": request.method,
        "root_path": root,
        "path": path,
        "raw_path": raw_path,
        "query_string": request.query_string,
        "headers": request.headers,
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


def request_messages(
    request: Request, chunk_size: int | None = None, *, views: bool = False
) -> Iterator[dict[str, Any]]:
    """The `http.request` messages carrying the body, `more_body` set on all but the last.

    Args:
        chunk_size: largest body per message (default: the default config's body_chunk_size).
        views: hand out memoryview slices of a large body instead of bytes (no copy at all;
            only for apps known to accept bytes-like objects: the ASGI spec says bytes).
    """
    body = request.body
    size = chunk_size or DEFAULT_CONFIG.body_chunk_size
    if len(body) <= size:
        data = body if type(body) is bytes or views else bytes(body)
        return iter(({"type": "http.request", "body": data, "more_body": False},))
    return _slices(body, size, views)


def _slices(body: bytes | memoryview, size: int, views: bool) -> Iterator[dict[str, Any]]:
    view = memoryview(body)
    total = len(view)
    for start in range(0, total, size):
        part = view[start : start + size]
        yield {
            "type": "http.request",
            "body": part if views else bytes(part),
            "more_body": start + size < total,
        }
