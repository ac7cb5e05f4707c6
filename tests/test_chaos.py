"""Chaos: real HTTP workers (a Flask app and a bare ASGI app, tests/workers/chaos_apps.py) under
bad input and faults, seen from the engine side: bad messages with sessions in flight, a worker
killed or stopped mid-response, the engine socket closed under load, hung and crashing apps, a
queue flood, and a long run with per-session accounting. Every wait is bounded; nothing here
asserts how fast anything is."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cocaine_http.aio.worker import EXIT_CONNECTION_LOST
from cocaine_http.dev.engine import QUEUE_FULL
from cocaine_http.dev.profile import Profile
from cocaine_http.protocol.dialect import pack
from tests.plugins.apps import frame, worker_pids
from tests.plugins.chaos import (
    ASGI,
    FLASK,
    CountingEngine,
    WorkerProcess,
    gone,
    http_invoke,
    protocol_options,
    decode,
    response,
)
from tests.plugins.devruntime import RecordingSink, enqueue, wait_for
from tests.plugins.worker import WAIT, Engine
from tests.test_worker import BAD_MESSAGES, DECODER_ENVS, VICTIM

APPS = [pytest.param(FLASK, id="wsgi"), pytest.param(ASGI, id="asgi")]
#: The worker's default termination grace (docs/worker.md); exits are awaited for this long plus
#: a margin for a loaded machine.
GRACE = 5.0
MARGIN = 5.0


async def wait(awaitable: Any, timeout: float = WAIT) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


async def started(engine: Engine, chaos_worker: Callable[..., Any], target: str,
                  *options: str, env: dict[str, str] | None = None) -> WorkerProcess:
    """A worker serving `target`, connected (handshake and first heartbeat seen)."""
    worker: WorkerProcess = await chaos_worker(engine, target, *options, env=env)
    try:
        await wait(engine.connected(), 30)
    except asyncio.TimeoutError:
        raise AssertionError(f"the worker did not connect:\n{worker.text}") from None
    return worker


async def get(engine: Engine, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One whole request through the engine: (status, body)."""
    method = "POST" if body else "GET"
    return response(await engine.reply(http_invoke(engine, method, path, body)))


async def chunks(engine: Engine, sid: int, count: int) -> list[bytes]:
    """The session's reply chunks once at least `count` have arrived."""
    await wait_for(lambda: len(engine.replies[sid].chunks) >= count, WAIT)
    return list(engine.replies[sid].chunks)


# -- 1. bad messages at a live HTTP worker ------------------------------------------------------

#: The messages of the bad-input list sent with the session ids they were reported with: to a
#: session that is not open (the invoke is answered, the rest dropped).
LITERAL: list[tuple[str, list[Any], tuple[int, str] | None]] = [
    ("invoke-7-without-event", [3, 7, []],
     (1, "bad invoke message: invoke takes one event name, got []")),
    ("error-7-without-args", [5, 7, []], None),
    ("chunk-7-without-payload", [4, 7, []], None),
]  # fmt: skip


