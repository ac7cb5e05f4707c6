"""Coverage-guided fuzzing of the request path's compiled copies against their Python rules,
under AddressSanitizer and UndefinedBehaviorSanitizer (atheris, libFuzzer's engine for Python).

An input is a request frame in one of two spellings, told apart by its first byte: even, the
rest is the frame's bytes as they would arrive (any byte sequence at all); odd, the rest is the
frame's fields separated by NUL bytes (method, uri, version, then header names and values, and
a body last when the count is odd), packed here as a front would pack them, so that mutations
which change a field's length still make a well-formed frame. The C parser (csrc/request.c)
must give exactly the Request `parse_reference` gives, or decline; it must never accept what
the reference refuses. A frame the reference accepts then goes on to the two copies that read a parsed
request: the WSGI environ (csrc/environ.c, against `EnvironBuilder._build`) and the default
access-log line (csrc/accessline.c, against `record_line`). A disagreement raises, a memory
error aborts, and libFuzzer writes the input to build/fuzz/.

The checks are fuzz/request_checks.py's. The compiled modules are sanitizer builds made by
`make fuzz` (build/fuzz/native/, clang with `-fsanitize=address,undefined,fuzzer-no-link`),
loaded by path: the library's own builds stay out of the process (COCAINE_HTTP_PUREPYTHON),
so that what it runs of its own is the reference. The Python side is instrumented as well, so
the reference's branches guide the search too.

    python -m fuzz.fuzz_request --seeds DIR            # write the seed frames into DIR
    LD_PRELOAD=.../asan_with_fuzzer.so python -m fuzz.fuzz_request [libFuzzer flags] DIR...
    python -m fuzz.fuzz_request --replay DIR...        # the inputs again, the library's builds
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    if sys.argv[1:2] == ["--seeds"]:
        from .request_checks import seeds

        directory = Path(sys.argv[2])
        directory.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(seeds()):
            (directory / f"seed-{i:02d}").write_bytes(data)
        return
    if sys.argv[1:2] == ["--replay"]:
        from .request_checks import replay

        paths = [item for path in sys.argv[2:] for item in sorted(Path(path).iterdir())]
        outcomes = replay([item.read_bytes() for item in paths])
        print(f"replayed {sum(outcomes.values())} request frames, no disagreement: "
              + ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())))
        return
    fuzz()


def fuzz() -> None:
    """libFuzzer's loop over check(), the package's Python code instrumented for coverage."""
    os.environ["COCAINE_HTTP_PUREPYTHON"] = "1"  # the library's own builds stay unloaded
    import atheris

    with atheris.instrument_imports(include=["cocaine_http", "fuzz"]):
        from . import request_checks
    built = request_checks.modules()
    atheris.Setup(sys.argv, lambda data: request_checks.check(data, *built))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
