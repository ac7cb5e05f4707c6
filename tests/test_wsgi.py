"""The WSGI adapter driven in-process through a recording session, pooled and inline."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import warnings
from typing import Any
from wsgiref.validate import validator

import pytest

from cocaine_http.adapters.wsgi import WSGIAdapter
from cocaine_http.adapters.wsgi_io import HIGH_WATER
from cocaine_http.config import Config
from tests.plugins.apps import FakeSession, frame


@pytest.fixture(params=[10, 0], ids=["pool", "inline"])
def threads(request: pytest.FixtureRequest) -> int:
    """Run each test with the thread pool and with --threads 0."""
    return int(request.param)


async def serve(app: Any, data: bytes, threads: int = 10,
                session: FakeSession | None = None, **options: Any) -> FakeSession:
    """Run one request through a fresh adapter and wait for the session to finish."""
    adapter = WSGIAdapter(app, Config(access_log=False, threads=threads, **options))
    await adapter.startup()
    try:
        session = session or FakeSession()
        adapter(session)
        session.request(data)
        await asyncio.wait_for(session.done.wait(), 10)
    finally:
        await adapter.shutdown()
    return session


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


class Closing:
    """An iterable that records close() and can fail part-way."""

    def __init__(self, items: list[bytes], fail_at: int = -1) -> None:
        self.items = items
        self.fail_at = fail_at
        self.closed = threading.Event()

    def __iter__(self) -> Any:
        for i, item in enumerate(self.items):
            if i == self.fail_at:
                raise RuntimeError("iteration failed")
            yield item

    def close(self) -> None:
        self.closed.set()


class TestResponse:
    async def test_hello(self, threads: int) -> None:
        """Status, headers and body reach the session, then choke."""
        session = await serve(hello, frame(), threads)

        assert session.status == 200
        assert session.headers["content-type"] == "text/plain"
        assert session.body == b"hello"
        assert session.ended

    async def test_empty_body_still_sends_the_head(self, threads: int) -> None:
        """An empty iterable still produces the response head (a hypercorn bug, avoided)."""
        def app(environ: Any, start_response: Any) -> list[bytes]:
            start_response("204 No Content", [])
            return []

        session = await serve(app, frame(), threads)

        assert session.status == 204
        assert session.ended

    async def test_headers_wait_for_first_nonempty_chunk(self, threads: int) -> None:
        """Empty items before the first data are skipped; the head goes with the data."""
        def app(environ: Any, start_response: Any) -> Any:
            start_response("200 OK", [])
            yield b""
            yield b"a"
            yield b""
            yield b"b"

        session = await serve(app, frame(), threads)

        assert session.body_chunks == [b"a", b"b"]

    async def test_write_callable(self, threads: int) -> None:
        """The legacy write() from start_response sends data before the iterable's."""
        def app(environ: Any, start_response: Any) -> list[bytes]:
            write = start_response("200 OK", [])
            write(b"first ")
            return [b"second"]

        session = await serve(app, frame(), threads)

        assert session.body == b"first second"

    async def test_close_called_on_success(self, threads: int) -> None:
        """close() of the returned iterable is called after a normal end."""
        result = Closing([b"a"])

        def app(environ: Any, start_response: Any) -> Closing:
            start_response("200 OK", [])
            return result

        await serve(app, frame(), threads)

        assert result.closed.is_set()

    async def test_close_called_when_iteration_fails(self, threads: int) -> None:
        """close() is called when iteration raises; a failure after the head fails the session."""
        result = Closing([b"a", b"b"], fail_at=1)

        def app(environ: Any, start_response: Any) -> Closing:
            start_response("200 OK", [])
            return result

        session = await serve(app, frame(), threads)

        assert result.closed.is_set()
        assert session.failure == (1, "application error")
        assert session.body_chunks == [b"a"]
        assert session.body == b"a"

    async def test_exception_before_head_gives_500(self, threads: int) -> None:
        """An app raising before any data gets a 500 response."""
        def app(environ: Any, start_response: Any) -> list[bytes]:
            raise KeyError("boom")

        session = await serve(app, frame(), threads)

        assert session.status == 500
        assert session.ended

    async def test_exc_info_replaces_unsent_headers(self, threads: int) -> None:
        """start_response with exc_info before any data replaces the held head."""
        def app(environ: Any, start_response: Any) -> list[bytes]:
            start_response("200 OK", [("X-First", "1")])
            try:
                raise ValueError("oops")
            except ValueError:
                start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
            return [b"sorry"]

        session = await serve(app, frame(), threads)

        assert session.status == 503
        assert "x-first" not in session.headers
        assert session.body == b"sorry"

    async def test_exc_info_after_head_reraises(self, threads: int) -> None:
        """start_response with exc_info after data went out re-raises the app's exception."""
        reraised: list[BaseException] = []

        def app(environ: Any, start_response: Any) -> Any:
            write = start_response("200 OK", [])
            write(b"partial")
            try:
                raise ValueError("late")
            except ValueError:
                try:
                    start_response("500 Internal Server Error", [], sys.exc_info())
                except ValueError as exc:
                    reraised.append(exc)
                    raise
            return []

        session = await serve(app, frame(), threads)

        assert len(reraised) == 1
        assert session.failure == (1, "application error")
        assert session.body_chunks == [b"partial"]

    async def test_content_length_shortfall_fails_session(self, threads: int) -> None:
        """Fewer bytes than the declared Content-Length end the session with an error."""
        def app(environ: Any, start_response: Any) -> Any:
            start_response("200 OK", [("Content-Length", "10")])
            yield b"short"

        session = await serve(app, frame(), threads)

        assert session.failure == (1, "application error")
        assert session.body_chunks == [b"short"]

    async def test_iteration_stops_at_the_declared_length(self, threads: int) -> None:
        """An item that completes the declared Content-Length ends the response: the next
        item is never asked for, and the iterable is still closed (PEP 3333)."""
        asked: list[str] = []

        def app(environ: Any, start_response: Any) -> Any:
            start_response("200 OK", [("Content-Length", "8")])
            try:
                asked.append("first")
                yield b"he"
                asked.append("second")
                yield b"llo, w"
                asked.append("third")
                yield b"orld"
            finally:
                asked.append("closed")

        session = await serve(app, frame(), threads)

        assert (session.status, session.body, session.ended) == (200, b"hello, w", True)
        assert asked == ["first", "second", "closed"]

    async def test_an_item_past_the_declared_length_fails(self, threads: int) -> None:
        """One item longer than the declared Content-Length is the app's error: a 500 when
        nothing was sent yet, a failed session after the first item went out."""
        def whole(environ: Any, start_response: Any) -> Any:
            start_response("200 OK", [("Content-Length", "3")])
            yield b"hello"

        def second(environ: Any, start_response: Any) -> Any:
            start_response("200 OK", [("Content-Length", "6")])
            yield b"ab"
            yield b"cdefgh"

        session = await serve(whole, frame(), threads)
        assert session.status == 500 and session.ended

        session = await serve(second, frame(), threads)
        assert session.failure == (1, "application error")
        assert session.body_chunks == [b"ab"]

    async def test_header_value_whitespace_is_stripped(self, threads: int) -> None:
        """A Set-Cookie value with a leading space (Django's WSGIHandler) is sent stripped."""
        def app(environ: Any, start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Set-Cookie", " a=1; Path=/")])
            return [b"ok"]

        session = await serve(app, frame(), threads)

        assert session.headers["set-cookie"] == "a=1; Path=/"

    async def test_remembered_header_scans_agree_with_fresh_ones(self, threads: int) -> None:
        """The same header lists a second time (their padding scan and status remembered)
        give the same heads: padded values stripped, others sent as they are."""
        padded = [("Set-Cookie", "\ta=1 "), ("X-Plain", "b")]
        plain = [("Set-Cookie", "a=1"), ("X-Plain", " b")]

        def app(environ: Any, start_response: Any) -> list[bytes]:
            start_response("201 Made", padded if environ["PATH_INFO"] == "/p" else plain)
            return [b"ok"]

        sessions = [await serve(app, frame(uri=uri), threads) for uri in ("/p", "/q") * 2]

        for session in sessions:
            assert session.status == 201
        assert [s.headers["set-cookie"] for s in sessions] == ["a=1"] * 4
        assert [s.headers["x-plain"] for s in sessions] == ["b"] * 4

    async def test_remembered_starts_keep_their_checks(self, threads: int) -> None:
        """A start_response() met before (its head remembered) still refuses a second call
        without exc_info, still lets exc_info replace a held head, and still holds the body
        to the Content-Length it declared, every time."""
        def twice(environ: Any, start_response: Any) -> list[bytes]:
            start_response("200 OK", [("X-A", "1")])
            start_response("200 OK", [("X-A", "1")])
            return [b"never"]

        def replaced(environ: Any, start_response: Any) -> list[bytes]:
            start_response("200 OK", [("X-First", "1")])
            try:
                raise ValueError("oops")
            except ValueError:
                start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
            return [b"sorry"]

        def short(environ: Any, start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Length", "10")])
            return [b"short"]

        for _ in range(2):
            session = await serve(twice, frame(), threads)
            assert session.status == 500
            session = await serve(replaced, frame(), threads)
            assert (session.status, session.body) == (503, b"sorry")
            assert "x-first" not in session.headers and session.headers["x-second"] == "1"
            session = await serve(short, frame(), threads)
            assert session.status == 500  # the whole list is checked before anything is sent

    async def test_list_bodies_skip_empty_items(self, threads: int) -> None:
        """A list body of several items, empty ones among them, goes out whole and in order;
        an empty list sends just the head."""
        def app(environ: Any, start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Length", "6")])
            return [b"", b"ab", b"", b"cd", b"ef"] if environ["PATH_INFO"] == "/a" else []

        session = await serve(app, frame(uri="/a"), threads)
        assert (session.status, session.body, session.ended) == (200, b"abcdef", True)

        session = await serve(app, frame(uri="/b"), threads)
        assert session.status == 500  # Content-Length 6 and no body

    async def test_list_without_start_response_is_a_500(self, threads: int) -> None:
        """A list returned before start_response() was called is the app's error."""
        def app(environ: Any, start_response: Any) -> list[bytes]:
            return [b"x"]

        session = await serve(app, frame(), threads)
        assert session.status == 500 and session.ended

    async def test_head_request_drops_body(self, threads: int) -> None:
        """HEAD keeps the headers and drops the body."""
        session = await serve(hello, frame("HEAD"), threads)

        assert session.status == 200
        assert session.body == b""

    async def test_wsgi_errors_goes_to_logging(self, threads: int,
                                               caplog: pytest.LogCaptureFixture) -> None:
        """Lines written to wsgi.errors become log records."""
        def app(environ: Any, start_response: Any) -> list[bytes]:
            environ["wsgi.errors"].write("something odd\npartial")
            environ["wsgi.errors"].flush()
            return hello(environ, start_response)

        with caplog.at_level(logging.ERROR, "cocaine_http.wsgi.errors"):
            await serve(app, frame(), threads)

        assert [r.getMessage() for r in caplog.records
                if r.name == "cocaine_http.wsgi.errors"] == ["something odd", "partial"]


class TestThreads:
    @pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="a Linux scheduling policy")
    async def test_pool_threads_run_batch_policy(self, threads: int) -> None:
        """Pool threads run with SCHED_BATCH (woken by the loop, they do not preempt it);
        inline, the app runs on the loop's thread, whose policy is left alone."""
        seen: list[int] = []

        def app(environ: Any, start_response: Any) -> list[bytes]:
            seen.append(os.sched_getscheduler(0))
            return hello(environ, start_response)

        loop_policy = os.sched_getscheduler(0)
        session = await serve(app, frame(), threads)

        assert session.status == 200
        assert seen == [os.SCHED_BATCH if threads else loop_policy]
        assert os.sched_getscheduler(0) == loop_policy

    async def test_no_wsgi_batch_leaves_the_pool_threads_policy_alone(self) -> None:
        seen: list[int] = []

        def app(environ: Any, start_response: Any) -> list[bytes]:
            seen.append(os.sched_getscheduler(0))
            return hello(environ, start_response)

        session = await serve(app, frame(), 2, wsgi_batch=False)

        assert session.status == 200
        assert seen == [os.sched_getscheduler(0)]


class TestRequest:
    async def test_environ_basics(self, threads: int) -> None:
        """PATH_INFO, QUERY_STRING, CONTENT_LENGTH and the body are what the client sent."""
        seen: dict[str, Any] = {}

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            seen.update(environ)
            seen["body"] = environ["wsgi.input"].read()
            return hello(environ, start_response)

        await serve(app, frame("POST", "/p%41th?q=1", b"payload"), threads)

        assert seen["PATH_INFO"] == "/pAth"
        assert seen["QUERY_STRING"] == "q=1"
        assert seen["CONTENT_LENGTH"] == "7"
        assert seen["body"] == b"payload"
        assert seen["wsgi.multithread"] is True

    async def test_bad_request_gets_400(self, threads: int) -> None:
        """An invalid header name is answered 400 without calling the app."""
        called: list[int] = []

        def app(environ: Any, start_response: Any) -> list[bytes]:
            called.append(1)
            return hello(environ, start_response)

        session = await serve(app, frame(headers=[("Bad Name", "x")]), threads)

        assert session.status == 400
        assert called == []


class TestValidator:
    async def test_wsgiref_validator_passes_without_warnings(self, threads: int) -> None:
        """wsgiref.validate wraps an app; every check passes and no warning is issued."""
        def app(environ: Any, start_response: Any) -> Any:
            body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
            environ["wsgi.input"].readline()
            environ["wsgi.errors"].write("note\n")
            environ["wsgi.errors"].flush()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return iter([b"got ", body])

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            session = await serve(validator(app), frame("POST", "/v?x=1", b"abc",
                                                        headers=[("Host", "h"),
                                                                 ("Content-Type", "text/plain")]),
                                  threads)

        assert session.status == 200
        assert session.body == b"got abc"


class TestBackpressure:
    async def test_streamed_body_is_bounded_by_a_slow_consumer(self) -> None:
        """A producer far ahead of a stalled socket waits instead of queueing everything."""
        gate = asyncio.Event()
        produced: list[int] = []
        piece = b"x" * 65536

        def app(environ: Any, start_response: Any) -> Any:
            start_response("200 OK", [])
            for i in range(200):
                produced.append(i)
                yield piece

        adapter = WSGIAdapter(app, Config(access_log=False, threads=2))
        await adapter.startup()
        session = FakeSession(drain_gate=gate)
        adapter(session)
        session.request(frame())
        deadline = asyncio.get_running_loop().time() + 10
        while sum(map(len, session.chunks)) < HIGH_WATER:
            assert asyncio.get_running_loop().time() < deadline, "producer never blocked"
            await asyncio.sleep(0.01)
            if len(produced) == 200:
                break
        await asyncio.sleep(0.1)  # give a misbehaving producer the chance to run ahead

        assert len(produced) < 200
        assert sum(map(len, session.chunks)) <= 4 * HIGH_WATER
        gate.set()
        await asyncio.wait_for(session.done.wait(), 10)
        await adapter.shutdown()
        assert len(session.body) == 200 * 65536

    async def test_session_failure_stops_producer_and_closes(self) -> None:
        """When the engine fails the session, the app's iterator is closed."""
        gate = asyncio.Event()
        result = Closing([b"x" * 65536] * 1000)

        def app(environ: Any, start_response: Any) -> Closing:
            start_response("200 OK", [])
            return result

        adapter = WSGIAdapter(app, Config(access_log=False, threads=2))
        await adapter.startup()
        session = FakeSession(drain_gate=gate)
        adapter(session)
        session.request(frame())
        while not session.chunks:
            await asyncio.sleep(0.01)
        session.fail()
        await asyncio.get_running_loop().run_in_executor(None, result.closed.wait, 10)
        await adapter.shutdown()

        assert result.closed.is_set()
