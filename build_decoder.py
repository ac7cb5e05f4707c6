"""cffi build script for the C message decoder (out-of-line API mode).

setup.py names it in `cffi_modules`, so `pip install -e .` compiles
`cocaine_http.codec._cdecoder` in place and a wheel build compiles it into the wheel. The
declarations come from csrc/cdecoder.h (between its CDEF markers), so the header is the one
place that states the interface.
"""

from __future__ import annotations

import os

from cffi import FFI

CSRC = "csrc"
HEADER = os.path.join(CSRC, "cdecoder.h")


def _cdef() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, HEADER), encoding="utf-8") as f:
        text = f.read()
    return text.split("/* CDEF-BEGIN */", 1)[1].split("/* CDEF-END */", 1)[0]


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "cocaine_http.codec._cdecoder",
    '#include "cdecoder.h"',
    sources=[os.path.join(CSRC, name) for name in ("cdecoder.c", "machine.c")],
    include_dirs=[CSRC],
    extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
