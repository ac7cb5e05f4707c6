"""The C access-log line (csrc/accessline.c) against its Python reference, `record_line()`:
the same str on generated inputs or a decline, never a crash or a leak, and the real worker's
lines made by C. The compiled module is imported directly, so these tests run the C code under
both decoder switches (the rest of the suite runs whichever the switch selects)."""

from __future__ import annotations

import importlib
import io
import re
import sys
import time
from time import perf_counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocaine_http.adapters.accesslog import LineBuffer
from cocaine_http.http import Request, parse_request
from cocaine_http.http import accesslog as formats
from cocaine_http.http.accesslog import RecordPrefix, record_line
from tests.plugins.apps import frame
from tests.plugins.worker import Engine
from tests.test_asgi_access_log import access_lines, serve_and_stop

caccess = importlib.import_module("cocaine_http.http._caccess")
assert caccess.bind(Request)

NOW = 1_764_576_000.0  # 2025-12-01 08:00 UTC
PREFIX = RecordPrefix(4242, "INFO", "cocaine_http.access")
STAMP = r"\[[^]]*\]"  # the %(t)s atom
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def c_line(prefix: RecordPrefix, req: Any, status: Any, size: Any, now: Any,
           duration: Any) -> str | None:
    result: str | None = caccess.line(req, status, size, now, duration, formats._last_second,
                                      prefix.second, prefix.tail)
    return result


def request(method: str = "GET", target: bytes = b"/", version: str = "1.1",
            headers: list[tuple[bytes, bytes]] | None = None,
            client: tuple[str, int] | None = None) -> Request:
    req = Request()
    req.method, req.target, req.http_version = method, target, version
    req.headers = [] if headers is None else headers
    req.client = client
    return req


latin1 = st.text(st.characters(max_codepoint=255), max_size=20)
names = st.sampled_from([b"user-agent", b"referer", b"host", b"accept", b"user-agents",
                         b"refere", b"x"]) | st.binary(max_size=12)
headers = st.lists(st.tuples(names, st.binary(max_size=40)), max_size=8)
clients = st.none() | st.tuples(latin1, st.integers(0, 65535)) | st.just(())
requests = st.builds(
    request,
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]) | latin1,
    target=st.sampled_from([b"", b"/", b"/a?q=1", b"/caf\xe9", b"*"]) | st.binary(max_size=60),
    version=st.sampled_from(["1.0", "1.1", "2"]) | latin1,
    headers=headers,
    client=clients,
)
statuses = st.sampled_from([200, 204, 301, 404, 500, 0, -1]) | st.integers(-10**6, 10**18)
sizes = st.sampled_from([0, 1, 5, 65536]) | st.integers(0, 2**62)
durations = st.sampled_from([0.0, 0.0004, 0.001, 0.9999, 1.5, 86400.0, 1e9]) | st.floats(0, 1e6)
nows = st.sampled_from([NOW, NOW + 0.999, NOW + 0.0005, 1.0, 0.0]) | st.floats(1e9, 4e9)
prefixes = st.builds(RecordPrefix, st.integers(0, 2**22), st.sampled_from(["INFO", "WARNING"]),
                     st.sampled_from(["cocaine_http.access", "a", ""]) | latin1)


def fresh(prefix: RecordPrefix, req: Any, status: Any, size: Any, now: Any,
          duration: Any) -> Any:
    """The reference's line (which fills the per-second caches), or the exception it raises."""
    try:
        return record_line(prefix, req, status, size, now, duration)
    except Exception as exc:  # the C copy must decline whatever the reference refuses
        return exc


