"""Coverage-guided fuzzing of the compiled fast paths against their Python rules, under
AddressSanitizer and UndefinedBehaviorSanitizer (atheris, libFuzzer's engine for Python): the
request parser, the WSGI environ and the access-log line that read what a front sends, and the
response framing. What an input means and what must hold: fuzz/native_checks.py. A
disagreement raises, a memory error aborts, and libFuzzer writes the input to build/fuzz/.

The compiled modules are sanitizer builds made by `make fuzz` (build/fuzz/native/, clang with
`-fsanitize=address,undefined,fuzzer-no-link`), loaded by path: the library's own builds stay
out of the process (COCAINE_HTTP_PUREPYTHON), so that what it runs of its own is the reference.
The Python side is instrumented as well, so the reference's branches guide the search too.

    python -m fuzz.fuzz_native --seeds DIR            # write the seed inputs into DIR
    LD_PRELOAD=.../asan_with_fuzzer.so python -m fuzz.fuzz_native [libFuzzer flags] DIR...
    python -m fuzz.fuzz_native --replay DIR...        # the inputs again, the library's builds
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    if sys.argv[1:2] == ["--seeds"]:
        from .native_checks import seeds

        directory = Path(sys.argv[2])
        directory.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(seeds()):
            (directory / f"seed-{i:02d}").write_bytes(data)
        return
    if sys.argv[1:2] == ["--replay"]:
        from .native_checks import replay

        paths = [item for path in sys.argv[2:] for item in sorted(Path(path).iterdir())]
        outcomes = replay([item.read_bytes() for item in paths])
        print(f"replayed {sum(outcomes.values())} inputs, no disagreement: "
              + ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())))
        return
    fuzz()


def fuzz() -> None:
    """libFuzzer's loop over check(), the package's Python code instrumented for coverage."""
    os.environ["COCAINE_HTTP_PUREPYTHON"] = "1"  # the library's own builds stay unloaded
    import atheris

    with atheris.instrument_imports(include=["cocaine_http", "fuzz"]):
        from . import native_checks
    built = native_checks.modules()
    atheris.Setup(sys.argv, lambda data: native_checks.check(data, built))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
