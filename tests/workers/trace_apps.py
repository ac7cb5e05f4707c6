"""Apps that answer with the trace their request carried (`cocaine.trace`, v0.12): JSON
`{"trace": [trace_id, span_id, parent_id]}`, or `{"trace": null}` without one."""

from __future__ import annotations

import json
from typing import Any


def _body(trace: Any) -> bytes:
    value = None if trace is None else [trace.trace_id, trace.span_id, trace.parent_id]
    return json.dumps({"trace": value, "tuple": trace is not None and list(trace) == value}
                      ).encode()


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = _body(scope.get("extensions", {}).get("cocaine.trace"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = _body(environ.get("cocaine.trace"))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
