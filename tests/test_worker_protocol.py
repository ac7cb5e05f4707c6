"""Sans-IO worker and session machines: options, timers on a fake clock, drain, transitions."""

from __future__ import annotations

import pytest

from cocaine_http.codec import PythonDecoder
from cocaine_http.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from cocaine_http.protocol.dialect import SMALL_JOIN, V0_11, V0_12, Dialect, Kind, raw_header
from cocaine_http.protocol.session import (
    ENGINE as SESSION_ENGINE,
    WORKER as SESSION_WORKER,
    Choke,
    Chunk,
    Error,
    SessionEvent,
    SessionMachine,
    SessionState,
    state_diagram,
)
from cocaine_http.protocol.worker import (
    NO_HANDLER,
    SHUTTING_DOWN,
    Disown,
    GraceExpired,
    Heartbeat,
    Refusal,
    WorkerConnection,
    WorkerState,
    parse_options,
)

UUID = "0e7f4b9c-5d1a-4c2e-9a57-3f6c2b8d1e40"
HANDSHAKE_HEX = "93000091da0024" + UUID.encode().hex()


def decode(data: bytes, dialect: str = "v0.11") -> list:
    return PythonDecoder(dialect).feed(data)


def started(now: float = 100.0, **kwargs: float) -> WorkerConnection:
    conn = WorkerConnection(UUID, V0_11, **kwargs)
    conn.start(now)
    return conn


def open_session(conn: WorkerConnection, sid: int, event: str = "ping") -> SessionMachine:
    assert conn.receive_invoke(sid, event, {event}) is None
    machine = SessionMachine(sid, event, conn.dialect)
    conn.open_session(machine, 0.0)
    return machine


class TestOptions:
    def test_runtime_order_is_parsed(self) -> None:
        """The argv cocaine-runtime builds (docs/protocol.md §12) gives every option."""
        argv = ["--app", "echo", "--endpoint", "/run/echo.1", "--locator", "h:10053",
                "--uuid", UUID]  # fmt: skip

        options = parse_options(argv)

        assert (options.app, options.endpoint, options.locator, options.uuid) == (
            "echo", "/run/echo.1", "h:10053", UUID,
        )  # fmt: skip
        assert options.protocol == 0 and options.dialect is V0_11 and options.spawned

    def test_any_order_equals_form_and_unknown_options(self) -> None:
        """App options may come first and mix in; `--x=v` works; the last repeat wins."""
        argv = ["--workers", "4", "app:main", "--uuid=u1", "--verbose", "--endpoint", "/a",
                "--app", "a", "--endpoint", "/b"]  # fmt: skip

        options = parse_options(argv)

        assert (options.uuid, options.endpoint, options.app) == ("u1", "/b", "a")

    def test_protocol_one_selects_v012(self) -> None:
        """`--protocol 1` switches the worker to the v0.12 dialect."""
        options = parse_options(["--protocol", "1", "--uuid", "u"])

        assert options.protocol == 1 and options.dialect is V0_12

    @pytest.mark.parametrize(
        "argv",
        [pytest.param(["--protocol", "7"], id="bad-protocol"),
         pytest.param(["--uuid"], id="no-value")],
    )  # fmt: skip
    def test_bad_options_raise_config_error(self, argv: list[str]) -> None:
        """A bad protocol or a missing value is reported as ConfigError."""
        with pytest.raises(ConfigError):
            parse_options(argv)

    def test_require_names_missing_options(self) -> None:
        """A worker without --endpoint/--uuid fails with a message naming them."""
        with pytest.raises(ConfigError, match="--endpoint and --uuid"):
            parse_options(["app:main"]).require()

    def test_locators_parse_v4_v6_and_lists(self) -> None:
        """`--locator` accepts host:port and the protocol-1 comma list with [v6]."""
        options = parse_options(["--locator", "[::1]:10053,127.0.0.1:10054"])

        assert options.locators() == [("::1", 10053), ("127.0.0.1", 10054)]