class TestBadMessagesUnderHTTP:
    """Each bad message of the list, one after the other, at one live HTTP worker while other
    sessions are in flight: a request still arriving and a response half sent. Each fails
    only its own session (or is dropped); the worker answers the next request every time."""

    @pytest.mark.parametrize("decoder_env", DECODER_ENVS)
    @pytest.mark.parametrize("target", APPS)
    async def test_every_bad_message_fails_only_its_session(
        self, target: str, decoder_env: dict[str, str], engine: Engine,
        chaos_worker: Callable[..., Any],
    ) -> None:  # fmt: skip
        worker = await started(engine, chaos_worker, target, env=decoder_env)
        warmup = [await get(engine, "/quick") for _ in range(3)]
        # Right after three normal sessions (ids 1-3), the literal messages for session 7.
        outcomes, dropped = await send_literal(engine)
        engine._next = 100  # ids below are the literal cases'
        arriving = http_invoke(engine, "POST", "/echo", b"still arriving", choke=False)
        streaming = http_invoke(engine, "GET", "/stream")
        head = await chunks(engine, streaming, 2)
        more, more_dropped = await send_bad(engine)
        outcomes.update(more)
        dropped += more_dropped
        engine.send_choke(arriving)
        arrived = response(await engine.reply(arriving))
        await wait_for(lambda: worker.text.count("dropped: bad") >= dropped, WAIT)

        assert warmup == [(200, b"ok")] * 3
        for case, _, expected in LITERAL:
            if expected is not None:
                assert outcomes[case] == expected, case
            assert outcomes[case + " then"] == (200, b"ok"), case
        for case, (message, expected) in BAD_MESSAGES.items():
            if expected is None:
                assert outcomes[case] == (200, b"victim"), case
            else:
                assert outcomes[case] == expected, case
                if message[1] != VICTIM:
                    assert outcomes[case + " victim"] == (200, b"victim"), case
            assert outcomes[case + " then"] == (200, b"ok"), case
        assert arrived == (200, b"still arriving")
        stream = engine.replies[streaming]
        assert response(stream) == (200, b"first\n") and len(head) == 2
        assert stream.error is None and not stream.choked.done()
        assert worker.proc.returncode is None
        assert "Segmentation fault" not in worker.text and "BufferError" not in worker.text


async def send_literal(engine: Engine) -> tuple[dict[str, Any], int]:
    """Send each LITERAL message, then a normal request: (outcomes by case, messages dropped)."""
    assert engine.channel is not None
    outcomes: dict[str, Any] = {}
    dropped = 0
    for case, message, expected in LITERAL:
        engine.channel.send(7, pack(message))
        if expected is None:
            dropped += 1
        else:
            outcomes[case] = (await engine.reply(7)).error
        outcomes[case + " then"] = await get(engine, "/quick")
    return outcomes, dropped


async def send_bad(engine: Engine) -> tuple[dict[str, Any], int]:
    """Send each BAD_MESSAGES case at a fresh victim session (a request still arriving), then
    a normal request: (outcomes by case, messages dropped). A victim the message does not hit
    is completed and its answer recorded."""
    assert engine.channel is not None
    outcomes: dict[str, Any] = {}
    dropped = 0
    for case, (message, expected) in BAD_MESSAGES.items():
        victim = http_invoke(engine, "POST", "/echo", b"victim", choke=False)
        sid = victim if message[1] == VICTIM else message[1]
        engine.channel.send(sid, pack([message[0], sid, message[2]]))
        if expected is None:
            dropped += 1
            engine.send_choke(victim)
            outcomes[case] = response(await engine.reply(victim))
        else:
            outcomes[case] = (await engine.reply(sid)).error
            if sid != victim:
                engine.send_choke(victim)
                outcomes[case + " victim"] = response(await engine.reply(victim))
        outcomes[case + " then"] = await get(engine, "/quick")
    return outcomes, dropped


# -- 2. a worker killed or stopped mid-response, under the dev runtime -------------------------

DISCONNECTED = "slave has unexpectedly disconnected"


async def one_worker(dev_app_runtime: Callable[..., Any], target: str, *app_args: str,
                     **options: Any) -> Any:
    """The dev runtime serving `target` (with its options) with one worker at most, services
    off."""
    options.setdefault("profile", Profile(pool_limit=1, termination_timeout=1.0))
    return await dev_app_runtime(target, *app_args, services=False, **options)


async def pid_of(client: httpx.AsyncClient) -> int:
    reply = await client.get("/pid")
    assert reply.status_code == 200, reply.text
    return int(reply.text)


async def first_line(client: httpx.AsyncClient, path: str) -> tuple[Any, Any]:
    """Open a streamed GET and read up to its first body line: (context, response)."""
    context = client.stream("GET", path)
    streamed = await context.__aenter__()
    lines = streamed.aiter_lines()
    assert streamed.status_code == 200 and await anext(lines) == "first"
    return context, lines


async def truncated(lines: Any) -> bool:
    """True when the rest of a streamed response fails: the client knows it is incomplete."""
    try:
        async for _ in lines:
            pass
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return True
    return False


async def in_flight(runtime: Any, count: int) -> None:
    """Wait until the engine has `count` sessions on its workers."""
    await wait_for(lambda: runtime.engine.info()["sessions"]["pending"] >= count)


