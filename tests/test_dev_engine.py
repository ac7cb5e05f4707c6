"""The dev engine against real raw worker processes (docs/protocol.md §3, §9, §11)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import msgpack
import pytest

from cocaine_http.aio.channel import Channel
from cocaine_http.dev.engine import NOT_ACTIVE, QUEUE_FULL, SHUTTING_DOWN, SPAWN_FAILED
from cocaine_http.dev.profile import Profile
from cocaine_http.dev.slave import NOT_EXECUTABLE, State
from cocaine_http.protocol.dialect import V0_11
from tests.plugins.devruntime import enqueue, wait_for

VECTOR_UUID = "0e7f4b9c-5d1a-4c2e-9a57-3f6c2b8d1e40"
HANDSHAKE_HEX = (
    "93000091da0024"
    "30653766346239632d356431612d346332652d396135372d336636633262386431653430"
)
HEARTBEAT_HEX = "93010090"


async def start(factory: Any, command: list[str], env: dict[str, str] | None = None,
                **profile: Any) -> Any:
    profile.setdefault("environment", env or {})
    runtime = await factory(command, app="raw", services=False, profile=Profile(**profile))
    return runtime.engine


class TestWire:
    async def test_handshake_and_heartbeat_bytes_match_the_vectors(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A worker's first bytes are the §11.1 handshake and heartbeat; the engine echoes."""
        reads: list[tuple[Channel, bytes]] = []
        runtime = await dev_runtime_factory(raw_worker_command, app="raw", services=False,
                                            on_wire=lambda ch, data: reads.append((ch, data)))

        sink = await enqueue(runtime.engine, "wire", tag=VECTOR_UUID).wait()

        first = reads[0][0]
        received = b"".join(data for ch, data in reads if ch is first)
        assert received.hex().startswith(HANDSHAKE_HEX + HEARTBEAT_HEX)
        expected_at_worker = (HEARTBEAT_HEX + V0_11.invoke(1, "wire").hex()
                              + V0_11.chunk(1, b"").hex() + V0_11.choke(1).hex())
        assert sink.body.decode().startswith(expected_at_worker)

    async def test_worker_gets_runtime_argv_cwd_and_manifest_environment(
        self, dev_runtime_factory: Any, raw_worker_command: list[str], tmp_path: Any
    ) -> None:
        """argv ends with --app --endpoint --locator --uuid; cwd and environment are set."""
        engine = await start(dev_runtime_factory, raw_worker_command, {"RAW_MARK": "m1"})

        sink = await enqueue(engine, "info").wait()

        info = json.loads(sink.body)
        argv = info["argv"]
        assert argv[0::2] == ["--app", "--endpoint", "--locator", "--uuid"]
        assert argv[1] == "raw" and argv[3] == engine.endpoint
        assert argv[3].endswith(f"/raw.{os.getpid()}")
        assert argv[7] in engine.pool
        assert info["cwd"] == str(tmp_path / "spool" / "raw")
        assert info["mark"] == "m1"

    async def test_slave_file_is_executed_itself_with_its_path_as_argv0(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """fork + execve of the slave file: argv[0] is its absolute path, no interpreter."""
        engine = await start(dev_runtime_factory, raw_worker_command)

        info = json.loads((await enqueue(engine, "info").wait()).body)

        assert info["mark"] == raw_worker_command[0]
        assert os.path.isabs(info["mark"])

    @pytest.mark.parametrize(("content", "mode"), [
        pytest.param("#!/bin/sh\nexit 0\n", 0o644, id="no-execute-bit"),
        pytest.param("print('python without a #! line')\n", 0o755, id="no-shebang"),
    ])
    async def test_a_slave_that_cannot_be_executed_fails_its_sessions(
        self, dev_runtime_factory: Any, tmp_path: Any, content: str, mode: int
    ) -> None:
        """execve refuses the file (EACCES, ENOEXEC) as it would under the runtime; the
        sessions fail with the reason and what to change."""
        slave = tmp_path / "slave.py"
        slave.write_text(content)
        slave.chmod(mode)
        engine = await start(dev_runtime_factory, [str(slave)])

        sink = await enqueue(engine, "ping").wait()

        (code, message), = sink.errors
        assert code == 2 and message.startswith(SPAWN_FAILED)
        assert NOT_EXECUTABLE in message

    async def test_unknown_handshake_is_closed_silently(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A connection whose handshake names no spawned worker is closed, nothing sent."""
        engine = await start(dev_runtime_factory, raw_worker_command)
        channel = Channel(raw=True)
        lost = asyncio.get_running_loop().create_future()
        got: list[Any] = []
        channel.on_message = lambda *msg: got.append(msg)
        channel.on_socket_error = lambda errno: lost.set_result(errno)

        assert await channel.connect(engine.endpoint)
        channel.send(0, V0_11.handshake("not-a-worker"))
        channel.send(0, V0_11.heartbeat())

        await asyncio.wait_for(lost, 10)
        assert got == []


class TestSessions:
    async def test_session_ids_start_at_one_and_are_shared_across_workers(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """Two workers get sessions 1 and 2 from one engine-wide counter."""
        engine = await start(dev_runtime_factory, raw_worker_command,
                             concurrency=1, pool_limit=2, grow_threshold=1)

        first, second = enqueue(engine, "hold"), enqueue(engine, "hold")
        await first.wait_chunks(1)
        await second.wait_chunks(1)

        assert {first.chunks[0], second.chunks[0]} == {b"held 1", b"held 2"}
        assert sorted(sorted(s.sessions) for s in engine.pool.values()) == [[1], [2]]
        third = enqueue(engine, "echo", b"x")
        assert engine.info()["queue"]["depth"] == 1
        assert not third.ended.is_set()

    async def test_sessions_interleave_on_one_worker(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """Held sessions stay open while later ones on the same worker complete."""
        engine = await start(dev_runtime_factory, raw_worker_command, pool_limit=1)

        held = [enqueue(engine, "hold") for _ in range(3)]
        for sink in held:
            await sink.wait_chunks(1)
        echo = await enqueue(engine, "echo", b"ping").wait()
        release = await enqueue(engine, "release").wait()
        for sink in held:
            await sink.wait()

        assert echo.body == b"ping" and release.body == b"3"
        assert [s.chunks for s in held] == [[b"held %d" % i, b"released %d" % i]
                                            for i in (1, 2, 3)]
        assert all(s.choked and not s.errors for s in held)
        assert engine.spawned == 1

    async def test_messages_with_unusable_sessions_are_logged_and_dropped(
        self, dev_runtime_factory: Any, raw_worker_command: list[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:  # fmt: skip
        """A worker's messages whose session is a string or a negative number are logged and
        dropped by the engine's channel; the sessions in flight on that worker go on, and the
        worker keeps serving."""
        engine = await start(dev_runtime_factory, raw_worker_command, pool_limit=1)

        held = [enqueue(engine, "hold") for _ in range(2)]
        for sink in held:
            await sink.wait_chunks(1)
        stray = await enqueue(engine, "stray").wait()
        release = await enqueue(engine, "release").wait()
        for sink in held:
            await sink.wait()

        assert (stray.chunks, stray.errors, stray.choked) == ([b"after strays"], [], True)
        assert release.body == b"2" and all(s.choked and not s.errors for s in held)
        dropped = [r.getMessage() for r in caplog.records if "dropped message" in r.getMessage()]
        assert len(dropped) == 2 and dropped[0].endswith("got string b'abc'"), dropped
        assert dropped[1].endswith("got integer -1") and engine.spawned == 1

    async def test_worker_error_is_forwarded_and_choke_still_ends(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A worker's chunk, error and choke reach the client verbatim, in order."""
        engine = await start(dev_runtime_factory, raw_worker_command)

        fail = await enqueue(engine, "fail").wait()
        unknown = await enqueue(engine, "no-such-event").wait()

        assert (fail.chunks, fail.errors, fail.choked) == ([b"partial"], [(5, "boom")], True)
        assert unknown.errors == [(-100, "there is no handler for event no-such-event")]
        assert unknown.choked

    async def test_full_queue_refuses_with_the_queue_is_full(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """Beyond queue-limit waiting sessions, enqueue answers error(2, "the queue is full")."""
        engine = await start(dev_runtime_factory, raw_worker_command,
                             pool_limit=1, concurrency=1, queue_limit=2)
        busy = enqueue(engine, "hold")
        await busy.wait_chunks(1)

        waiting = [enqueue(engine, "echo"), enqueue(engine, "echo")]
        refused = await enqueue(engine, "echo").wait()

        assert refused.errors == [(2, QUEUE_FULL)] and not refused.choked
        assert engine.info()["queue"] == {"capacity": 2, "depth": 2}
        assert not any(s.ended.is_set() for s in waiting)


class TestFailures:
    async def test_sigkill_fails_the_session_and_a_new_worker_takes_the_next(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A killed worker's session gets error(2, ...) with no choke; a new worker follows."""
        engine = await start(dev_runtime_factory, raw_worker_command, pool_limit=1)
        pid = int((await enqueue(engine, "pid").wait()).body)
        held = enqueue(engine, "hold")
        await held.wait_chunks(1)

        os.kill(pid, signal.SIGKILL)
        await held.wait()
        after = await enqueue(engine, "pid").wait()

        assert held.errors == [(2, "slave has unexpectedly disconnected")]
        assert not held.choked
        assert int(after.body) != pid
        assert engine.spawned == 2

    async def test_worker_that_stops_heartbeating_is_reaped(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """No heartbeat for heartbeat-timeout: sessions get "slave has timed out", SIGTERM."""
        engine = await start(dev_runtime_factory, raw_worker_command, {"RAW_HEARTBEAT": "0.1"},
                             pool_limit=1, heartbeat_timeout=0.5)
        await enqueue(engine, "mute").wait()
        (slave,) = engine.pool.values()
        held = enqueue(engine, "hold")

        await held.wait()
        await wait_for(lambda: slave.returncode is not None)

        assert held.errors == [(2, "slave has timed out")]
        assert slave.returncode == -signal.SIGTERM
        assert slave.state is State.DEAD and not engine.pool

    async def test_startup_timeout_fails_queued_sessions(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A worker that never heartbeats is dropped after startup-timeout; the queue fails."""
        engine = await start(dev_runtime_factory, raw_worker_command,
                             {"RAW_NO_HEARTBEAT": "1"}, startup_timeout=0.5)

        sink = await enqueue(engine, "echo").wait()

        assert sink.errors == [(2, f"{SPAWN_FAILED}: slave has timed out")]

    async def test_worker_exiting_at_start_fails_fast_and_is_respawned_on_demand(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A worker that exits before activating fails the queue; the next enqueue respawns."""
        engine = await start(dev_runtime_factory, raw_worker_command, {"RAW_EXIT_AT_START": "3"})

        first = await enqueue(engine, "echo").wait()
        second = await enqueue(engine, "echo").wait()

        assert first.errors == [
            (2, f"{SPAWN_FAILED}: failed to activate: the process exited with code 3")]
        assert second.errors == first.errors
        assert engine.spawned == 2

    async def test_worker_terminate_abnormal_marks_the_app_broken(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """terminate(2) from a worker refuses further work with "the engine is not active"."""
        engine = await start(dev_runtime_factory, raw_worker_command)

        await enqueue(engine, "broken").wait()
        await wait_for(lambda: engine.state == "broken")
        refused = await enqueue(engine, "echo").wait()

        assert refused.errors == [(2, NOT_ACTIVE)]
        assert engine.info()["state"] == "broken"

    async def test_idle_worker_is_terminated_and_replaced_on_demand(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """After idle-timeout the worker gets terminate(1, "slave is idle") and leaves."""
        engine = await start(dev_runtime_factory, raw_worker_command, idle_timeout=0.3)
        first = int((await enqueue(engine, "pid").wait()).body)

        await wait_for(lambda: not engine.pool)
        second = int((await enqueue(engine, "pid").wait()).body)

        assert first != second and engine.spawned == 2


class TestShutdown:
    async def test_stop_drains_in_flight_sessions(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """terminate(1) lets in-flight sessions finish; then new work is refused."""
        engine = await start(dev_runtime_factory, raw_worker_command)
        held = enqueue(engine, "hold")
        await held.wait_chunks(1)

        await engine.stop()
        refused = await enqueue(engine, "echo").wait()

        assert held.chunks == [b"held 1", b"released 1"] and held.choked
        assert not held.errors
        assert refused.errors == [(2, NOT_ACTIVE)]
        assert not engine.pool

    async def test_workers_ignoring_terminate_are_torn_down_after_the_grace(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """After termination-timeout, remaining sessions fail and the worker gets SIGTERM."""
        engine = await start(dev_runtime_factory, raw_worker_command,
                             {"RAW_IGNORE_TERMINATE": "1"}, termination_timeout=0.3)
        held = enqueue(engine, "hold")
        await held.wait_chunks(1)
        (slave,) = engine.pool.values()

        await engine.close()

        assert held.errors == [(2, SHUTTING_DOWN)] and not held.choked
        assert slave.returncode == -signal.SIGTERM


class TestCrashlog:
    async def test_failed_worker_output_is_saved_in_crashlogs(
        self, dev_runtime_factory: Any, raw_worker_command: list[str]
    ) -> None:
        """A worker's output ring is saved in storage collection "crashlogs" when it fails."""
        profile = Profile(environment={"RAW_EXIT_AT_START": "3"})
        runtime = await dev_runtime_factory(raw_worker_command, app="raw", profile=profile)

        await enqueue(runtime.engine, "echo").wait()

        (key,) = runtime.services.storage.find("crashlogs", ["raw"])
        blob = runtime.services.storage.read("crashlogs", key)
        assert msgpack.unpackb(blob) == ["exiting at start as asked"]
        assert len(key.split(":", 1)[1]) == 36  # <microseconds>:<uuid4>