class TestAgreement:
    @SETTINGS
    @given(prefixes, st.none() | requests, statuses, sizes, nows, durations)
    def test_usual_inputs_are_built_in_c_exactly_as_python_does(
        self, prefix: RecordPrefix, req: Request | None, status: int, size: int, now: float,
        duration: float,
    ) -> None:
        expected = record_line(prefix, req, status, size, now, duration)
        assert c_line(prefix, req, status, size, now, duration) == expected

    @SETTINGS
    @given(st.lists(st.tuples(st.sampled_from(["User-Agent", "Referer", "Accept", "X-A"]),
                              st.text(st.characters(min_codepoint=32, max_codepoint=255,
                                                    blacklist_characters="\x7f"),
                                      max_size=30).map(str.strip)), max_size=6),
           st.sampled_from(["GET", "POST", "PATCH"]), st.sampled_from(["1.0", "1.1"]),
           st.sampled_from(["/", "", "/p?q=a%20b", "*"]), durations)
    def test_parsed_requests_agree(self, pairs: list[tuple[str, str]], method: str,
                                   version: str, uri: str, duration: float) -> None:
        raw = msgpack_frame(method, uri, version, [("Host", "h"), *pairs])
        req = parse_request(raw)
        expected = record_line(PREFIX, req, 200, 7, NOW + 0.25, duration)
        assert c_line(PREFIX, req, 200, 7, NOW + 0.25, duration) == expected

    def test_the_first_referer_and_user_agent_are_printed_even_when_empty(self) -> None:
        req = request(headers=[(b"referer", b""), (b"referer", b"r2"), (b"user-agent", b"\xff"),
                               (b"user-agent", b"u2")], client=("10.0.0.7", 0))
        expected = record_line(PREFIX, req, 200, 0, NOW, 0.0)
        assert '10.0.0.7 - - ' in expected and '"-" "\xff" 0ms' in expected
        assert c_line(PREFIX, req, 200, 0, NOW, 0.0) == expected

    def test_wild_inputs_give_the_reference_or_a_decline(self) -> None:
        """Any type where the worker passes str, bytes, int, float, tuple or list: C declines
        (or agrees), and never raises."""
        good = request(headers=[(b"user-agent", b"a")])
        odd: list[Any] = [None, 1, 1.5, "x", b"x", (), [], ("a",), [b"k", b"v"], True,
                          2**70, float("nan"), float("inf"), -1.0, object(), bytearray(b"x"),
                          (b"user-agent", "str value"), ("user-agent", b"v"), {"a": 1}]
        fields = ("method", "target", "http_version", "headers", "client")
        cases: list[tuple[Any, ...]] = []
        for value in odd:
            for name in fields:
                req = request(headers=[(b"user-agent", b"a")])
                setattr(req, name, value)
                cases.append((req, 200, 5, NOW, 0.001))
            cases.append((request(headers=[value]), 200, 5, NOW, 0.001))
            cases.append((request(headers=[(b"user-agent", value)]), 200, 5, NOW, 0.001))
            cases.append((request(client=(value, 0)), 200, 5, NOW, 0.001))
            cases += [(good, value, 5, NOW, 0.001), (good, 200, value, NOW, 0.001),
                      (good, 200, 5, value, 0.001), (good, 200, 5, NOW, value),
                      (value, 200, 5, NOW, 0.001)]
        unset = Request()
        cases.append((unset, 200, 5, NOW, 0.001))
        for args in cases:
            expected = fresh(PREFIX, *args)
            got = c_line(PREFIX, *args)
            assert got is None or got == expected, args

    def test_stale_or_odd_caches_decline(self) -> None:
        req = request()
        record_line(PREFIX, req, 200, 5, NOW, 0.0)
        for stamps, dates, tail in [((int(NOW) - 1, "[x]"), PREFIX.second, PREFIX.tail),
                                    (formats._last_second, (int(NOW) + 1, "d"), PREFIX.tail),
                                    (None, PREFIX.second, PREFIX.tail),
                                    ((int(NOW), b"[x]"), PREFIX.second, PREFIX.tail),
                                    ((int(NOW),), PREFIX.second, PREFIX.tail),
                                    (formats._last_second, PREFIX.second, None),
                                    (formats._last_second, PREFIX.second, " \u20ac: ")]:
            assert caccess.line(req, 200, 5, NOW, 0.0, stamps, dates, tail) is None
        assert caccess.line(req, 200, 5, NOW, 0.0, formats._last_second, PREFIX.second,
                            PREFIX.tail) == record_line(PREFIX, req, 200, 5, NOW, 0.0)

    def test_wrong_arity_is_a_type_error(self) -> None:
        with pytest.raises(TypeError):
            caccess.line(None, 200, 5)
        with pytest.raises(TypeError):
            caccess.Logger(None)
        with pytest.raises(TypeError):
            caccess.bind(42)
        logger = caccess.Logger(lambda *a: None, PREFIX, LineBuffer(io.StringIO), formats)
        with pytest.raises(TypeError):
            logger(None, 200)
        with pytest.raises(TypeError):
            logger(None, 200, 5, perf_counter(), extra=1)

    def test_a_class_without_the_slots_is_read_by_attribute(self) -> None:
        class Plain:
            method, target, http_version, client = "GET", b"/x", "1.1", None
            headers = [(b"user-agent", b"ua")]

        assert caccess.bind(Plain) is False
        expected = fresh(PREFIX, Plain(), 200, 5, NOW, 0.001)
        assert c_line(PREFIX, Plain(), 200, 5, NOW, 0.001) == expected


def msgpack_frame(method: str, uri: str, version: str, pairs: list[tuple[str, str]]) -> bytes:
    import msgpack

    return msgpack.packb([method, uri.encode("latin-1"), version,
                          [[n.encode("latin-1"), v.encode("latin-1")] for n, v in pairs], b""],
                         use_bin_type=False)