class TestWorkerKilledOrStopped:
    @pytest.mark.parametrize("target", APPS)
    async def test_sigkill_mid_response_fails_its_requests_and_a_fresh_worker_serves_on(
        self, target: str, dev_app_runtime: Callable[..., Any]
    ) -> None:
        """SIGKILL with one response half sent and one not started: the first client sees a
        truncated response (the connection closes before the chunked end), the second an
        error status naming the cause; the next requests are served by a new process."""
        runtime = await one_worker(dev_app_runtime, target)
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
            pid = await pid_of(client)
            context, lines = await first_line(client, "/stream")
            waiting = asyncio.ensure_future(client.get("/hang"))
            await in_flight(runtime, 2)

            os.kill(pid, signal.SIGKILL)
            cut = await wait(truncated(lines))
            failed = await wait(waiting)
            await context.__aexit__(None, None, None)
            after = [await pid_of(client) for _ in range(3)]

        assert cut
        assert failed.status_code >= 500 and DISCONNECTED in failed.text
        assert after[0] != pid and after == [after[0]] * 3
        assert gone(pid) and worker_pids(runtime) == [after[0]]

    async def test_a_request_whose_worker_died_gets_502(
        self, dev_app_runtime: Callable[..., Any]
    ) -> None:
        runtime = await one_worker(dev_app_runtime, ASGI)
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
            pid = await pid_of(client)
            waiting = asyncio.ensure_future(client.get("/hang"))
            await in_flight(runtime, 1)
            os.kill(pid, signal.SIGKILL)
            failed = await wait(waiting)

        assert failed.status_code == 502

    @pytest.mark.slow
    async def test_sigstop_mid_response_gives_504_and_a_fresh_worker_serves_on(
        self, dev_app_runtime: Callable[..., Any]
    ) -> None:
        """A stopped worker answers nothing: a request waiting on it gets 504 at the front's
        timeout, the half-sent response is cut, the engine drops the worker at its heartbeat
        timeout and the next request is served by a new process. (A stopped process runs no
        app code, so one app is enough.)"""
        profile = Profile(pool_limit=1, heartbeat_timeout=6.0, termination_timeout=1.0)
        runtime = await one_worker(dev_app_runtime, ASGI, profile=profile,
                                   request_timeout=2.0)
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
            pid = await pid_of(client)
            context, lines = await first_line(client, "/stream")
            os.kill(pid, signal.SIGSTOP)
            try:
                stuck = await client.get("/quick")
                cut = await wait(truncated(lines))
                await context.__aexit__(None, None, None)
                await wait_for(lambda: not runtime.engine.pool, 15)
                after = await pid_of(client)
            finally:
                with contextlib.suppress(ProcessLookupError):  # the engine may have killed it
                    os.kill(pid, signal.SIGCONT)

        assert stuck.status_code == 504
        assert cut
        assert after != pid

    @pytest.mark.parametrize("fault", ["sigstop", "blocked-loop"])
    async def test_a_worker_dropped_at_its_heartbeat_timeout_leaves_no_process(
        self, fault: str, dev_app_runtime: Callable[..., Any]
    ) -> None:
        profile = Profile(pool_limit=1, heartbeat_timeout=6.0, termination_timeout=1.0)
        runtime = await one_worker(dev_app_runtime, ASGI, profile=profile, request_timeout=20)
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
            pid = await pid_of(client)
            if fault == "sigstop":
                os.kill(pid, signal.SIGSTOP)
            else:
                blocked = asyncio.ensure_future(client.get("/block"))
                await in_flight(runtime, 1)
            await wait_for(lambda: not runtime.engine.pool, 15)
            try:
                await wait_for(lambda: gone(pid), 3)
            finally:
                if fault == "sigstop" and not gone(pid):
                    os.kill(pid, signal.SIGCONT)
                if fault != "sigstop":
                    await wait(blocked)


# -- 3. the engine socket closed with sessions in flight ----------------------------------------

