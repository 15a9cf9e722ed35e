"""Give memory the process has freed back to the operating system (after a run is discarded).

CPython and torch free a discarded run's tensors and figures into the C allocator, which keeps most of them for
reuse: after Stop / Reset the server's resident memory stayed about 190 MB above its idle figure (benchmarks/
soak_session.py). glibc's ``malloc_trim`` returns the free pages at the top of each heap and in its arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def release_freed_memory() -> bool:
    """Collect garbage cycles, then hand free heap pages back to the OS; True when the allocator could."""
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
