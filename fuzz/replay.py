"""Differential replay of fuzz inputs: the C decoder, through the wrapper production uses
(cocaine_http.codec._c), against the pure-Python reference. For each input both are fed the
same pieces (the harness's split points, then the whole stream at once) and must give the same
messages feed by feed and fail alike: same error class, same offset, same messages delivered
before it. The C decoder's records (feed_records, the Channel's path) are compared as well,
turned back into messages.

    python -m fuzz.replay fuzz/corpus [more directories or files]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cocaine_http.codec import _c, _python
from cocaine_http.codec.records import messages_of
from cocaine_http.errors import DecodeError

from .layout import Case, parse


def _run(cls: type[Any], case: Case, pieces: Iterable[bytes], records: bool = False) -> list[str]:
    """What a decoder made of the pieces: one line per feed, and the error if any; through
    feed_records (records, dropped ones included, turned back into messages) when `records`."""
    decoder = cls(case.dialect, max_message_size=case.max_size, max_depth=case.max_depth)
    out = []
    for piece in pieces:
        try:
            if records:
                out.append(repr(messages_of(*decoder.feed_records(piece))))
            else:
                out.append(repr(decoder.feed(piece)))
        except DecodeError as exc:
            out.append(f"{type(exc).__name__} at {exc.offset} after {exc.messages!r}")
            break
    return out


def disagreement(case: Case) -> str | None:
    """None if both decoders agree on the case, else where they part."""
    whole, pieces = [case.stream], list(case.pieces())
    for name, feeds, records in (("pieces", pieces, False), ("whole", whole, False),
                                 ("pieces, records", pieces, True)):  # fmt: skip
        c = _run(_c.Decoder, case, feeds, records)
        python = _run(_python.Decoder, case, feeds)
        for i, (a, b) in enumerate(zip(c, python)):
            if a != b:
                return f"{name}, feed {i}: C {a[:300]} / Python {b[:300]}"
        if len(c) != len(python):
            return f"{name}: C made {len(c)} feeds, Python {len(python)}"
    return None


def inputs(paths: Iterable[str]) -> list[Path]:
    """Every file named, or inside a directory named."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        found += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return found


def main(argv: list[str]) -> int:
    files = inputs(argv or ["fuzz/corpus"])
    failures = 0
    for path in files:
        case = parse(path.read_bytes())
        if case is None:
            continue
        problem = disagreement(case)
        if problem:
            failures += 1
            print(f"{path}: {problem}")
    print(f"replayed {len(files)} inputs against the Python reference: {failures} disagree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