async def engine_gone(engine: Engine, worker: WorkerProcess) -> int:
    """Close the engine's side of the connection; the worker's exit code, awaited for its
    termination grace plus a margin."""
    assert engine.channel is not None
    engine.channel.close()
    try:
        return int(await worker.wait(GRACE + MARGIN))
    except asyncio.TimeoutError:
        raise AssertionError(f"the worker outlived its engine:\n{worker.text}") from None


class TestEngineGone:
    async def test_asgi_worker_exits_within_its_grace_with_sessions_in_flight(
        self, engine: Engine, chaos_worker: Callable[..., Any]
    ) -> None:
        """Hung handlers, a half-sent response, a request still arriving and requests being
        answered: the engine closes, every session is abandoned and the process is gone,
        with EXIT_CONNECTION_LOST, within the grace."""
        worker = await started(engine, chaos_worker, ASGI)
        hung = [http_invoke(engine, "GET", "/hang") for _ in range(20)]
        streaming = http_invoke(engine, "GET", "/stream")
        arriving = http_invoke(engine, "POST", "/echo", b"half", choke=False)
        await chunks(engine, streaming, 2)
        sleeping = [http_invoke(engine, "GET", "/sleep?s=0.2") for _ in range(20)]

        code = await engine_gone(engine, worker)

        assert code == EXIT_CONNECTION_LOST
        assert gone(worker.pid)
        assert not any(engine.replies[sid].chunks for sid in (*hung, arriving))

    async def test_wsgi_worker_exits_within_its_grace_with_hung_threads_and_a_queue(
        self, engine: Engine, chaos_worker: Callable[..., Any]
    ) -> None:
        """Both threads of the pool hung, twenty requests queued behind them and one still
        arriving: the engine closes, the process is gone within the grace, with
        EXIT_CONNECTION_LOST, and no queued request ever started."""
        worker = await started(engine, chaos_worker, FLASK, "--threads", "2")
        hung = [http_invoke(engine, "GET", "/hang") for _ in range(2)]
        await wait_for(lambda: worker.text.count("started /hang") == 2)
        queued = [http_invoke(engine, "GET", "/sleep?s=2") for _ in range(20)]
        arriving = http_invoke(engine, "POST", "/echo", b"half", choke=False)

        code = await engine_gone(engine, worker)  # what was sent is flushed before the close

        assert code == EXIT_CONNECTION_LOST
        assert gone(worker.pid)
        assert "started /sleep" not in worker.text, "a queued request ran after the engine left"
        assert not any(engine.replies[sid].chunks for sid in (*hung, *queued, arriving))


# -- 4. hung and crashing apps ------------------------------------------------------------------

