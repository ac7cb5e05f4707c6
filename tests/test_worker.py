"""Worker and Session against an in-test engine peer: real unix sockets, real processes."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from cocaine_http.aio.worker import (
    EXIT_CONNECTION_LOST,
    EXIT_DISOWNED,
    SEND_BUFFER,
    Session,
    Worker,
)
from cocaine_http.codec import CDecoder, PythonDecoder
from cocaine_http.errors import SessionClosedError, SessionError
from cocaine_http.protocol.dialect import V0_12, pack, raw_header
from cocaine_http.protocol.session import SessionMachine
from cocaine_http.protocol.worker import Refusal, WorkerConnection, WorkerState
from tests.plugins.worker import (
    LOOP_KINDS,
    UUID,
    WAIT,
    Engine,
    RecordingChannel,
    run_on,
    worker_argv,
)

HANDSHAKE_HEX = "93000091da0024" + UUID.encode().hex()


async def started(engine: Engine, worker: Worker) -> asyncio.Task[int]:
    """Run worker.serve() and wait until the engine has seen its first heartbeat."""
    task = asyncio.get_running_loop().create_task(worker.serve())
    await engine.connected()
    return task


def make_worker(engine: Engine, **kwargs: Any) -> Worker:
    worker = Worker(worker_argv(engine.path), **kwargs)

    @worker.on("ping")
    async def ping(session: Session) -> None:
        async for chunk in session:
            session.write(chunk)
        session.end()

    return worker


async def wait(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, WAIT)


class TestWorkerProcess:
    async def test_first_bytes_are_handshake_then_heartbeat(self, tmp_path, spawn_worker) -> None:
        """The spawned worker's first bytes match docs/protocol.md §11.1 exactly."""
        path = str(tmp_path / "raw.sock")
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        expected = bytes.fromhex(HANDSHAKE_HEX + "93010090")

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received.set_result(await reader.readexactly(len(expected)))
            writer.close()

        server = await asyncio.start_unix_server(accept, path)
        await spawn_worker("examples/echo_worker.py", worker_argv(path))

        data = await wait(received)
        server.close()

        assert data.hex() == expected.hex()

    async def test_echo_worker_serves_interleaved_sessions_and_exits_zero(
        self, engine: Engine, spawn_worker: Callable[..., Any]
    ) -> None:
        """Two sessions with interleaved chunks get their own answers; terminate exits 0."""
        proc = await spawn_worker("examples/echo_worker.py", worker_argv(engine.path))
        await engine.connected()

        first = engine.invoke("ping", b"a1", choke=False)
        second = engine.invoke("upper", b"b1", choke=False)
        engine.send_chunk(first, b"a2")
        engine.send_chunk(second, b"b2")
        engine.send_choke(second)
        engine.send_choke(first)
        ping, upper = await engine.reply(first), await engine.reply(second)
        engine.terminate("slave is idle")
        terminated = await wait(engine.terminated)

        assert ping.chunks == [b"a1", b"a2"] and upper.chunks == [b"B1B2"]
        assert await engine.handshake == UUID
        assert terminated == (1, "slave is idle")
        assert await wait(proc.wait()) == 0


