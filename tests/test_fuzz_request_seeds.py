"""The request fuzzer's checks (fuzz/request_checks.py) in the suite: its seeds pass them with the
library's compiled modules, reach every outcome, and a copy that strays is caught."""

from __future__ import annotations

import importlib
import io
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

from cocaine_http.errors import BadRequestError
from cocaine_http.http.request import Request, parse_reference
from fuzz.request_checks import Disagreement, check, frame_of, replay, seeds, spelled

BUILT = tuple(importlib.import_module(f"cocaine_http.http.{name}")
              for name in ("_crequest", "_cenviron", "_caccess"))
assert BUILT[2].bind(Request)


def test_the_seeds_agree_and_reach_every_outcome() -> None:
    outcomes = replay(seeds(), BUILT)
    assert set(outcomes) == {"refused", "declined", "parsed"}
    assert outcomes["parsed"] >= 10


def test_the_fieldwise_spelling_packs_a_frame_as_the_fronts_do() -> None:
    data = spelled(b"POST", b"/a?b", b"1.1", [(b"Host", b"h"), (b"X", b"")], b"body")
    assert msgpack.unpackb(frame_of(data), raw=True) == [
        b"POST", b"/a?b", b"1.1", [[b"Host", b"h"], [b"X", b""]], b"body"]
    assert msgpack.unpackb(frame_of(b"\x01PUT"), raw=True) == [b"PUT", b"/", b"1.1", [], b""]
    assert frame_of(b"\x02\x95raw") == b"\x95raw"


def _straying_parser(field: str, value: Any) -> Any:
    """The C parser, with one field of what it accepts changed."""

    def parse(cls: type, frame: Any, config: Any) -> Any:
        request = BUILT[0].parse(cls, frame, config)
        if request is not None:
            setattr(request, field, value)
        return request

    return SimpleNamespace(parse=parse)


@pytest.mark.parametrize(("field", "value"), [("scheme", "https"), ("path", "/elsewhere"),
                                              ("headers", [])])
def test_a_parser_that_strays_is_caught(field: str, value: Any) -> None:
    data = spelled(b"GET", b"/", b"1.1", [(b"Host", b"h"), (b"Accept", b"*/*")])
    assert check(data, *BUILT) == "parsed"
    with pytest.raises(Disagreement):
        check(data, _straying_parser(field, value), *BUILT[1:])


def test_a_parser_that_accepts_a_refused_frame_is_caught() -> None:
    data = spelled(b"GET", b"/", b"2.0", [])
    with pytest.raises(BadRequestError):
        parse_reference(frame_of(data))
    lenient = SimpleNamespace(parse=lambda cls, frame, config: Request())
    with pytest.raises(Disagreement, match="refuses"):
        check(data, lenient, *BUILT[1:])


def test_a_stray_environ_or_log_line_is_caught() -> None:
    data = spelled(b"GET", b"/", b"1.1", [(b"Host", b"h")])
    environ = SimpleNamespace(environ=lambda *args: {"wsgi.input": io.BytesIO()})
    with pytest.raises(Disagreement, match="environ"):
        check(data, BUILT[0], environ, BUILT[2])
    line = SimpleNamespace(line=lambda *args: "not the line\n")
    with pytest.raises(Disagreement, match="access line"):
        check(data, BUILT[0], BUILT[1], line)
