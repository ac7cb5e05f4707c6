# Strategy: gunicorn's access-log atoms, formatted by pure functions. The caller passes the
# request's wall-clock start (`started`, epoch seconds) and its `duration`; this module reads no
# clock. The default format is one f-string over the request's fields (about 1 µs); any other
# format computes only the atoms it names. Whatever depends on the second alone (the %(t)s
# timestamp, the date part of a log record's %(asctime)s) is formatted once per second and
# remembered, so each of them is a function of its second alone.
#
# The worker's stderr line (`record_line()`: the record prefix, the default line, the newline)
# has a C copy, csrc/accessline.c (`caccess`), that builds it in one call from the request's
# fields and the per-second caches kept here; it declines (None) whenever a cache is for
# another second or an input is not of the usual types, and this module formats the line. The
# functions here stay the reference: the C results are checked against them.
"""Access-log lines (gunicorn-style atoms) and the stderr record prefix, without a clock."""

from __future__ import annotations

import datetime
import re

from cocaine_http.codec import native
from cocaine_http.config import ACCESS_LOG_FORMAT as ACCESS_LOG_FORMAT
from cocaine_http.http.request import Request

#: The worker's stderr log record format (what `cocaine-http` installs on its loggers).
RECORD_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"

_ATOM = re.compile(r"%\((\w+)\)s")
#: (second, formatted %(t)s) of the last line: one tuple, so threads never see half of it.
_last_second: tuple[int, str] = (-1, "")


def _timestamp(started: float) -> str:
    global _last_second
    second = int(started)
    last = _last_second
    if last[0] == second:
        return last[1]
    when = datetime.datetime.fromtimestamp(second).astimezone()
    text = when.strftime("[%d/%b/%Y:%H:%M:%S %z]")
    _last_second = (second, text)
    return text


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
    if fmt is ACCESS_LOG_FORMAT or fmt == ACCESS_LOG_FORMAT:
        return default_line(request, status, size, started, duration)
    return format_atoms(fmt, request, status, size, started, duration)


def format_atoms(
    fmt: str, request: Request | None, status: int, size: int, started: float, duration: float
) -> str:
    """Any gunicorn-style format, computing only the atoms it names."""
    atoms = {name: _atom(name, request, status, size, started, duration)
             for name in _ATOM.findall(fmt)}
    return fmt % atoms


def default_line(
    request: Request | None, status: int, size: int, started: float, duration: float,
    head: str = "", tail: str = "",
) -> str:
    """`access_log_line()` for ACCESS_LOG_FORMAT, as one f-string (the per-request path);
    `head` and `tail` (a record prefix, a newline) go into the same f-string."""
    if request is None:
        return (f'{head}- - - {_timestamp(started)} "-" {status} {size or "-"} "-" "-" '
                f"{int(duration * 1000)}ms{tail}")
    client = request.client
    referer = agent = None
    for key, value in request.headers:  # the first of each, as _header() finds it
        if key == b"user-agent":
            if agent is None:
                agent = value.decode("latin-1")
        elif key == b"referer" and referer is None:
            referer = value.decode("latin-1")
    last = _last_second
    stamp = last[1] if last[0] == int(started) else _timestamp(started)
    return (f'{head}{client[0] if client else "-"} - - {stamp} '
            f'"{request.method} {request.target.decode("latin-1") or "/"} '
            f'HTTP/{request.http_version}" {status} {size or "-"} '
            f'"{referer or "-"}" "{agent or "-"}" {int(duration * 1000)}ms{tail}')


class RecordPrefix:
    """The start of a RECORD_FORMAT line for one logger and level, at a given time:
    "2026-12-01 07:52:11,123 4242 INFO cocaine_http.access: ": the local date and time of
    int(now), a comma, the milliseconds int((now - int(now)) * 1000) in three digits (truncated,
    as logging.Formatter does), then `tail`. The date and time are formatted once per second
    (`second`), the whole prefix once per millisecond (`milli`)."""

    __slots__ = ("tail", "second", "milli")

    def __init__(self, pid: int, level: str, name: str) -> None:
        self.tail = f" {pid} {level} {name}: "
        # One tuple each, replaced whole, so threads never see half of an update.
        self.second: tuple[int, str] = (-1, "")
        self.milli: tuple[int, str] = (-1, "")

    def __call__(self, now: float) -> str:
        second = int(now)
        ms = int((now - second) * 1000)
        milli = self.milli
        if milli[0] == second * 1000 + ms:
            return milli[1]
        return self._format(second, ms)

    def _format(self, second: int, ms: int) -> str:
        last = self.second
        if last[0] != second:
            text = datetime.datetime.fromtimestamp(second).strftime("%Y-%m-%d %H:%M:%S")
            last = self.second = (second, text)
        prefix = f"{last[1]},{ms:03d}{self.tail}"
        self.milli = (second * 1000 + ms, prefix)
        return prefix


def record_line(prefix: RecordPrefix, request: Request | None, status: int, size: int,
                now: float, duration: float) -> str:
    """One access-log line as the worker's stderr handler prints it, newline included:
    `prefix(now)` and `default_line()` for a request that ended at `now` (epoch seconds) after
    `duration` seconds. `caccess.line()` is its C copy."""
    return default_line(request, status, size, now - duration, duration, prefix(now), "\n")


#: The C copy of record_line() (csrc/accessline.c), or None when Python formats every line.
#: `caccess.line(request, status, size, now, duration, _last_second, prefix.second,
#: prefix.tail)` is record_line()'s result or None; `caccess.Logger` runs it per request.
caccess = native("cocaine_http.http._caccess")
if caccess is not None:
    caccess.bind(Request)


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
