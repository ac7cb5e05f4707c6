"""The ASGI adapter driven in-process through a recording session."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest

from cocaine_http.adapters.asgi import ASGIAdapter
from cocaine_http.adapters.lifespan import Lifespan
from cocaine_http.config import Config
from cocaine_http.errors import LifespanError
from tests.plugins.apps import FakeSession, frame


async def serve(app: Any, data: bytes, config: Config | None = None,
                session: FakeSession | None = None, started: bool = True) -> FakeSession:
    """Run one request through a fresh adapter and wait until the session is finished."""
    adapter = ASGIAdapter(app, config or Config(access_log=False, lifespan="off"))
    if started:
        await adapter.startup()
    session = session or FakeSession()
    adapter(session)
    session.request(data)
    await asyncio.wait_for(session.done.wait(), 10)
    return session


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


class TestResponse:
    async def test_hello_gives_head_body_and_end(self) -> None:
        """A plain app: head chunk, one body chunk, choke."""
        session = await serve(hello, frame())

        assert session.status == 200
        assert session.headers["content-type"] == "text/plain"
        assert session.body_chunks == [b"hello"]
        assert session.ended

    async def test_streamed_body_arrives_in_pieces_with_drain(self) -> None:
        """Each more_body message is its own chunk, and the adapter awaits drain() for it."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for i in range(3):
                await send({"type": "http.response.body", "body": b"p%d" % i, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        session = await serve(app, frame())

        assert session.body_chunks == [b"p0", b"p1", b"p2"]
        assert session.drains == 3
        assert session.ended

    async def test_slow_consumer_holds_the_app(self) -> None:
        """While drain() does not return, the app's send() does not return either."""
        gate = asyncio.Event()
        progress: list[int] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for i in range(3):
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
                progress.append(i)
            await send({"type": "http.response.body"})

        adapter = ASGIAdapter(app, Config(access_log=False, lifespan="off"))
        session = FakeSession(drain_gate=gate)
        adapter(session)
        session.request(frame())
        for _ in range(20):
            await asyncio.sleep(0)

        assert progress == []
        gate.set()
        await asyncio.wait_for(session.done.wait(), 10)
        assert progress == [0, 1, 2]

    async def test_exception_before_start_gives_500(self, caplog: pytest.LogCaptureFixture) -> None:
        """An app failing before http.response.start gets a 500 response, logged."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise ValueError("broken app")

        with caplog.at_level(logging.ERROR, "cocaine_http.asgi"):
            session = await serve(app, frame())

        assert session.status == 500
        assert session.ended
        assert "broken app" in caplog.text

    async def test_exception_after_start_fails_session(self) -> None:
        """Once the head went out, an app failure becomes a Cocaine error on the session."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise ValueError("late failure")

        session = await serve(app, frame())

        assert session.status == 200
        assert session.failure == (1, "application error")
        assert session.body_chunks == [b"part"]
        assert not session.ended

    async def test_returning_without_response_gives_500(self) -> None:
        """An app that returns without sending anything gets a 500."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            return None

        session = await serve(app, frame())

        assert session.status == 500

    async def test_returning_mid_body_fails_session(self) -> None:
        """An app that returns after more_body=True without finishing fails the session."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})

        session = await serve(app, frame())

        assert session.failure == (1, "application returned without completing the response")
        assert session.body_chunks == [b"x"]

    async def test_out_of_order_message_raises_into_app(self) -> None:
        """A body before the start raises inside the app's send()."""
        raised: list[BaseException] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            try:
                await send({"type": "http.response.body", "body": b"x"})
            except Exception as exc:
                raised.append(exc)
                raise

        session = await serve(app, frame())

        assert len(raised) == 1
        assert session.status == 500

    async def test_bad_header_is_refused_before_sending(self) -> None:
        """A header value with CR/LF raises at http.response.start; the client gets a 500."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"x-evil", b"a\r\nSet-Cookie: x=1")]})

        session = await serve(app, frame())

        assert session.status == 500
        assert "x-evil" not in session.headers

    async def test_head_request_has_no_body(self) -> None:
        """HEAD responses keep their headers and lose their body."""
        session = await serve(hello, frame("HEAD"))

        assert session.status == 200
        assert session.body == b""

    async def test_content_length_overrun_fails_session(self) -> None:
        """More body than the declared Content-Length ends the session with an error."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ab", "more_body": True})
            await send({"type": "http.response.body", "body": b"cd"})

        session = await serve(app, frame())

        assert session.failure == (1, "application error")
        assert session.body_chunks == [b"ab"]


