"""vaelab.memory.release_freed_memory: memory freed in the middle of the heap goes back to the OS (Linux, glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vaelab.memory import _malloc_trim

PROGRAM = """
import sys
from vaelab.memory import release_freed_memory

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

blocks = [bytearray(b"x" * 32 * 1024) for _ in range(8000)]  # 250 MB of heap blocks (under the mmap threshold)
full = rss_mb()
del blocks[::2]  # every other one: 125 MB of holes between blocks in use, which free() cannot give back
freed = rss_mb()
release_freed_memory()
print(full, freed, rss_mb())
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim (Linux)")
def test_memory_freed_in_the_middle_of_the_heap_goes_back_to_the_os():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True).stdout
    full, freed, released = (float(v) for v in out.split())
    assert freed > full - 30  # freed, but the process keeps it
    assert released < freed - 80  # handed back


LARGE_BLOCKS = """
import sys
from vaelab.memory import map_large_blocks

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

if sys.argv[1] == "mapped":
    assert map_large_blocks()
first = bytearray(4 * 1024 * 1024)
del first  # glibc gave it its own mapping; freeing it raises glibc's own threshold to 4 MiB
blocks, small = [], []
for _ in range(400):  # 200 MB of 512 KiB buffers (a redraw's PNG bytes, figure JSON), a small live block after each
    blocks.append(bytearray(512 * 1024))
    small.append(bytearray(1000))
full = rss_mb()
del blocks
print(full, rss_mb())
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's mallopt (Linux)")
def test_large_blocks_go_back_to_the_os_when_freed_between_small_ones_still_in_use():
    def full_and_freed(mode: str) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-c", LARGE_BLOCKS, mode], capture_output=True, text=True,
                             check=True).stdout
        full, freed = (float(v) for v in out.split())
        return full, freed

    full, freed = full_and_freed("default")
    assert freed > full - 30  # glibc's raised threshold put them in the heap, where the small blocks pin them
    full, freed = full_and_freed("mapped")
    assert freed < full - 150  # each had its own mapping, unmapped by free()


LATER = """
import time
from vaelab.memory import release_freed_memory_later

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

blocks = [bytearray(b"x" * 32 * 1024) for _ in range(8000)]
release_freed_memory_later(0.3)
del blocks[::2]  # freed after the call, as a page's redraws free what a discarded run drew
freed = rss_mb()
time.sleep(1.5)
print(freed, rss_mb())
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim (Linux)")
def test_memory_freed_after_the_call_goes_back_a_moment_later():
    out = subprocess.run([sys.executable, "-c", LATER], capture_output=True, text=True, check=True).stdout
    freed, later = (float(v) for v in out.split())
    assert later < freed - 80


FREEZE = """
import gc, weakref
from vaelab.memory import freeze_long_lived_objects

class Node:
    pass

modules_like = [[i] for i in range(200_000)]  # long-lived containers (lists: always tracked)
walked_before = len(gc.get_objects(generation=2)) + len(gc.get_objects(generation=1)) + len(gc.get_objects(0))
frozen = freeze_long_lived_objects()
walked_after = len(gc.get_objects(generation=2)) + len(gc.get_objects(generation=1)) + len(gc.get_objects(0))
again = freeze_long_lived_objects()  # once per process: later objects are not frozen
a, b = Node(), Node()
a.other, b.other = b, a  # a garbage cycle made after the freeze: still collected
collected = []
weakref.finalize(a, collected.append, True)
del a, b
gc.collect()
print(walked_before, frozen, walked_after, again, collected == [True])
"""


def test_freezing_takes_long_lived_objects_out_of_full_collections_and_later_cycles_are_still_collected():
    out = subprocess.run([sys.executable, "-c", FREEZE], capture_output=True, text=True, check=True).stdout
    walked_before, frozen, walked_after, again, collected = out.split()
    assert int(frozen) >= 200_000 and int(walked_before) >= 200_000
    assert int(walked_after) < 1000  # a full collection no longer walks them
    assert again == frozen and collected == "True"


WARMED = """
import gc
from vaelab import live_worker
live_worker._warm()  # what the server's warm-up thread runs once
print(gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_the_servers_warm_up_freezes_what_its_imports_left():
    out = subprocess.run([sys.executable, "-c", WARMED], capture_output=True, text=True, check=True, timeout=120).stdout
    frozen, walked = (int(v) for v in out.split())
    assert frozen > 100_000 and walked < frozen / 10  # torch, sympy, ...: out of every full collection
