"""The access log in real worker processes (ASGI and WSGI): the default line on stderr, written
in batches, flushed at exit, and records for a handler the app attached."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from cocaine_http.adapters.accesslog import LineBuffer, stderr_handler
from cocaine_http.http import Request, parse_request
from cocaine_http.http.accesslog import (
    ACCESS_LOG_FORMAT,
    RECORD_FORMAT,
    RecordPrefix,
    default_line,
    format_atoms,
)
from tests.plugins.apps import frame
from tests.plugins.worker import Engine

APPS = {"asgi": "tests.workers.adapter_apps:hello_asgi",
        "wsgi": "tests.workers.adapter_apps:hello_wsgi"}
#: The default line as the worker's stderr handler prints it.
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\d+) INFO cocaine_http\.access: "
    r'- - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /item/(\d+)\?q=1 HTTP/1\.1" '
    r'200 2 "-" "probe/1\.0" \d+ms$'
)
REQUESTS = 40


def request(number: int) -> bytes:
    return frame(uri=f"/item/{number}?q=1",
                 headers=[("Host", "example.test"), ("User-Agent", "probe/1.0")])


async def serve_and_stop(engine: Engine, proc: Any) -> str:
    """Send REQUESTS requests, terminate the worker at once, return its whole stderr."""
    await engine.connected()
    sids = [engine.invoke("http", request(n)) for n in range(REQUESTS)]
    for sid in sids:
        assert (await engine.reply(sid)).error is None
    engine.terminate()
    stderr = await asyncio.wait_for(proc.stderr.read(), 30)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    return stderr.decode()


def access_lines(stderr: str) -> list[re.Match[str]]:
    return [m for m in map(LINE.match, stderr.splitlines()) if m]


@pytest.fixture(params=sorted(APPS))
def interface(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestWorkerStderr:
    async def test_every_line_is_written_by_exit_even_with_a_long_flush_interval(
        self, engine: Engine, http_worker: Any, interface: str
    ) -> None:
        """With an hour between timed flushes, the exit flush alone writes every line, each
        in the format of the worker's other records."""
        proc = await http_worker(engine.path, APPS[interface],
                                 env={"ACCESS_LOG_FLUSH": "3600"})
        stderr = await serve_and_stop(engine, proc)

        lines = access_lines(stderr)
        assert sorted(int(m.group(2)) for m in lines) == list(range(REQUESTS)), stderr[-2000:]
        assert {int(m.group(1)) for m in lines} == {proc.pid}

    async def test_lines_appear_while_the_worker_runs(
        self, engine: Engine, http_worker: Any, interface: str
    ) -> None:
        """Queued lines are written by the timed flush, without waiting for an exit."""
        proc = await http_worker(engine.path, APPS[interface])
        await engine.connected()
        for sid in [engine.invoke("http", request(n)) for n in range(3)]:
            await engine.reply(sid)
        seen: list[str] = []
        while len(seen) < 3:
            raw = await asyncio.wait_for(proc.stderr.readline(), 10)
            assert raw, "stderr closed before the lines came"
            if LINE.match(raw.decode().rstrip("\n")):
                seen.append(raw.decode())

        assert proc.returncode is None
        engine.terminate()
        await asyncio.wait_for(proc.wait(), 30)

    async def test_no_access_log_writes_no_line(
        self, engine: Engine, http_worker: Any, interface: str
    ) -> None:
        proc = await http_worker(engine.path, APPS[interface], "--no-access-log")
        stderr = await serve_and_stop(engine, proc)

        assert "cocaine_http.access" not in stderr

    async def test_a_handler_the_app_attached_receives_records(
        self, engine: Engine, http_worker: Any, interface: str, tmp_path: Path
    ) -> None:
        """A handler on cocaine_http.access gets one LogRecord per request, in its format."""
        log_file = tmp_path / "access.log"
        proc = await http_worker(engine.path, APPS[interface],
                                 env={"ACCESS_LOG_FILE": str(log_file)})
        stderr = await serve_and_stop(engine, proc)

        records = log_file.read_text().splitlines()
        assert len(records) == REQUESTS
        assert all(r.startswith('custom INFO cocaine_http.access - - - [') for r in records)
        assert sum('"GET /item/7?q=1 HTTP/1.1" 200 2' in r for r in records) == 1
        assert len(access_lines(stderr)) == REQUESTS  # propagated to the stderr handler too


