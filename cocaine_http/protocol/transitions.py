# Strategy: the one state-machine idiom of the library. A machine is its legal moves as data,
# `{(state, event): next state}`, one table per side that can move it (what arrives from the
# peer, what we do). `Transitions.next` is the only check: the next state, or an error that
# names the move. Inside, a missing row is a LocalProtocolError (the caller asked for a move the
# table lacks); the receive boundary of a machine re-raises it as RemoteProtocolError when the
# move came from the peer (h11's rule), so the same mistake gets the same class everywhere.
#
# Machines whose states are IntEnum members can also read a table as rows (`row(event)`: the
# next state indexed by the current state's value, None where there is no edge), which makes a
# hot-path check one tuple index; the rows are derived from the table, which stays the source.
# `diagram_lines` renders the rows for the docs (Mermaid), so the diagrams cannot drift either.
"""Transition tables: next state or a specific error, rows for hot paths and docs diagrams."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from ..errors import LocalProtocolError, RemoteProtocolError

S = TypeVar("S", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)


class Transitions(Generic[S, E]):
    """The legal moves of one side of a machine.

    Args:
        side: who makes these moves ("engine", "worker", "service"), for messages and diagrams.
        table: every legal move, `(state, event) -> next state`.
        remote: True when the moves come from the peer: a missing row then raises
            RemoteProtocolError instead of LocalProtocolError.
    """

    def __init__(self, side: str, table: Mapping[tuple[S, E], S], *, remote: bool = False) -> None:
        self.side = side
        self.table = dict(table)
        self.remote = remote

    def __iter__(self) -> Iterator[tuple[S, E, S]]:
        """The rows as (state, event, next state), in table order."""
        for (state, event), new in self.table.items():
            yield state, event, new

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: tuple[S, E]) -> S:
        return self.table[key]

    def __contains__(self, key: object) -> bool:
        return key in self.table

    def next(self, state: S, event: E, subject: str = "") -> S:
        """The state after `event` in `state`.

        Raises:
            RemoteProtocolError: the peer made a move its table lacks (remote tables).
            LocalProtocolError: we asked for a move the table lacks.
        """
        new = self.table.get((state, event))
        if new is None:
            raise self.violation(state, event, subject)
        return new

    def violation(
        self, state: S, event: E, subject: str = ""
    ) -> LocalProtocolError | RemoteProtocolError:
        """The error for a move the table lacks (Remote for the peer's moves)."""
        where = f" ({subject})" if subject else ""
        text = (
            f"{self.side}: no transition from {state.name.lower()} on {event.name.lower()}{where}"
        )
        return RemoteProtocolError(text) if self.remote else LocalProtocolError(text)

    def row(self, event: E, states: type[S]) -> tuple[S | None, ...]:
        """Next state after `event`, indexed by the current state's value (IntEnum states),
        None where the table has no edge."""
        row: list[S | None] = [None] * len(states)
        for (state, ev), new in self.table.items():
            if ev is event:
                row[state.value] = new
        return tuple(row)

    def diagram_lines(self) -> list[str]:
        """The rows as Mermaid edges: `STATE --> NEXT: side event`."""
        return [f"    {s.name} --> {n.name}: {self.side} {e.name.lower()}" for s, e, n in self]


def diagram(start: str, *sides: Transitions[S, E], end: str = "CLOSED") -> str:
    """Mermaid state diagram of a machine from its tables (the docs carry the output)."""
    lines = ["stateDiagram-v2", f"    [*] --> {start}"]
    for side in sides:
        lines.extend(side.diagram_lines())
    lines.append(f"    {end} --> [*]")
    return "\n".join(lines)
