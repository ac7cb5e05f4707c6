# Strategy: a worker allocates and frees every large request and response body once per request.
# glibc's malloc serves blocks above its mmap threshold with a fresh mmap and trims the top of the
# heap eagerly, so each 1 MiB body faults its pages in again; measured here, those page faults
# were most of the CPU a 1 MiB request costs. Raising both thresholds once, at worker start,
# keeps the freed pages in the process for the next request. The MALLOC_*_ environment variables
# win when set (glibc reads them itself), and other C libraries are left alone.
"""Allocator settings for a long-lived worker process."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("cocaine_http")

#: glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_freed_memory(
    mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD
) -> bool:
    """Raise glibc's mmap and trim thresholds; returns True when the settings were applied.

    The cost: up to `trim_threshold` bytes of freed memory stay with the process.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False  # not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    applied = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    applied = bool(mallopt(M_TRIM_THRESHOLD, trim_threshold)) and applied
    log.debug("malloc thresholds: mmap %d, trim %d (%s)", mmap_threshold, trim_threshold,
              "applied" if applied else "refused")
    return applied
