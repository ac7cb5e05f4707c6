"""The fuzz seed corpus (fuzz/corpus/, see docs/codec.md "Fuzzing") replayed through both
decoders: the C decoder and the Python reference agree on every input, feed by feed, at the
fuzz harness's split points and whole. `make fuzz` replays what the fuzzer found as well."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fuzz import layout, make_seeds, replay

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
FILES = sorted(CORPUS.iterdir())


@pytest.mark.parametrize("path", FILES, ids=[p.name[:12] for p in FILES])
def test_decoders_agree_on_the_corpus(path: Path) -> None:
    """Same messages per feed, same error class and offset, on the C and Python decoders."""
    case = layout.parse(path.read_bytes())

    assert case is not None
    assert replay.disagreement(case) is None


def test_corpus_holds_every_seed() -> None:
    """The committed corpus is what fuzz/make_seeds.py writes (rerun it after changing it)."""
    names = {p.name for p in FILES}

    assert {hashlib.sha1(s).hexdigest() for s in make_seeds.seeds()} <= names


def test_split_points_cover_the_stream() -> None:
    """The pieces of a case are the stream, in order, each of 1 to 1024 bytes."""
    case = layout.parse(layout.build(bytes(range(256)) * 20, seed=4242))

    assert case is not None
    pieces = list(case.pieces())
    assert b"".join(pieces) == case.stream and all(1 <= len(p) <= 1024 for p in pieces)
    assert len({len(p) for p in pieces}) > 3


def test_replay_reports_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay can fail: a reference that loses messages is caught."""

    class Lossy(replay._python.Decoder):  # type: ignore[name-defined]
        def feed(self, data: bytes) -> list[object]:
            return super().feed(data)[1:]

    case = layout.parse(layout.build(b"\x93\x01\x00\x90" * 3))
    assert case is not None and replay.disagreement(case) is None
    monkeypatch.setattr(replay._python, "Decoder", Lossy)

    assert replay.disagreement(case) is not None