class TestRequest:
    async def test_bad_request_gets_400_without_calling_app(self) -> None:
        """A malformed method never reaches the app."""
        called: list[int] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            called.append(1)

        session = await serve(app, frame(method="GE T"))

        assert session.status == 400
        assert called == []

    async def test_oversized_body_gets_413(self) -> None:
        """A body over --max-body-size is answered 413."""
        config = Config(access_log=False, lifespan="off", max_body_size=10)

        session = await serve(hello, frame("POST", body=b"x" * 11), config)

        assert session.status == 413

    async def test_scope_and_body(self) -> None:
        """The app sees method, path, query, headers, and the body with more_body False."""
        seen: dict[str, Any] = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen["scope"] = scope
            seen["message"] = await receive()
            await hello(scope, receive, send)

        await serve(app, frame("POST", "/a%20b?x=1", b"data",
                               headers=[("Host", "h:81"), ("X-A", "1"), ("X-A", "2")]))

        scope = seen["scope"]
        assert (scope["method"], scope["path"], scope["query_string"]) == ("POST", "/a b", b"x=1")
        assert [v for k, v in scope["headers"] if k == b"x-a"] == [b"1", b"2"]
        assert seen["message"] == {"type": "http.request", "body": b"data", "more_body": False}

    async def test_large_body_is_split_with_more_body(self) -> None:
        """A body above the piece size arrives as several http.request messages."""
        body = bytes(range(256)) * 10_000
        pieces: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            while True:
                message = await receive()
                pieces.append(message)
                if not message["more_body"]:
                    break
            await hello(scope, receive, send)

        await serve(app, frame("POST", body=body))

        assert len(pieces) >= 2
        assert b"".join(p["body"] for p in pieces) == body

    async def test_disconnect_after_response(self) -> None:
        """receive() after the body returns http.disconnect once the response is complete."""
        messages: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await hello(scope, receive, send)
            messages.append(await receive())

        adapter = ASGIAdapter(app, Config(access_log=False, lifespan="off"))
        session = FakeSession()
        adapter(session)
        session.request(frame())
        await asyncio.wait_for(session.done.wait(), 10)
        await asyncio.wait_for(asyncio.gather(*adapter.tasks), 10)

        assert messages == [{"type": "http.disconnect"}]

    async def test_session_failure_disconnects_and_cancels(self) -> None:
        """When the engine fails the session, the waiting app sees disconnect or is cancelled."""
        entered = asyncio.Event()
        outcome: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            entered.set()
            try:
                outcome.append((await receive())["type"])
                await send({"type": "http.response.start", "status": 200, "headers": []})
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            except OSError:
                outcome.append("oserror")

        adapter = ASGIAdapter(app, Config(access_log=False, lifespan="off"))
        session = FakeSession()
        adapter(session)
        session.request(frame())
        await asyncio.wait_for(entered.wait(), 10)
        session.fail()
        await asyncio.wait_for(asyncio.gather(*adapter.tasks, return_exceptions=True), 10)

        assert outcome and outcome[0] in ("cancelled", "http.disconnect")
        assert session.chunks == []


class TestLifespan:
    async def test_state_reaches_each_request_as_a_copy(self) -> None:
        """State set at startup is shallow-copied into every request scope."""
        seen: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await receive()
                scope["state"]["db"] = "pool"
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await send({"type": "lifespan.shutdown.complete"})
                return
            seen.append(scope["state"])
            scope["state"]["scratch"] = 1
            await hello(scope, receive, send)

        adapter = ASGIAdapter(app, Config(access_log=False))
        await adapter.startup()
        for _ in range(2):
            session = FakeSession()
            adapter(session)
            session.request(frame())
            await asyncio.wait_for(session.done.wait(), 10)
        await adapter.shutdown()

        assert [s["db"] for s in seen] == ["pool", "pool"]
        assert adapter.lifespan.state == {"db": "pool"}

    async def test_startup_failure_raises_with_app_message(self) -> None:
        """lifespan.startup.failed raises LifespanError carrying the app's message."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})

        with pytest.raises(LifespanError, match="no database"):
            await Lifespan(app, "auto").startup()

    async def test_auto_tolerates_apps_without_lifespan(self) -> None:
        """An app that raises on the lifespan scope (as Django does) is served without it."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                raise ValueError("Django can only handle ASGI/HTTP connections")
            await hello(scope, receive, send)

        lifespan = Lifespan(app, "auto")
        await lifespan.startup()

        assert lifespan.supported is False

    async def test_on_mode_fails_for_apps_without_lifespan(self) -> None:
        """With --lifespan on, an app that raises on the lifespan scope is a startup failure."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise ValueError("no lifespan here")

        with pytest.raises(LifespanError, match="no lifespan here"):
            await Lifespan(app, "on").startup()

    async def test_on_mode_failure_says_what_to_change(self) -> None:
        """The startup error of an app without lifespan names the setting to change."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

        with pytest.raises(LifespanError, match="set lifespan='auto' or 'off'"):
            await Lifespan(app, "on").startup()

    async def test_explicit_startup_failure_keeps_the_app_message_alone(self) -> None:
        """lifespan.startup.failed is the app's own message, without the hint."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})

        with pytest.raises(LifespanError) as failed:
            await Lifespan(app, "on").startup()
        assert str(failed.value) == "no database"

    async def test_off_never_calls_app(self) -> None:
        """--lifespan off does not call the app for lifespan."""
        calls: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            calls.append(scope["type"])

        lifespan = Lifespan(app, "off")
        await lifespan.startup()
        await lifespan.shutdown()

        assert calls == []

    async def test_shutdown_runs(self) -> None:
        """shutdown() delivers lifespan.shutdown and waits for the app's answer."""
        events: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            events.append((await receive())["type"])
            await send({"type": "lifespan.startup.complete"})
            events.append((await receive())["type"])
            await send({"type": "lifespan.shutdown.complete"})

        lifespan = Lifespan(app, "on")
        await lifespan.startup()
        await lifespan.shutdown()

        assert events == ["lifespan.startup", "lifespan.shutdown"]


