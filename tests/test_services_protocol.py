"""Sans-IO service rules: the BaseService state table, call tracking, policies, definitions."""

from __future__ import annotations

import random

import pytest

from cocaine_http.errors import LocalProtocolError
from cocaine_http.protocol.service import (
    TRANSITIONS,
    CallTable,
    Event,
    ReplyKind,
    ServiceMachine,
    State,
)
from cocaine_http.services.definitions import (
    Definition,
    build_methods,
    default_for,
    method,
    unpack_raw,
    unpack_value,
)
from cocaine_http.services.policy import ExponentialBackoff, NoReconnect, get_policy
from cocaine_http.protocol.dialect import pack


class TestServiceMachine:
    @pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
    def test_close_is_legal_from_every_state_and_ends_closed(self, state):
        """CLOSE has a row for every state and always lands in CLOSED."""
        assert TRANSITIONS[(state, Event.CLOSE)] is State.CLOSED

    def test_every_change_is_reported_with_old_new_and_event(self):
        """The on_change callback sees each transition in order."""
        seen = []
        machine = ServiceMachine(lambda old, new, ev: seen.append((old, new, ev)))

        machine.process(Event.CONNECT)
        machine.process(Event.CONNECTED)
        machine.process(Event.SOCKET_ERROR)
        machine.process(Event.CONNECT)

        assert seen == [
            (State.CLOSED, State.CONNECTING, Event.CONNECT),
            (State.CONNECTING, State.CONNECTED, Event.CONNECTED),
            (State.CONNECTED, State.ERROR, Event.SOCKET_ERROR),
            (State.ERROR, State.CONNECTING, Event.CONNECT),
        ]

    def test_missing_transition_raises_local_protocol_error(self):
        """A move the table lacks is a bug and raises instead of changing state."""
        machine = ServiceMachine()

        with pytest.raises(LocalProtocolError, match="closed on connected"):
            machine.process(Event.CONNECTED)
        assert machine.state is State.CLOSED


class TestCallTable:
    def test_sessions_count_from_one_per_connection(self):
        """Session ids come from a per-table counter starting at 1 (PY11)."""
        table = CallTable()

        assert [table.open().session, table.next_session(), table.open().session] == [1, 2, 3]

    def test_error_ends_a_call_and_a_late_choke_is_ignored(self):
        """error finishes the call at once; its choke (if any) finds nothing."""
        table = CallTable()
        reply = table.open()

        table.receive(ReplyKind.CHUNK, reply.session, b"x")
        ended = table.receive(ReplyKind.ERROR, reply.session, (1, "boom"))

        assert ended is reply and reply.done and reply.error == (1, "boom")
        assert reply.chunks == [b"x"]
        assert table.receive(ReplyKind.CHOKE, reply.session) is None
        assert len(table) == 0

    def test_drain_returns_every_pending_call(self):
        """drain() empties the table (the connection is gone)."""
        table = CallTable()
        first, second = table.open(), table.open()

        assert table.drain() == [first, second] and len(table) == 0


class TestPolicies:
    def test_backoff_grows_with_jitter_and_gives_up_after_the_limit(self):
        """Delays double up to max_delay, jittered downwards, then None."""
        policy = ExponentialBackoff(initial=0.1, max_delay=0.3, max_attempts=4, jitter=0.5,
                                    rng=random.Random(1))

        delays = [policy.delay(i) for i in range(5)]

        assert delays[4] is None
        for got, base in zip(delays[:4], [0.1, 0.2, 0.3, 0.3]):
            assert base * 0.5 <= got <= base

    def test_named_policies(self):
        """"none" never reconnects; None and "backoff" give the backoff default."""
        assert isinstance(get_policy("none"), NoReconnect) and not get_policy("none").reconnect
        assert isinstance(get_policy(None), ExponentialBackoff)
        with pytest.raises(ValueError):
            get_policy("sometimes")


class TestDefinitions:
    TABLE = {0: "read", 1: "write", 2: "remove", 3: "find"}

    def test_class_and_mapping_definitions_normalise_alike(self):
        """A Definition subclass and the equivalent mapping build the same methods."""
        class Custom(Definition):
            get = method(wire="read", unpack=unpack_raw)
            read = None

        from_class = build_methods(self.TABLE, Custom)
        from_map = build_methods(self.TABLE, {"get": {"wire": "read", "unpack": unpack_raw},
                                              "read": None})

        assert from_class == from_map
        assert sorted(from_class[0]) == ["find", "get", "remove", "write"]

    def test_entries_for_methods_the_table_lacks_are_left_out(self):
        """A definition can mention methods of another service version harmlessly."""
        specs, _ = build_methods({0: "read"}, {"write": method(streaming=True)})

        assert list(specs) == ["read"]

    def test_shipped_defaults(self):
        """storage.read keeps bytes; tables with enqueue get the app definition."""
        specs, _ = build_methods(self.TABLE, default_for("storage", self.TABLE))
        app = default_for("myapp", {0: "enqueue", 1: "info"})

        assert specs["read"].unpack(pack(b"\xff")) == b"\xff"
        assert app["enqueue"].streaming
        assert default_for("other", {0: "x"}) == {}

    def test_unpack_value_decodes_text_and_keeps_binary(self):
        """Text comes back as str; a value that is not UTF-8 stays bytes."""
        assert unpack_value(pack(["a", 1])) == ["a", 1]
        assert unpack_value(pack(b"\xff\xfe")) == b"\xff\xfe"
