"""The native fuzzer's checks (fuzz/native_checks.py) in the suite: its seeds pass them with the
library's compiled modules and reach every outcome, the input spellings mean what they say, and
a copy that strays is caught."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

from cocaine_http.errors import BadRequestError
from cocaine_http.http.request import Request, parse_reference
from cocaine_http.protocol.dialect import V0_11
from fuzz.native_checks import (
    Built,
    Disagreement,
    check,
    frame_of,
    modules,
    replay,
    response_input,
    response_of,
    seeds,
    spelled,
)

BUILT = modules(None)
GET = spelled(b"GET", b"/", b"1.1", [(b"Host", b"h"), (b"Accept", b"*/*")])


def test_the_seeds_agree_and_reach_every_outcome() -> None:
    outcomes = replay(seeds(), BUILT)
    assert set(outcomes) == {"refused", "declined", "parsed", "framed", "framing declined"}
    assert outcomes["parsed"] >= 10 and outcomes["framed"] >= 6


def test_the_fieldwise_spelling_packs_a_frame_as_the_fronts_do() -> None:
    data = spelled(b"POST", b"/a?b", b"1.1", [(b"Host", b"h"), (b"X", b"")], b"body")
    assert msgpack.unpackb(frame_of(data), raw=True) == [
        b"POST", b"/a?b", b"1.1", [[b"Host", b"h"], [b"X", b""]], b"body"]
    assert msgpack.unpackb(frame_of(b"\x01PUT"), raw=True) == [b"PUT", b"/", b"1.1", [], b""]
    assert frame_of(b"\x03\x95raw") == b"\x95raw"


def test_the_response_spelling() -> None:
    data = response_input(True, 70000, [(5, b"head"), (8 + 4, b"a\x01b"), (2, b"v")], True)
    v12, session, chunks, end = response_of(data)
    assert (v12, session, end) == (1, 70000, True)
    assert chunks[0] == b"head" and chunks[1] == [b"a", b"ba", b"b"]
    assert type(chunks[2]) is memoryview and bytes(chunks[2]) == b"v"


def _straying_parser(field: str, value: Any) -> Any:
    """The C parser, with one field of what it accepts changed."""

    def parse(cls: type, frame: Any, config: Any) -> Any:
        request = BUILT.crequest.parse(cls, frame, config)
        if request is not None:
            setattr(request, field, value)
        return request

    return SimpleNamespace(parse=parse)


@pytest.mark.parametrize(("field", "value"), [("scheme", "https"), ("path", "/elsewhere"),
                                              ("headers", [])])
def test_a_parser_that_strays_is_caught(field: str, value: Any) -> None:
    assert check(GET, BUILT) == "parsed"
    with pytest.raises(Disagreement):
        check(GET, BUILT._replace(crequest=_straying_parser(field, value)))


def test_a_parser_that_accepts_a_refused_frame_is_caught() -> None:
    data = spelled(b"GET", b"/", b"2.0", [])
    with pytest.raises(BadRequestError):
        parse_reference(frame_of(data))
    lenient = SimpleNamespace(parse=lambda cls, frame, config: Request())
    with pytest.raises(Disagreement, match="refuses"):
        check(data, BUILT._replace(crequest=lenient))


def test_a_stray_environ_or_log_line_is_caught() -> None:
    environ = SimpleNamespace(environ=lambda *args: {"wsgi.input": io.BytesIO()})
    with pytest.raises(Disagreement, match="environ"):
        check(GET, BUILT._replace(cenviron=environ))
    line = SimpleNamespace(line=lambda *args: "not the line\n")
    with pytest.raises(Disagreement, match="access line"):
        check(GET, BUILT._replace(caccess=line))


def test_a_stray_framing_is_caught() -> None:
    data = response_input(False, 5, [(5, b"head"), (5, b"body")], True)
    assert check(data, BUILT) == "framed"
    wrong = V0_11.frame_response(6, *response_of(data)[2:])
    with pytest.raises(Disagreement, match="otherwise"):
        check(data, Built(*BUILT[:3], framers=(lambda *args: wrong, BUILT.framers[1])))
    refused = response_input(False, 5, [(4, b"x")], True)
    assert check(refused, BUILT) in ("framed", "framing declined")