class TestWorkerConnection:
    def test_start_sends_handshake_then_heartbeat(self) -> None:
        """The first bytes are exactly the docs/protocol.md §11.1 handshake and heartbeat."""
        conn = WorkerConnection(UUID, V0_11)

        data = b"".join(conn.start(0.0))

        assert data.hex() == HANDSHAKE_HEX + "93010090"
        assert conn.state is WorkerState.ACTIVE

    def test_heartbeat_due_after_interval(self) -> None:
        """A heartbeat is due exactly one interval after start, then one after each sent."""
        conn = started(100.0, heartbeat_interval=5.0)

        assert conn.get_timer() == 105.0
        assert conn.handle_timer(104.999) == []
        assert conn.handle_timer(105.0) == [Heartbeat()]
        assert conn.heartbeat_due == 110.0

    def test_disown_deadline_exact(self) -> None:
        """Disown fires disown_timeout after the last echo, not before."""
        conn = started(100.0, heartbeat_interval=50.0, disown_timeout=30.0)
        conn.receive_heartbeat(110.0)

        assert conn.get_timer() == 140.0
        assert conn.handle_timer(139.999) == []
        assert conn.handle_timer(140.0) == [Disown(140.0)]
        assert conn.state is WorkerState.CLOSED
        assert conn.get_timer() is None

    def test_echo_moves_disown_deadline(self) -> None:
        """Each echo pushes the disown deadline out; heartbeats keep coming meanwhile."""
        conn = started(0.0, heartbeat_interval=5.0, disown_timeout=12.0)

        conn.receive_heartbeat(5.0)
        events = conn.handle_timer(10.0)

        assert events == [Heartbeat()]
        assert conn.disown_deadline == 17.0

    def test_terminate_drains_then_finishes(self) -> None:
        """After terminate: no new sessions, open ones finish, then terminate(1, reason)."""
        conn = started(0.0)
        machine = open_session(conn, 1)

        conn.receive_terminate(1, "slave is idle", 10.0)

        assert conn.state is WorkerState.DRAINING and not conn.drained
        assert conn.receive_invoke(2, "ping", {"ping"}) == Refusal(
            SHUTTING_DOWN, "the worker is shutting down"
        )
        machine.send_choke()
        assert conn.drained
        assert conn.finish().hex() == "9302009201ad736c6176652069732069646c65"
        assert conn.state is WorkerState.CLOSED

    def test_grace_expires_with_open_sessions(self) -> None:
        """The grace deadline is terminate time + termination_grace, and lists open sessions."""
        conn = started(0.0, heartbeat_interval=100.0, termination_grace=5.0)
        machine = open_session(conn, 3)
        conn.receive_terminate(1, "bye", 20.0)

        assert conn.get_timer() == 25.0
        assert conn.handle_timer(25.0) == [GraceExpired(25.0)]
        assert conn.open_sessions() == [machine]

    def test_unknown_event_refused_with_no_handler_code(self) -> None:
        """An event without a handler gets error -100 with the reference text, then choke."""
        conn = started()

        refusal = conn.receive_invoke(7, "x", {"ping"})

        assert refusal is not None and refusal.code == NO_HANDLER
        assert decode(conn.refuse(7, refusal)) == [
            (5, 7, [-100, b"there is no handler for event x"]),
            (6, 7, []),
        ]

    def test_session_table_drops_closed_sessions(self) -> None:
        """A session leaves the table once both halves are done."""
        conn = started()
        machine = open_session(conn, 4)

        machine.receive(Choke)
        machine.send_choke()

        assert conn.sessions == {} and conn.open_responses == 0

    @pytest.mark.parametrize(
        ("act", "error"),
        [pytest.param(lambda c: c.receive_heartbeat(0.0), RemoteProtocolError, id="heartbeat"),
         pytest.param(lambda c: c.receive_invoke(1, "ping", {"ping"}), RemoteProtocolError,
                      id="invoke"),
         pytest.param(lambda c: c.finish(), LocalProtocolError, id="terminate")],
    )  # fmt: skip
    def test_events_before_start_raise(self, act, error) -> None:  # type: ignore[no-untyped-def]
        """Nothing but the handshake is allowed before the worker has started: the engine's
        moves raise RemoteProtocolError, ours LocalProtocolError (as in the session machine)."""
        conn = WorkerConnection(UUID, V0_11)

        with pytest.raises(error):
            act(conn)

    def test_bad_timer_values_raise(self) -> None:
        """Non-positive intervals are a configuration error."""
        with pytest.raises(ConfigError):
            WorkerConnection(UUID, V0_11, heartbeat_interval=0)