class TestHungAndCrashingApps:
    @pytest.mark.parametrize("target", APPS)
    async def test_neighbours_of_hung_and_raising_requests_are_served(
        self, target: str, engine: Engine, chaos_worker: Callable[..., Any]
    ) -> None:
        """Three requests that never answer hold their thread (WSGI, four threads) or task
        (ASGI); among a hundred neighbours every tenth raises: each raising one gets its 500,
        every neighbour its own body, and the hung ones stay open without an error."""
        worker = await started(engine, chaos_worker, target, "--threads", "4")
        hung = [http_invoke(engine, "GET", "/hang") for _ in range(3)]
        sent: dict[int, bytes | None] = {}
        for n in range(100):
            if n % 10 == 9:
                sent[http_invoke(engine, "GET", "/raise")] = None
            else:
                body = b"neighbour %d" % n
                sent[http_invoke(engine, "POST", "/echo", body)] = body
        answers = {sid: response(await engine.reply(sid)) for sid in sent}
        await wait_for(lambda: worker.text.count("the app failed on purpose") >= 10, WAIT)

        for sid, expected in sent.items():
            assert answers[sid] == ((500, answers[sid][1]) if expected is None else (200, expected))
        assert sum(1 for expected in sent.values() if expected is None) == 10
        for sid in hung:
            assert engine.replies[sid].error is None and not engine.replies[sid].choked.done()
        assert worker.proc.returncode is None

    @pytest.mark.parametrize("target", APPS)
    async def test_an_app_that_exits_the_process_costs_its_worker_only(
        self, target: str, dev_app_runtime: Callable[..., Any]
    ) -> None:
        """os._exit in a request: that request and its neighbour on the same worker get an
        error status naming the cause (no hang); the next requests get a fresh worker."""
        runtime = await one_worker(dev_app_runtime, target)
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
            pid = await pid_of(client)
            neighbour = asyncio.ensure_future(client.get("/hang"))
            await in_flight(runtime, 1)
            crashed = await client.get("/exit")
            lost = await wait(neighbour)
            after = [await pid_of(client) for _ in range(3)]

        for reply in (crashed, lost):
            assert reply.status_code >= 500 and DISCONNECTED in reply.text
        assert after[0] != pid and after == [after[0]] * 3
        assert gone(pid)
        assert runtime.engine.spawned == 2

    @pytest.mark.slow
    async def test_an_asgi_app_that_blocks_its_loop_loses_its_worker_not_the_app(
        self, dev_app_runtime: Callable[..., Any]
    ) -> None:
        """A handler that blocks the event loop stops the worker's heartbeats: at the
        heartbeat timeout the engine fails the worker's sessions with "slave has timed out"
        and the next request is served by a new process."""
        profile = Profile(pool_limit=1, heartbeat_timeout=6.0, termination_timeout=1.0)
        runtime = await one_worker(dev_app_runtime, ASGI, profile=profile, request_timeout=20)
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
            pid = await pid_of(client)
            neighbour = asyncio.ensure_future(client.get("/hang"))
            await in_flight(runtime, 1)
            blocked = await client.get("/block")
            lost = await wait(neighbour)
            after = await pid_of(client)

        for reply in (blocked, lost):
            assert reply.status_code >= 500 and "slave has timed out" in reply.text
        assert after != pid

    async def test_a_wsgi_pool_exhausted_by_hung_requests_is_replaced(
        self, dev_app_runtime: Callable[..., Any]
    ) -> None:
        """Both threads hung past --timeout 1: later requests are served again, by a new
        process, within a bounded time."""
        runtime = await one_worker(dev_app_runtime, FLASK, "--threads", "2", "--timeout", "1")
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
            pid = await pid_of(client)
            hung = await asyncio.gather(*(client.get("/hang") for _ in range(2)))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            served = None
            while served is None and loop.time() < deadline:
                reply = await client.get("/pid")
                served = int(reply.text) if reply.status_code == 200 else None

        assert all(reply.status_code >= 500 for reply in hung)
        assert served is not None and served != pid


# -- 5. a queue flood -----------------------------------------------------------------------------

class CountingSink(RecordingSink):
    """A RecordingSink that also counts chokes (a session answered twice shows)."""

    def __init__(self) -> None:
        super().__init__()
        self.chokes = 0

    def on_choke(self) -> None:
        self.chokes += 1
        super().on_choke()


