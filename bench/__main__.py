"""`make bench`: run every bench/bench_*.py module's main(), or the ones named on the command line.

Usage: python -m bench [codec http services ...]
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time


def main(argv: list[str]) -> int:
    import bench

    modules = pkgutil.iter_modules(bench.__path__)
    names = sorted(m.name[len("bench_") :] for m in modules if m.name.startswith("bench_"))
    chosen = argv or names
    for name in chosen:
        if name not in names:
            print(f"unknown benchmark {name!r}; choose from {', '.join(names)}", file=sys.stderr)
            return 2
    for name in chosen:
        print(f"\n=== bench {name}", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"bench.bench_{name}").main()
        print(f"=== bench {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