class TestFormatting:
    def requests(self) -> list[Request | None]:
        return [
            parse_request(request(3)),
            parse_request(frame(uri="", headers=[("Referer", "http://a/"), ("Referer", "x"),
                                                 ("X-Forwarded-For", "10.0.0.7")])),
            parse_request(frame(method="POST", uri="/p", body=b"abc", version="1.0")),
            None,
        ]

    def test_default_line_agrees_with_the_general_formatter(self) -> None:
        started = 1_764_576_000.25
        for req in self.requests():
            for status, size, duration in ((200, 2, 0.0004), (404, 0, 1.5), (500, 12, 0.0)):
                assert default_line(req, status, size, started, duration) == format_atoms(
                    ACCESS_LOG_FORMAT, req, status, size, started, duration)

    def test_record_prefix_is_what_the_stderr_formatter_prints(self) -> None:
        formatter = logging.Formatter(RECORD_FORMAT)
        prefix = RecordPrefix(4242, "INFO", "cocaine_http.access")
        for now in (time.time(), 1_764_576_000.999, 1_764_576_001.0, 1_764_576_001.5):
            record = logging.LogRecord("cocaine_http.access", logging.INFO, __file__, 1,
                                       "the line", None, None)
            record.created, record.msecs, record.process = now, int((now % 1) * 1000), 4242
            assert prefix(now) + "the line" == formatter.format(record)


class TestStderrHandler:
    def test_anything_custom_keeps_the_logging_path(self, monkeypatch: Any) -> None:
        import sys

        root = logging.getLogger()
        access = logging.getLogger("cocaine_http.access")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(RECORD_FORMAT))
        monkeypatch.setattr(root, "handlers", [handler])
        assert stderr_handler() is None  # not the worker's own (unnamed)
        handler.set_name("cocaine_http.stderr")
        assert stderr_handler() is handler
        handler.setLevel(logging.WARNING)
        assert stderr_handler() is None
        handler.setLevel(logging.NOTSET)
        monkeypatch.setattr(access, "handlers", [logging.NullHandler()])
        assert stderr_handler() is None
        monkeypatch.setattr(access, "handlers", [])
        monkeypatch.setattr(access, "filters", [lambda r: True])
        assert stderr_handler() is None


class TestLineBuffer:
    def test_lines_from_many_threads_are_all_written_once(self) -> None:
        import io
        import threading

        stream = io.StringIO()
        buffer = LineBuffer(lambda: stream, interval=0.01)
        buffer.start()

        def produce(tag: int) -> None:
            for n in range(2000):
                buffer.write(f"{tag} {n}\n")

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        buffer.flush()

        lines = stream.getvalue().splitlines()
        assert sorted(lines) == sorted(f"{t} {n}" for t in range(4) for n in range(2000))

    def test_a_stream_that_blocks_bounds_the_queue_and_the_drop_is_reported(self) -> None:
        import io
        import threading

        gate = threading.Event()

        class Blocked(io.StringIO):
            def write(self, text: str) -> int:
                gate.wait(10)
                return super().write(text)

        stream = Blocked()
        buffer = LineBuffer(lambda: stream, interval=0.001, limit=100)
        buffer.start()
        buffer.write("first\n")
        for _ in range(200):  # the thread soon blocks writing "first"; the queue fills
            if not buffer.lines:
                break
            threading.Event().wait(0.01)
        for n in range(150):
            buffer.write(f"{n}\n")
        gate.set()
        buffer.flush()
        for _ in range(200):
            if "dropped" in stream.getvalue():
                break
            threading.Event().wait(0.01)

        lines = stream.getvalue().splitlines()
        assert lines[:101] == ["first", *map(str, range(100))]
        assert lines[101] == "50 access log line(s) dropped: stderr was not taking them"