class TestQueueFlood:
    async def test_engine_flood_refuses_past_the_queue_and_loses_nothing(
        self, dev_app_runtime: Callable[..., Any]
    ) -> None:
        """Fifty sessions at once at a worker with three slots and a queue of five: exactly
        three run, five wait, forty-two are refused with error(2, "the queue is full") at once;
        the eight accepted complete with their own body, once each. A second flood after the
        queue drained is treated the same (nothing stuck)."""
        profile = Profile(pool_limit=1, concurrency=3, queue_limit=5)
        runtime = await one_worker(dev_app_runtime, ASGI, profile=profile)
        engine = runtime.engine
        warm = await enqueue(engine, "http", frame("GET", "/quick")).wait()
        assert warm.choked and not warm.errors
        rounds = []
        for flood in range(2):
            sinks = []
            for n in range(50):
                sink = CountingSink()
                engine.enqueue("http", frame("POST", "/echo", b"%d-%d" % (flood, n)), sink)
                sinks.append(sink)
            refused = [n for n, sink in enumerate(sinks) if sink.errors]
            for sink in sinks:
                if not sink.errors:
                    await sink.wait()
            rounds.append((refused, sinks))

        for flood, (refused, sinks) in enumerate(rounds):
            assert refused == list(range(8, 50))
            for n, sink in enumerate(sinks):
                if n in refused:
                    assert (sink.errors, sink.chunks, sink.chokes) == ([(2, QUEUE_FULL)], [], 0)
                else:
                    status, body = decode(sink.chunks)
                    assert (status, body, sink.errors, sink.chokes) == (
                        200, b"%d-%d" % (flood, n), [], 1)
        assert engine.info()["queue"]["depth"] == 0

    async def test_front_flood_answers_each_request_once_with_its_body_or_503(
        self, dev_app_runtime: Callable[..., Any]
    ) -> None:
        """Forty concurrent HTTP requests at two slots and a queue of three: each gets exactly
        its own answer, 200 with its body or 503 "the queue is full"; the accepted ones fill
        at least the slots and the queue."""
        profile = Profile(pool_limit=1, concurrency=2, queue_limit=3)
        runtime = await one_worker(dev_app_runtime, ASGI, profile=profile)
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30, limits=limits) as client:
            assert (await client.get("/quick")).status_code == 200
            replies = await asyncio.gather(*(
                client.post("/sleep?s=1.5", content=b" %d" % n) for n in range(40)))

        served = [n for n, r in enumerate(replies) if r.status_code == 200]
        refused = [n for n, r in enumerate(replies) if r.status_code == 503]
        assert sorted(served + refused) == list(range(40))
        for n in served:
            assert replies[n].content == b"slept %d" % n
        for n in refused:
            assert replies[n].text == "the queue is full\n"
        assert len(served) >= 5 and refused


    async def test_a_worker_killed_in_a_flood_loses_only_its_own_sessions(
        self, dev_app_runtime: Callable[..., Any]
    ) -> None:
        """3000 sessions queued at two workers of fifty slots; after the 500th answer one
        worker is SIGKILLed. Every session ends exactly once: with its own body and one choke,
        or (one of the killed worker's, at most fifty) with error(2, "slave has unexpectedly
        disconnected") and no choke; the rest of the queue is served by the survivors."""
        # startup_timeout: a replacement worker spawned during the flood starts on a busy CPU
        profile = Profile(pool_limit=2, concurrency=50, queue_limit=0, grow_threshold=1,
                          startup_timeout=60.0)
        runtime = await one_worker(dev_app_runtime, ASGI, profile=profile)
        engine = runtime.engine
        warm = [enqueue(engine, "http", frame("GET", "/quick")) for _ in range(2)]
        for sink in warm:
            await sink.wait()
        await wait_for(lambda: len(worker_pids(runtime)) == 2)
        victim = worker_pids(runtime)[0]
        answered = [0]

        class Sink(CountingSink):
            def on_choke(self) -> None:
                super().on_choke()
                answered[0] += 1
                if answered[0] == 500:
                    os.kill(victim, signal.SIGKILL)

        sinks = [Sink() for _ in range(3000)]
        for n, sink in enumerate(sinks):
            engine.enqueue("http", frame("POST", "/echo", b"%d" % n), sink)
        for sink in sinks:
            await sink.wait(60)

        failed = [n for n, sink in enumerate(sinks) if sink.errors]
        for n, sink in enumerate(sinks):
            if n in failed:
                assert (sink.errors, sink.chokes) == ([(2, DISCONNECTED)], 0), n
            else:
                assert (decode(sink.chunks), sink.errors, sink.chokes) == (
                    (200, b"%d" % n), [], 1), n
        assert 1 <= len(failed) <= 50
        assert gone(victim) and victim not in worker_pids(runtime)


# -- 6. a long run with per-session accounting ----------------------------------------------------

#: Requests of the long run per app, and how many are in flight at once. On a loaded 2-core
#: machine 100k take about 4 s under ASGI and 12-20 s under WSGI (docs/robustness.md), so the
#: WSGI run is half as long; COCAINE_HTTP_CHAOS_REQUESTS=N runs N of each instead.
_REQUESTS = os.environ.get("COCAINE_HTTP_CHAOS_REQUESTS")
LONG_RUN = {ASGI: int(_REQUESTS or 100_000), FLASK: int(_REQUESTS or 50_000)}
IN_FLIGHT = 256