@pytest.fixture(params=[False, True], ids=["scheduled", "eager"])
def eager(request: Any, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways of starting the app's Task: scheduled (the default) and, on Python 3.12+,
    eagerly (`EAGER_TASKS`); True only where the eager start is really used."""
    from cocaine_http.adapters import asgi

    monkeypatch.setattr(asgi, "EAGER_TASKS", request.param)
    return bool(request.param) and sys.version_info >= (3, 12)


class TestTasks:
    async def test_the_task_runs_on_the_next_iteration_unless_eager(self, eager: bool) -> None:
        """A scheduled Task runs after the read that completed the request; an eager one
        (3.12+) is done inside the invoke, and no Task is left for the loop."""
        adapter = ASGIAdapter(hello, Config(access_log=False, lifespan="off"))
        await adapter.startup()
        session = FakeSession()
        adapter(session)
        session.request(frame())
        done_at_once, pending = session.ended, len(adapter.tasks)
        await asyncio.wait_for(session.done.wait(), 10)

        assert (done_at_once, pending) == ((True, 0) if eager else (False, 1))
        assert session.ended and not adapter.tasks

    async def test_the_app_runs_in_its_own_task_from_its_first_line(self, eager: bool) -> None:
        """asyncio.current_task() inside the app is a registered Task on the running loop,
        the same one before and after the app suspends, and not the caller's."""
        seen: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            task = asyncio.current_task()
            seen.append((task, task in asyncio.all_tasks(), task.get_loop()))
            await asyncio.sleep(0)
            seen.append(asyncio.current_task())
            await hello(scope, receive, send)

        session = await serve(app, frame())

        (task, registered, loop), after = seen
        assert isinstance(task, asyncio.Task) and registered
        assert loop is asyncio.get_running_loop()
        assert after is task and task is not asyncio.current_task()
        assert task.done() and session.status == 200

    async def test_contextvars_set_by_the_app_stay_in_its_request(self, eager: bool) -> None:
        """Each app run has its own copy of the context: a variable it sets is seen by it
        after suspending, and neither by the caller nor by the next request."""
        import contextvars

        var: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="unset")
        seen: list[tuple[str, str]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            before = var.get()
            var.set(scope["path"])
            await asyncio.sleep(0)
            seen.append((before, var.get()))
            await hello(scope, receive, send)

        await serve(app, frame(uri="/a"))
        await serve(app, frame(uri="/b"))

        assert seen == [("unset", "/a"), ("unset", "/b")]
        assert var.get() == "unset"

    async def test_an_anyio_task_group_and_cancel_scope_work_across_suspensions(
        self, eager: bool
    ) -> None:
        """anyio (what Starlette and FastAPI run on) keys its cancel scopes by the current
        task: a task group whose child suspends, and a timeout that fires while the app
        waits, behave as in any Task."""
        import anyio

        results: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            async def child() -> None:
                await anyio.sleep(0)
                results.append("child")

            async with anyio.create_task_group() as group:
                group.start_soon(child)
            with anyio.move_on_after(0.01) as timeout:
                await anyio.sleep(10)
            results.append(f"timed out: {timeout.cancelled_caught}")
            await hello(scope, receive, send)

        session = await serve(app, frame())

        assert results == ["child", "timed out: True"]
        assert session.status == 200

    async def test_an_app_failing_in_its_first_step_gets_a_500(self, eager: bool) -> None:
        """An exception raised before the app ever suspends is caught by the Task, eager or
        not: the adapter answers 500."""
        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise ValueError("boom")

        session = await serve(app, frame())

        assert session.status == 500 and session.ended

    async def test_a_suspended_app_is_cancelled_when_the_session_fails(self, eager: bool) -> None:
        """A failed session cancels the app's Task where it waits, and the app sees
        CancelledError."""
        waiting = asyncio.Event()
        outcome: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            waiting.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

        adapter = ASGIAdapter(app, Config(access_log=False, lifespan="off"))
        await adapter.startup()
        session = FakeSession()
        adapter(session)
        session.request(frame())
        await asyncio.wait_for(waiting.wait(), 10)
        (task,) = adapter.tasks
        session.fail(1, "gone")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)

        assert outcome == ["cancelled"] and task.cancelled() and not adapter.tasks