class TestLogger:
    def logger(self, buffer: LineBuffer, calls: list[tuple[Any, ...]]) -> Any:
        def fallback(*args: Any) -> None:
            calls.append(args)
            now = time.time()
            buffer.write(record_line(PREFIX, args[0], args[1], args[2], now,
                                     perf_counter() - args[3]))

        return caccess.Logger(fallback, PREFIX, buffer, formats)

    def test_the_step_queues_the_reference_line_read_at_the_clocks(self) -> None:
        """Logger(request, status, size, started) queues what record_line() gives for the time
        and duration read at the call; a stale cache hands the call to the fallback."""
        buffer = LineBuffer(io.StringIO)
        calls: list[tuple[Any, ...]] = []
        log = self.logger(buffer, calls)
        req = parse_request(frame(uri="/item/9?q=1", headers=[("Host", "h"),
                                                              ("User-Agent", "probe/1.0")]))
        for _ in range(50):
            before = time.time()
            log(req, 200, 2, perf_counter() - 0.002)
            after = time.time()
            line = buffer.lines.pop()
            day, clock = line.split(" ", 2)[:2]
            second = time.mktime(time.strptime(f"{day} {clock[:8]}", "%Y-%m-%d %H:%M:%S"))
            assert int(before) <= second <= after
            now = second + (int(clock[9:12]) + 0.5) / 1000
            duration = int(line.rsplit(" ", 1)[1][:-3]) / 1000 + 0.0005
            expected = record_line(PREFIX, req, 200, 2, now, duration)
            assert re.sub(STAMP, "[]", line) == re.sub(STAMP, "[]", expected)
            stamp = re.search(STAMP, line).group(0)  # type: ignore[union-attr]
            assert stamp in {formats._timestamp(t) for t in (before - 0.003, after)}
        assert len(calls) <= 4  # at most twice per second: the two caches' second changes
        assert buffer.pending and not buffer.dropped

    def test_the_buffer_rules_are_the_python_ones(self) -> None:
        """The first line wakes the writing thread through LineBuffer.write, a full queue
        drops and counts; only the common case (queued, awake, room) is done in C."""
        buffer = LineBuffer(io.StringIO, limit=3)  # not started: the lines stay queued
        log = self.logger(buffer, [])
        record_line(PREFIX, None, 400, 0, time.time(), 0.0)
        assert not buffer.pending
        for _ in range(5):
            log(None, 400, 0, perf_counter())
        assert buffer.pending and buffer._wake.is_set()
        assert len(buffer.lines) == 3 and buffer.dropped == 2

    def test_a_started_value_that_is_not_a_float_is_the_fallbacks(self) -> None:
        buffer = LineBuffer(io.StringIO)
        calls: list[tuple[Any, ...]] = []
        self.logger(buffer, calls)(None, 200, 0, 1)
        assert calls == [(None, 200, 0, 1)]


class TestReferences:
    def test_no_leak_over_many_calls(self) -> None:
        """Blocks allocated stay flat over ~100k calls on varied inputs (a leak of one object
        per call would add thousands)."""
        sink = open("/dev/null", "w")
        buffer = LineBuffer(lambda: sink)
        log = caccess.Logger(lambda *a: refill(), PREFIX, buffer, formats)
        reqs: list[Any] = [
            None,
            request(headers=[(b"user-agent", b"u" * 50), (b"referer", b"\xe9")],
                    client=("10.1.1.1", 0)),
            request(method="POST", target=b"", headers=[(b"x", b"y")] * 5),
            request(headers=[(b"user-agent", "bad")]),  # declines
            request(client=(1, 2)),  # declines
        ]
        now = time.time()

        def refill() -> None:  # the caches, for the current second
            record_line(PREFIX, None, 200, 0, time.time(), 0.0)

        record_line(PREFIX, None, 200, 0, now, 0.0)
        refill()

        def run(n: int) -> None:
            for i in range(n):
                req = reqs[i % len(reqs)]
                c_line(PREFIX, req, 200 + i % 300, i, now, i * 1e-4)
                c_line(PREFIX, req, True, 2**70, now, float("nan"))
                log(req, 200, i, perf_counter())
                if i % 1000 == 0:
                    buffer.lines.clear()
            buffer.lines.clear()

        run(2000)
        before = sys.getallocatedblocks()
        run(100_000)
        after = sys.getallocatedblocks()
        sink.close()
        assert after - before < 200, (before, after)


class TestWorker:
    @pytest.mark.parametrize("interface", ["asgi", "wsgi"])
    async def test_the_real_workers_lines_are_built_in_c(
        self, engine: Engine, http_worker: Any, interface: str
    ) -> None:
        """A worker with the C build: each of its lines is the C line, except at most the
        first after a second changes (Python fills the per-second caches)."""
        proc = await http_worker(engine.path, f"tests.workers.accessline_apps:hello_{interface}",
                                 env={"COCAINE_HTTP_PUREPYTHON": "0"})
        stderr = await serve_and_stop(engine, proc)

        lines = access_lines(stderr)
        assert len(lines) == 40, stderr[-2000:]
        found = re.search(r"python-formatted lines: (\d+)", stderr)
        assert found, stderr[-2000:]
        seconds = {m.group(0)[:19] for m in lines}
        stamps = {re.search(STAMP, m.group(0)).group(0) for m in lines}  # type: ignore[union-attr]
        assert int(found.group(1)) <= len(seconds) + len(stamps), stderr[-2000:]