def bad_chunk(engine: Engine, sid: int) -> bytes:
    """A request chunk `[5]` on session `sid`: v0.11 `[4, sid, [5]]`, v0.12 (channel first)
    a write `[sid, 0, [5]]`."""
    if engine.dialect.name == "v0.12":
        return pack([sid, 0, [5]])
    return pack([4, sid, [5]])


class TestLongRun:
    @pytest.mark.slow
    @pytest.mark.parametrize("target", APPS)
    async def test_every_request_is_answered_exactly_once(
        self, target: str, counting_engine: CountingEngine, chaos_worker: Callable[..., Any]
    ) -> None:
        """LONG_RUN requests at the worker socket of an HTTP worker, IN_FLIGHT at a time,
        each with a body naming its session: every session gets exactly one choke, no error,
        a 200 with its own body; no message comes for a session never opened."""
        engine = counting_engine
        raw = engine.dialect.raw_body
        total = LONG_RUN[target]
        worker = await started(engine, chaos_worker, target, "--no-access-log",
                               *protocol_options(engine))
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        opened: list[int] = []
        done = [0]

        def open_one() -> None:
            sid = http_invoke(engine, "POST", "/echo", b"%d" % (engine._next))
            opened.append(sid)

        def on_done(sid: int) -> None:
            done[0] += 1
            if len(opened) < total:
                open_one()
            elif done[0] == total:
                finished.set_result(None)

        engine.on_done = on_done
        engine._next = 2  # bodies name the session; v0.12's channel 1 is control, not a session
        for _ in range(min(IN_FLIGHT, total)):
            open_one()
        await wait(finished, 60)
        await wait(engine.reply(http_invoke(engine, "GET", "/quick")))  # a last round trip

        assert len(opened) == len(set(opened)) == total
        assert engine.orphans == []
        assert set(engine.chokes) == {*opened, opened[-1] + 1}
        assert set(engine.chokes.values()) == {1} and not engine.errors
        wrong = [sid for sid in opened if response(engine.replies[sid], raw) != (200, b"%d" % sid)]
        assert wrong == []
        assert worker.proc.returncode is None

    @pytest.mark.parametrize("target", APPS)
    async def test_bad_messages_in_a_long_run_fail_only_their_sessions(
        self, target: str, counting_engine: CountingEngine, chaos_worker: Callable[..., Any]
    ) -> None:
        """20,000 requests, IN_FLIGHT at a time, where every hundredth session gets a chunk
        `[5]` instead of its choke: exactly those get one error (and one choke), every other
        session its own body, once."""
        engine = counting_engine
        raw = engine.dialect.raw_body
        total = 20_000
        worker = await started(engine, chaos_worker, target, "--no-access-log",
                               *protocol_options(engine))
        finished = asyncio.get_running_loop().create_future()
        opened: list[int] = []
        done = [0]

        def open_one() -> None:
            sid = engine._next
            if sid % 100:
                opened.append(http_invoke(engine, "POST", "/echo", b"%d" % sid))
                return
            opened.append(http_invoke(engine, "POST", "/echo", b"%d" % sid, choke=False))
            assert engine.channel is not None
            engine.channel.send(sid, bad_chunk(engine, sid))

        def on_done(sid: int) -> None:
            done[0] += 1
            if len(opened) < total:
                open_one()
            elif done[0] == total:
                finished.set_result(None)

        engine.on_done = on_done
        engine._next = 2  # bodies name the session; v0.12's channel 1 is control, not a session
        for _ in range(IN_FLIGHT):
            open_one()
        await wait(finished, 60)

        bad = {sid for sid in opened if sid % 100 == 0}
        assert len(opened) == len(set(opened)) == total and len(bad) == total // 100
        assert engine.orphans == [] and set(engine.chokes.values()) == {1}
        assert set(engine.errors) == bad and set(engine.errors.values()) == {1}
        for sid in bad:
            assert engine.replies[sid].error == (
                1, "bad chunk message: chunk takes one raw string, got [5]")
        wrong = [sid for sid in opened
                 if sid not in bad and response(engine.replies[sid], raw) != (200, b"%d" % sid)]
        assert wrong == []
        assert worker.proc.returncode is None