class TestSessions:
    async def test_sessions_run_concurrently(self, engine: Engine) -> None:
        """A session blocked in its handler does not hold up another one."""
        worker = make_worker(engine)
        gate = asyncio.Event()

        @worker.on("wait")
        async def blocked(session: Session) -> None:
            await gate.wait()
            session.write(b"late")

        task = await started(engine, worker)
        slow = engine.invoke("wait")
        fast = engine.invoke("ping", b"quick")
        fast_reply = await engine.reply(fast)
        slow_done_first = engine.replies[slow].choked.done()
        gate.set()
        slow_reply = await engine.reply(slow)

        assert fast_reply.chunks == [b"quick"] and not slow_done_first
        assert slow_reply.chunks == [b"late"]
        worker.stop()
        assert await wait(task) == 0

    async def test_unknown_event_gets_error_then_choke(self, engine: Engine) -> None:
        """An event without a handler is answered with error -100 and a choke."""
        worker = make_worker(engine)
        task = await started(engine, worker)

        reply = await engine.reply(engine.invoke("nope", b"x"))

        assert reply.error == (-100, "there is no handler for event nope")
        worker.stop()
        await wait(task)

    async def test_handler_exception_errors_session_and_worker_goes_on(
        self, engine: Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A raising handler yields error(1, text)+choke, a logged traceback, and no crash."""
        worker = make_worker(engine)

        @worker.on("boom")
        async def boom(session: Session) -> None:
            raise ValueError("kaput")

        task = await started(engine, worker)
        with caplog.at_level(logging.ERROR, logger="cocaine_http.worker"):
            failed = await engine.reply(engine.invoke("boom"))
        after = await engine.reply(engine.invoke("ping", b"still here"))

        assert failed.error is not None and failed.error[0] == 1 and "kaput" in failed.error[1]
        assert any(r.exc_info and "kaput" in str(r.exc_info[1]) for r in caplog.records)
        assert after.chunks == [b"still here"]
        worker.stop()
        await wait(task)

    async def test_engine_error_reaches_reader_as_session_error(self, engine: Engine) -> None:
        """An engine error on a session raises SessionError(code, message) in read()."""
        worker = make_worker(engine)
        seen: asyncio.Future[SessionError] = asyncio.get_running_loop().create_future()

        @worker.on("read")
        async def read(session: Session) -> None:
            try:
                await session.read()
            except SessionError as exc:
                seen.set_result(exc)
            with pytest.raises(SessionClosedError):
                session.write(b"too late")

        task = await started(engine, worker)
        sid = engine.invoke("read", choke=False)
        engine.send_error(sid, 2, "client went away")
        exc = await wait(seen)

        assert (exc.code, exc.message) == (2, "client went away")
        worker.stop()
        assert await wait(task) == 0

    async def test_write_list_is_one_chunk_of_parts(self, engine: Engine) -> None:
        """write([a, b]) frames one chunk whose payload is a and b back to back."""
        worker = make_worker(engine)

        @worker.on("parts")
        async def parts(session: Session) -> None:
            session.write([b"head-", memoryview(b"body")])
            session.error(42, "after data")

        task = await started(engine, worker)
        reply = await engine.reply(engine.invoke("parts"))

        assert reply.chunks == [b"head-body"] and reply.error == (42, "after data")
        worker.stop()
        await wait(task)

    async def test_raw_session_callbacks_and_zero_copy_response(self, engine: Engine) -> None:
        """raw=True: factory at invoke, chunks via on_chunk, end via on_end, no Task."""
        worker = make_worker(engine)
        events: list[Any] = []

        def factory(session: Session) -> None:
            events.append(("invoke", session.id, asyncio.current_task() is None))
            session.on_chunk = lambda data: events.append(("chunk", data))

            def on_end() -> None:
                events.append(("end",))
                session.write(b"\x92\xcc\xc8\x90")  # head [200, []]
                session.write([raw_header(5), b"hello"])  # msgpack string body, not joined
                session.end()

            session.on_end = on_end

        worker.on("http", factory, raw=True)
        task = await started(engine, worker)
        sid = engine.invoke("http", b"frame")
        reply = await engine.reply(sid)

        assert events == [("invoke", sid, True), ("chunk", b"frame"), ("end",)]
        assert reply.chunks == [b"\x92\xcc\xc8\x90", b"\xa5hello"]
        worker.stop()
        await wait(task)

    async def test_session_timeout_aborts_and_cancels_handler(self, engine: Engine) -> None:
        """A handler past session_timeout is cancelled and the engine gets error(3)+choke."""
        worker = make_worker(engine, session_timeout=0.2)
        cancelled = asyncio.Event()

        @worker.on("hang")
        async def hang(session: Session) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        task = await started(engine, worker)
        reply = await engine.reply(engine.invoke("hang", choke=False))
        await wait(cancelled.wait())

        assert reply.error is not None and reply.error[0] == 3
        assert "timed out" in reply.error[1]
        worker.stop()
        await wait(task)

    async def test_v012_protocol_handshake_and_session(self, tmp_path) -> None:
        """With --protocol 1 the worker speaks v0.12 framing on channel 1 and streams."""
        engine = await Engine(str(tmp_path / "v12.sock"), V0_12).start()
        worker = Worker([*worker_argv(engine.path), "--protocol", "1"])

        @worker.on("ping")
        async def ping(session: Session) -> None:
            session.write(await session.read() or b"")

        try:
            task = await started(engine, worker)
            reply = await engine.reply(engine.invoke("ping", b"v12"))
            bad = await engine.reply(engine.invoke("nope"))
            worker.stop()
            code = await wait(task)
        finally:
            await engine.close()

        assert await engine.handshake == UUID
        assert reply.chunks == [b"v12"]
        assert bad.error == (-100, "there is no handler for event nope") and bad.chunks == []
        assert code == 0


class TestLifecycle:
    async def test_heartbeats_repeat_at_interval(self, engine: Engine) -> None:
        """After the first heartbeat, more follow every heartbeat_interval."""
        worker = make_worker(engine, heartbeat_interval=0.02)
        task = await started(engine, worker)

        await engine.wait_heartbeats(4)

        worker.stop()
        assert await wait(task) == 0

    async def test_terminate_drains_inflight_sessions(self, engine: Engine) -> None:
        """Terminate refuses new invokes, lets open ones finish, runs shutdown hooks, answers
        terminate(1, reason) and serve() returns 0."""
        worker = make_worker(engine)
        gate = asyncio.Event()
        order: list[str] = []

        @worker.on("wait")
        async def blocked(session: Session) -> None:
            await gate.wait()
            session.write(b"finished")

        async def shutdown() -> None:
            order.append(f"hook, terminated={engine.terminated.done()}")

        worker.shutdown_hooks.append(shutdown)
        terminate_seen = worker.events.wait("terminate")
        task = await started(engine, worker)
        inflight = engine.invoke("wait")
        engine.terminate("the engine is shutting down")
        await wait(terminate_seen)
        refused = await engine.reply(engine.invoke("ping", b"x"))
        gate.set()
        drained = await engine.reply(inflight)
        code = await wait(task)

        assert refused.error == (2, "the worker is shutting down")
        assert drained.chunks == [b"finished"] and drained.error is None
        assert order == ["hook, terminated=False"]
        assert await wait(engine.terminated) == (1, "the engine is shutting down")
        assert code == 0

    async def test_grace_expiry_aborts_remaining_sessions(self, engine: Engine) -> None:
        """Sessions still open after termination_grace get error(2)+choke; exit is still 0."""
        worker = make_worker(engine, termination_grace=0.2)
        failures: list[tuple[int, str]] = []

        def factory(session: Session) -> None:
            session.on_fail = lambda code, message: failures.append((code, message))

        worker.on("stuck", factory, raw=True)
        task = await started(engine, worker)
        sid = engine.invoke("stuck")
        engine.terminate("bye")
        reply = await engine.reply(sid)
        code = await wait(task)

        assert reply.error == (2, "the worker is shutting down")
        assert failures == [(2, "the worker is shutting down")]
        assert await wait(engine.terminated) == (1, "bye") and code == 0

    async def test_disown_when_engine_stops_echoing(self, engine: Engine) -> None:
        """No echo for disown_timeout: 'disown' fires, readers fail, serve() is non-zero."""
        worker = make_worker(engine, heartbeat_interval=0.05, disown_timeout=0.3)
        failed: asyncio.Future[SessionError] = asyncio.get_running_loop().create_future()

        @worker.on("read")
        async def read(session: Session) -> None:
            try:
                await session.read()
            except SessionError as exc:
                failed.set_result(exc)

        disowned = worker.events.wait("disown")
        task = await started(engine, worker)
        engine.echo = False
        engine.invoke("read", choke=False)
        await wait(disowned)

        assert isinstance(await wait(failed), SessionError)
        assert await wait(task) == EXIT_DISOWNED

    async def test_engine_eof_aborts_sessions_and_exits_nonzero(self, engine: Engine) -> None:
        """The engine closing its socket fails open sessions and emits 'error' with an errno."""
        worker = make_worker(engine)
        failures: list[int] = []
        worker.on("raw", lambda s: setattr(s, "on_fail", lambda c, m: failures.append(c)),
                  raw=True)  # fmt: skip
        errored = worker.events.wait("error")
        task = await started(engine, worker)
        sid = engine.invoke("raw", choke=False)
        await engine.reply(engine.invoke("ping"))  # the raw session is open by now
        assert sid in worker.sessions

        await engine.close()
        (code,) = await wait(errored)

        assert code in (errno.ESHUTDOWN, errno.ECONNRESET, errno.EPIPE)
        assert failures == [code]
        assert await wait(task) == EXIT_CONNECTION_LOST

    async def test_connect_failure_reports_errno(self, tmp_path) -> None:
        """No engine at the endpoint: 'error' carries the errno, serve() returns non-zero."""
        worker = Worker(worker_argv(str(tmp_path / "missing.sock")))
        errors: list[int] = []
        worker.events.on("error", errors.append)

        code = await wait(worker.serve())

        assert code == EXIT_CONNECTION_LOST
        assert errors == [errno.ENOENT]

    async def test_unix_engine_socket_gets_the_wide_send_buffer(self, engine: Engine) -> None:
        """Connected over a unix socket, the worker's send buffer is SEND_BUFFER (or the
        kernel's cap), not the default, so a 1 MiB response needs no partial writes."""
        worker = make_worker(engine)
        task = await started(engine, worker)
        sock = worker._channel._transport.get_extra_info("socket")  # type: ignore[union-attr]
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        worker.stop()
        await wait(task)

        with open("/proc/sys/net/core/wmem_max") as f:
            cap = int(f.read())
        # Linux doubles the value asked for (bookkeeping), after capping it at wmem_max.
        assert size == 2 * min(SEND_BUFFER, cap)

    async def test_startup_hooks_run_before_connect(self, engine: Engine) -> None:
        """Startup hooks finish before the handshake is sent; connect fires after."""
        worker = make_worker(engine)
        seen: list[str] = []

        async def startup() -> None:
            seen.append(f"startup, connected={engine.channel is not None}")

        worker.startup_hooks.append(startup)
        worker.events.on("connect", lambda: seen.append("connect"))
        task = await started(engine, worker)
        worker.stop()
        await wait(task)

        assert seen == ["startup, connected=False", "connect"]


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_scenarios_hold_on_asyncio_debug_and_uvloop(loop_kind: str, tmp_path) -> None:
    """Concurrency, drain, grace, timeout, disown and EOF behave the same on asyncio (debug
    mode) and on uvloop, with the worker in process."""
    sessions, lifecycle = TestSessions(), TestLifecycle()
    scenarios = [
        sessions.test_sessions_run_concurrently,
        sessions.test_raw_session_callbacks_and_zero_copy_response,
        sessions.test_session_timeout_aborts_and_cancels_handler,
        lifecycle.test_terminate_drains_inflight_sessions,
        lifecycle.test_grace_expiry_aborts_remaining_sessions,
        lifecycle.test_disown_when_engine_stops_echoing,
        lifecycle.test_engine_eof_aborts_sessions_and_exits_nonzero,
    ]

    async def run_all() -> None:
        for number, scenario in enumerate(scenarios):
            engine = await Engine(str(tmp_path / f"{number}.sock")).start()
            try:
                await scenario(engine)
            finally:
                await engine.close()

    run_on(loop_kind, run_all)


#: The decoder a spawned worker runs on, chosen by its environment.
DECODER_ENVS = [pytest.param({"COCAINE_HTTP_PUREPYTHON": "1"}, id="python")]
if CDecoder is not None:
    DECODER_ENVS.append(pytest.param({"COCAINE_HTTP_REQUIRE_C": "1"}, id="c"))

#: A victim session of the echo worker, open when the bad message arrives.
VICTIM = -1
#: Well-framed messages whose arguments do not fit, keyed by case: (message with VICTIM or a
#: fresh session id, the error the session then gets, or None when the message is dropped).
BAD_MESSAGES: dict[str, tuple[list[Any], tuple[int, str] | None]] = {
    "invoke-without-event": (
        [3, 50, []], (1, "bad invoke message: invoke takes one event name, got []")),
    "invoke-with-two-args": (
        [3, 51, [b"ping", b"x"]],
        (1, "bad invoke message: invoke takes one event name, got [b'ping', b'x']")),
    "chunk-of-an-int": (
        [4, VICTIM, [5]], (1, "bad chunk message: chunk takes one raw string, got [5]")),
    "error-with-a-text-code": (
        [5, VICTIM, [b"x", b"gone"]],
        (1, "bad error message: error takes an integer code and a message, "
            "got [b'x', b'gone']")),
    "chunk-without-payload": (
        [4, VICTIM, []], (1, "bad chunk message: chunk takes one raw string, got []")),
    "error-without-args": (
        [5, VICTIM, []],
        (1, "bad error message: error takes an integer code and a message, got []")),
    "terminate-without-code": ([2, 0, []], None),
    "terminate-with-a-text-code": ([2, 0, [b"x"]], None),
    "chunk-for-no-session": ([4, 999, [5]], None),
}  # fmt: skip


class TestBadMessages:
    """A well-framed message with arguments that do not fit fails its own session (or is
    dropped), on a spawned worker, while other sessions are in flight and complete."""

    @pytest.mark.parametrize("decoder_env", DECODER_ENVS)
    @pytest.mark.parametrize("case", list(BAD_MESSAGES))
    async def test_bad_message_fails_only_its_session(
        self, case: str, decoder_env: dict[str, str], engine: Engine,
        spawn_worker: Callable[..., Any],
    ) -> None:  # fmt: skip
        message, expected = BAD_MESSAGES[case]
        proc = await spawn_worker("examples/echo_worker.py", worker_argv(engine.path),
                                  decoder_env)  # fmt: skip
        await engine.connected()
        assert engine.channel is not None
        neighbours = [engine.invoke("ping", b"n1", choke=False) for _ in range(2)]
        victim = engine.invoke("ping", b"v1", choke=False)
        first = [await wait_chunks(engine, sid, 1) for sid in (*neighbours, victim)]
        sid = victim if message[1] == VICTIM else message[1]
        engine.channel.send(sid, pack([message[0], sid, message[2]]))
        if sid != victim:  # the bad message hit no open session: the victim is a neighbour too
            neighbours.append(victim)
        for neighbour in neighbours:
            engine.send_chunk(neighbour, b"n2")
            engine.send_choke(neighbour)
        replies = [await engine.reply(neighbour) for neighbour in neighbours]
        if expected is not None:
            failed = await engine.reply(sid)
        after = await engine.reply(engine.invoke("upper", b"still here"))
        engine.terminate("slave is idle")
        terminated = await wait(engine.terminated)
        code = await wait(proc.wait())
        assert proc.stdout is not None
        output = (await proc.stdout.read()).decode()

        assert first == [[b"n1"], [b"n1"], [b"v1"]]
        assert [(r.chunks[1:], r.error) for r in replies] == [([b"n2"], None)] * len(neighbours)
        if expected is not None:
            assert failed.error == expected
            assert failed.chunks == ([b"v1"] if sid == victim else [])
            assert expected[1] in output
        else:
            assert "dropped: bad" in output
        assert after.chunks == [b"STILL HERE"] and after.error is None
        assert terminated == (1, "slave is idle") and code == 0


async def wait_chunks(engine: Engine, sid: int, count: int) -> list[bytes]:
    """The session's reply chunks once `count` have arrived."""

    async def poll() -> list[bytes]:
        while len(engine.replies[sid].chunks) < count:
            await asyncio.sleep(0.01)
        return engine.replies[sid].chunks

    return list(await asyncio.wait_for(poll(), WAIT))


class TestBrokenStream:
    @pytest.mark.parametrize("decoder_env", DECODER_ENVS)
    @pytest.mark.parametrize(
        "data",
        [pytest.param(b"\xc1", id="bad-msgpack"),
         pytest.param(pack([4, 1]), id="not-id-session-args")],
    )  # fmt: skip
    async def test_broken_stream_closes_the_channel(
        self, data: bytes, decoder_env: dict[str, str], engine: Engine,
        spawn_worker: Callable[..., Any],
    ) -> None:  # fmt: skip
        """Bytes that are not a well-framed message leave nothing to trust after them: the
        worker logs a protocol error, fails its open sessions and exits with
        EXIT_CONNECTION_LOST."""
        proc = await spawn_worker("examples/echo_worker.py", worker_argv(engine.path),
                                  decoder_env)  # fmt: skip
        await engine.connected()
        assert engine.channel is not None
        sid = engine.invoke("ping", b"p1", choke=False)
        await wait_chunks(engine, sid, 1)

        engine.channel.send(sid, data)
        code = await wait(proc.wait())
        assert proc.stdout is not None
        output = (await proc.stdout.read()).decode()

        assert code == EXIT_CONNECTION_LOST
        assert "protocol error" in output and "EPROTO" in output


class TestFastPaths:
    @pytest.mark.parametrize("state", list(WorkerState))
    @pytest.mark.parametrize("known", [True, False], ids=["handler", "no-handler"])
    @pytest.mark.parametrize("duplicate", [False, True], ids=["new-id", "open-id"])
    @pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "timeout"])
    async def test_inline_invoke_agrees_with_the_connection(
        self, state: WorkerState, known: bool, duplicate: bool, timeout: float | None
    ) -> None:
        """Worker._on_invoke accepts the common invoke inline; in every worker state, with or
        without a handler, a fresh or an open id and a session timeout, it does exactly what
        WorkerConnection.receive_invoke + open_session decide: the same refusal bytes, the
        same session table, counters and state, or the same error."""
        worker = Worker(["--uuid", UUID, "--endpoint", "/unused"], session_timeout=timeout)
        worker.loop = asyncio.get_running_loop()
        wire = RecordingChannel()
        worker._channel = wire  # type: ignore[assignment]
        worker.on("ping", lambda session: None, raw=True)
        reference = WorkerConnection(UUID, worker.dialect, session_timeout=timeout)
        handlers = {"ping"} if known else set()
        event = "ping" if known else "nope"
        for conn in (worker._conn, reference):
            if duplicate:
                conn.state = WorkerState.ACTIVE
                conn.open_session(SessionMachine(7, "ping"))
            conn.state = state

        outcome = _attempt(lambda: worker._on_invoke(7, event))
        expected = _attempt(lambda: reference.receive_invoke(7, event, handlers))
        if expected is None:
            reference.open_session(SessionMachine(7, event), 0.0)
        sent = [(mid, args) for mid, args in wire.messages]
        refused = [] if not isinstance(expected, Refusal) else decode_v11(
            reference.refuse(7, expected))

        if isinstance(expected, Exception):
            assert type(outcome) is type(expected)
        else:
            assert outcome is None
        assert sent == refused
        assert (worker._conn.state, worker._conn.open_responses, set(worker.sessions)) == (
            reference.state, reference.open_responses, set(reference.sessions))
        for session in worker.sessions.values():
            if isinstance(session, Session) and session._timer is not None:
                session._timer.cancel()


def _attempt(act: Callable[[], Any]) -> Any:
    """What `act` returned, or the exception it raised."""
    try:
        return act()
    except Exception as exc:  # compared by type with the reference
        return exc


def decode_v11(data: bytes) -> list[tuple[int, list[Any]]]:
    return [(mid, args) for mid, _, args in PythonDecoder("v0.11").feed(data)]