class TestSessionMachine:
    def test_full_session_transitions(self) -> None:
        """invoke, chunk, choke in; chunk, choke out: OPEN -> REQUEST_DONE -> CLOSED."""
        machine = SessionMachine(8, "http")

        assert machine.receive(Chunk) is SessionState.OPEN
        assert machine.receive(Choke) is SessionState.REQUEST_DONE
        header = machine.send_chunk(6)
        assert machine.send_choke().hex() == "93060890"

        assert header.hex() == "93040891a6"
        assert machine.finished

    def test_worker_may_end_before_request_ends(self) -> None:
        """An early response (e.g. 413) leaves the request half open until the engine chokes."""
        machine = SessionMachine(1, "http")

        machine.send_choke()
        machine.receive(Chunk)

        assert machine.state is SessionState.RESPONSE_DONE
        assert machine.receive(Choke) is SessionState.CLOSED

    def test_engine_error_is_terminal(self) -> None:
        """An engine error closes the session in one step (docs/protocol.md §3.6)."""
        machine = SessionMachine(1, "ping")

        machine.receive(Error)

        assert machine.finished and not machine.response_open

    def test_write_after_end_raises_local_protocol_error(self) -> None:
        """Writing after choke is our bug and raises LocalProtocolError."""
        machine = SessionMachine(1, "ping")
        machine.send_choke()

        with pytest.raises(LocalProtocolError):
            machine.send_chunk(1)

    def test_chunk_after_choke_from_engine_raises_remote_protocol_error(self) -> None:
        """The engine sending a chunk after its choke is the peer's fault."""
        machine = SessionMachine(1, "ping")
        machine.receive(Choke)

        with pytest.raises(RemoteProtocolError):
            machine.receive(Chunk)

    def test_error_is_error_then_choke_in_v011_and_alone_in_v012(self) -> None:
        """v0.11 needs the choke after an error (§12); v0.12 error closes the stream."""
        v11 = SessionMachine(7, "x", V0_11).send_error(-100, "no handler for x")
        v12 = SessionMachine(2, "x", V0_12).send_error(100, "boom")

        assert v11.hex() == "93050792d09cb06e6f2068616e646c657220666f722078" + "93060790"
        assert v12.hex() == "93020192922a64a4626f6f6d"

    def test_abort_reports_whether_response_was_open(self) -> None:
        """Abort closes from any state and says if the engine still expects an answer."""
        fresh, ended = SessionMachine(1, "a"), SessionMachine(2, "b")
        ended.send_choke()

        assert fresh.abort() is True and ended.abort() is False
        assert fresh.finished and ended.finished
        assert fresh.abort() is False

    def test_docs_show_the_generated_diagrams(self) -> None:
        """docs/worker.md carries the diagrams generated from the tables (kept true)."""
        from pathlib import Path

        from cocaine_http.protocol import worker

        text = (Path(__file__).resolve().parent.parent / "docs" / "worker.md").read_text()

        assert state_diagram() in text and worker.state_diagram() in text

    def test_every_state_reachable_and_diagram_lists_every_transition(self) -> None:
        """The docs diagram is generated from the tables and names every edge."""
        diagram = state_diagram()
        targets = {new for *_, new in SESSION_ENGINE} | {new for *_, new in SESSION_WORKER}

        assert targets | {SessionState.OPEN} == set(SessionState)
        assert diagram.count("-->") == len(SESSION_ENGINE) + len(SESSION_WORKER) + 2


