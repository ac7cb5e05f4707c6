# Strategy: gunicorn's access-log atoms, formatted by a pure function. The caller passes the
# request's wall-clock start (`started`, epoch seconds) and its `duration`; this module reads no
# clock. Only the atoms that the format string names are computed, and the %(t)s timestamp is
# formatted once per second (the previous one is remembered).
from __future__ import annotations

import datetime
import re

from cocaine_http.config import ACCESS_LOG_FORMAT as ACCESS_LOG_FORMAT
from cocaine_http.http.request import Request

_ATOM = re.compile(r"%\((\w+)\)s")
_last_second: list[object] = [None, ""]


def _timestamp(started: float) -> str:
    second = int(started)
    if _last_second[0] != second:
        when = datetime.datetime.fromtimestamp(second).astimezone()
        _last_second[:] = [second, when.strftime("[%d/%b/%Y:%H:%M:%S %z]")]
    return _last_second[1]  # type: ignore[return-value]


def _header(request: Request | None, name: bytes) -> str:
    if request is not None:
        for key, value in request.headers:
            if key == name:
                return value.decode("latin-1")
    return "-"


def access_log_line(
    request: Request | None,
    status: int,
    size: int,
    *,
    started: float,
    duration: float,
    fmt: str = ACCESS_LOG_FORMAT,
) -> str:
    """One access log line.

    Args:
        request: the request, or None when the frame could not be parsed.
        status: the status sent (500 if the app failed).
        size: body bytes sent.
        started: when the request began, seconds since the epoch.
        duration: seconds the request took.
        fmt: a gunicorn-style format: h remote address, l "-", u user "-", t time, r request
            line, m method, U path, q query, H protocol, s status, b size or "-", B size,
            f referer, a user agent, T seconds, M milliseconds, D microseconds, L seconds
            with decimals.
    """
    atoms = {name: _atom(name, request, status, size, started, duration)
             for name in _ATOM.findall(fmt)}
    return fmt % atoms


def _atom(
    name: str, request: Request | None, status: int, size: int, started: float, duration: float
) -> str:
    if name == "h":
        return request.client[0] if request is not None and request.client else "-"
    if name == "t":
        return _timestamp(started)
    if name in "rmUqH" and len(name) == 1:
        return _request_atom(name, request)
    if name == "s":
        return str(status)
    if name in ("b", "B"):
        return str(size) if size or name == "B" else "-"
    if name == "f":
        return _header(request, b"referer")
    if name == "a":
        return _header(request, b"user-agent")
    return _duration_atom(name, duration)


def _request_atom(name: str, request: Request | None) -> str:
    if request is None:
        return "-"
    if name == "r":
        target = request.target.decode("latin-1") or "/"
        return f"{request.method} {target} HTTP/{request.http_version}"
    if name == "m":
        return request.method
    if name == "U":
        return request.path
    if name == "q":
        return request.query_string.decode("latin-1")
    return "HTTP/" + request.http_version


def _duration_atom(name: str, duration: float) -> str:
    if name == "T":
        return str(int(duration))
    if name == "M":
        return str(int(duration * 1000))
    if name == "D":
        return str(int(duration * 1_000_000))
    if name == "L":
        return f"{duration:.6f}"
    return "-"  # l, u and unknown atoms
