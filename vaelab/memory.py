"""Give memory the process has freed back to the operating system (after a run is discarded).

CPython and torch free a discarded run's tensors and figures into the C allocator, which keeps most of them for
reuse: after Stop / Reset the server's resident memory stayed about 190 MB above its idle figure (benchmarks/
soak_session.py). glibc's ``malloc_trim`` returns the free pages at the top of each heap and in its arenas
(``release_freed_memory``): that brought it to 100 to 130 MB above. Most of the rest was big blocks that glibc had
put in the heap, pinned there by small blocks still in use (``map_large_blocks``, which the app sets at start).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
import threading

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>: mallopt's parameter number


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 (glibc has both; musl has neither)
        return libc
    except (OSError, AttributeError):
        return None


def _malloc_trim():
    libc = _glibc()
    return libc.malloc_trim if libc is not None else None


@functools.cache  # once per process: app.py runs again at every rerun
def map_large_blocks(threshold_bytes: int = 128 * 1024) -> bool:
    """Have glibc give every block of at least ``threshold_bytes`` its own mapping, returned to the OS when freed.

    glibc starts with this threshold at 128 KiB but raises it each time such a block is freed (up to 32 MiB), after
    which the big buffers of a redraw (PNG bytes, figure JSON, arrays) come from the heap, where the small objects
    between them keep the freed space from going back. Setting the threshold fixes it. True when the allocator took
    the setting (glibc only). The training workers are separate processes: their allocator keeps its defaults."""
    libc = _glibc()
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold_bytes)) if libc is not None else False


@functools.cache  # once per process
def freeze_long_lived_objects() -> int:
    """Put every object alive now out of the cyclic garbage collector's reach (``gc.freeze``); returns how many.

    The server calls it once its warm-up has imported torch, ``torch._dynamo`` (with sympy, triton, ...), Streamlit,
    Plotly and the data: about 490,000 objects (functions, tuples, classes of modules) that every full collection
    walked again, holding the GIL: 0.1-0.34 s each in the server (one in 30 s of the VAE page training, one at
    Stop / Reset in ``release_freed_memory`` and one 5 s later, which a Start right after waited behind). Frozen
    objects are still freed when their last reference goes; only cycles among them would stay, and these objects
    stay anyway."""
    gc.collect()  # today's garbage first: it would stay for good
    gc.freeze()
    return gc.get_freeze_count()


def release_freed_memory() -> bool:
    """Collect garbage cycles, then hand free heap pages back to the OS; True when the allocator could."""
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


# Lock rules: _later_lock guards _later (the pending timer) alone; it is never held while cancelling or starting a
# timer or taking another lock.
_later_lock = threading.Lock()
_later: threading.Timer | None = None


def release_freed_memory_later(delay_s: float = 5.0) -> None:
    """``release_freed_memory`` once more, ``delay_s`` from now, in a thread of its own (a later call moves it).

    Before the threshold was fixed (``map_large_blocks``), a trim 15 s after Stop / Reset still gave back 50 to 85 MB
    that the page's later redraws had freed; with it, the effect of this second trim was not measurable."""
    global _later
    timer = threading.Timer(delay_s, release_freed_memory)
    timer.daemon = True
    with _later_lock:  # the pending timer alone: cancelling and starting happen outside (start waits for a thread)
        earlier, _later = _later, timer
    if earlier is not None:
        earlier.cancel()
    timer.start()