class TestDialect:
    @pytest.mark.parametrize("session", [0, 7, 127, 128, 255, 256, 2**16, 2**32])
    @pytest.mark.parametrize("end", [False, True])
    def test_v011_response_framing_agrees_with_its_chunk_and_choke(
        self, session: int, end: bool
    ) -> None:
        """V11.response (the session id packed once) frames exactly what chunk_header() and
        choke() give, for every raw header size class and both chunk forms."""
        bodies = [bytes(n) for n in (0, 1, 31, 32, 255, 65535, 65536)]
        chunks: list = [*bodies, *([raw_header(len(b)), b] for b in bodies), [b"a", b"b", b"c"]]

        fast = V0_11.response(session, chunks, end)
        general = Dialect.frame_response(V0_11, session, chunks, end)

        assert isinstance(fast, list) and isinstance(general, list)  # large: never joined
        assert b"".join(fast) == b"".join(general)
        assert any(part is bodies[-1] for part in fast)  # the payload itself, not a copy
        expected = b"".join(V0_11.chunk(session, b"".join(c) if isinstance(c, list) else c)
                            for c in chunks) + (V0_11.choke(session) if end else b"")
        assert b"".join(fast) == expected

    @pytest.mark.parametrize("dialect", [V0_11, V0_12], ids=["v0.11", "v0.12"])
    def test_a_small_response_comes_joined(self, dialect: Dialect) -> None:
        """Up to SMALL_JOIN payload bytes, a response is one bytes (one queue entry)."""
        body = bytes(SMALL_JOIN - 4)
        data = dialect.response(3, [b"head", body], True)

        assert data == dialect.chunk(3, b"head") + dialect.chunk(3, body) + dialect.choke(3)
        assert isinstance(dialect.response(3, [b"head", body + b"x"], True), list)

    @pytest.mark.parametrize("dialect", [V0_11, V0_12], ids=["v0.11", "v0.12"])
    def test_failure_is_error_then_choke_unless_the_error_ends_the_stream(
        self, dialect: Dialect
    ) -> None:
        """Dialect.failure: v0.11 needs the choke after an error, v0.12's error ends it."""
        data = dialect.failure(9, 3, "timed out")

        tail = b"" if dialect.error_ends_stream else dialect.choke(9)
        assert data == dialect.error(9, 3, "timed out") + tail
        assert (V0_11.error_ends_stream, V0_12.error_ends_stream) == (False, True)

    @pytest.mark.parametrize(
        ("kind", "args", "values"),
        [(Kind.INVOKE, [b"http"], ("http",)), (Kind.CHUNK, [b"x"], (b"x",)),
         (Kind.ERROR, [5, b"m"], (5, "m")), (Kind.ERROR, [[42, 5], b"m"], (5, "m")),
         (Kind.TERMINATE, [1, b"bye"], (1, "bye")), (Kind.TERMINATE, [1], (1, "")),
         (Kind.CHOKE, [b"extra"], ()), (Kind.HEARTBEAT, [], ())],
    )  # fmt: skip
    def test_arguments_that_fit(self, kind: Kind, args: list, values: tuple) -> None:
        """What each kind's arguments become."""
        assert V0_11.arguments(kind, args) == values

    @pytest.mark.parametrize(
        ("kind", "args"),
        [(Kind.INVOKE, []), (Kind.INVOKE, [b"a", b"b"]), (Kind.INVOKE, [5]),
         (Kind.CHUNK, [5]), (Kind.CHUNK, []), (Kind.ERROR, [b"x", b"m"]), (Kind.ERROR, [5]),
         (Kind.TERMINATE, []), (Kind.TERMINATE, [b"x"])],
    )  # fmt: skip
    def test_arguments_that_do_not_fit_raise_remote_protocol_error(
        self, kind: Kind, args: list
    ) -> None:
        """The peer's mistake, named: RemoteProtocolError with the kind and what came."""
        with pytest.raises(RemoteProtocolError, match=kind.name.lower()):
            V0_11.arguments(kind, args)


class TestTransitions:
    def test_engine_moves_raise_remote_and_ours_local_in_every_machine(self) -> None:
        """One idiom: a move a table lacks raises RemoteProtocolError when the engine made it
        and LocalProtocolError when we did, in the session and the worker machine alike."""
        session = SessionMachine(1, "ping")
        session.receive(Choke)
        conn = WorkerConnection(UUID, V0_11)

        with pytest.raises(RemoteProtocolError, match="engine: no transition"):
            session.receive(Chunk)
        with pytest.raises(RemoteProtocolError, match="engine: no transition"):
            conn.receive_heartbeat(0.0)
        session.send_choke()
        with pytest.raises(LocalProtocolError, match="worker: no transition"):
            session.send_choke()
        with pytest.raises(LocalProtocolError, match="worker: no transition"):
            conn.finish()

    def test_rows_are_the_table_read_by_state(self) -> None:
        """row(event) has the table's next state at each state's index and None elsewhere."""
        for table in (SESSION_ENGINE, SESSION_WORKER):
            for event in SessionEvent:
                row = table.row(event, SessionState)
                for state in SessionState:
                    assert row[state] == table.table.get((state, event))
