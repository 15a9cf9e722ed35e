"""A run's lease: the right to drive it (send its worker commands, read its reports into the mirror, replace its
model), held by one thread at a time.

Since runs outlive tabs (:mod:`vaelab.ui.run_store`), two threads may reach one run: two tabs of the same student,
or a tab and the keeper of unwatched runs (:mod:`vaelab.ui.run_keeper`). Reading one pipe from two threads would
tear its messages, and two Starts at once would start two workers for one run.

The lease is not a lock that anybody waits on without end. A redraw only *tries* it (``try_take``) and draws the
mirror as it is when another thread drives; a command (Start, Pause, Save, ...) waits for it at most ``timeout``
seconds (``take``) and is refused with a message after that. So the holder may block (a pipe read, a join): no
thread waits for it beyond a deadline, and no cycle of waits can form. The holder's thread may take it again
(re-entrant: Refit pauses and resumes inside one command).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

COMMAND_WAIT_S = 15.0  # longer than a worker's pause (vaelab.live_worker.SETTLE_TIMEOUT_S)
RETRY_S = 0.01


class RunBusy(Exception):
    """Another thread drove the run for longer than a command waits."""


class Lease:
    """One run's lease (module docstring)."""

    def __init__(self) -> None:
        # Lock rules: ``_guard`` guards ``_holder`` and ``_depth`` alone and is held only to read or set them.
        self._guard = threading.Lock()
        self._holder: int | None = None  # the thread that drives the run now
        self._depth = 0

    def try_take(self) -> bool:
        """Take the lease if no other thread holds it; never waits."""
        me = threading.get_ident()
        with self._guard:
            if self._holder not in (None, me):
                return False
            self._holder = me
            self._depth += 1
            return True

    def take(self, timeout: float | None = None) -> bool:
        """Take the lease, waiting at most ``timeout`` s (default ``COMMAND_WAIT_S``) for its holder to give it back."""
        deadline = time.monotonic() + (COMMAND_WAIT_S if timeout is None else timeout)
        while not self.try_take():
            if time.monotonic() >= deadline:
                return False
            time.sleep(RETRY_S)
        return True

    def give(self) -> None:
        with self._guard:
            if self._holder != threading.get_ident():
                raise RuntimeError("a lease can only be given back by the thread that holds it")
            self._depth -= 1
            if self._depth == 0:
                self._holder = None

    @contextmanager
    def driving(self, timeout: float | None = None) -> Iterator[None]:
        """``with lease.driving():`` the block drives the run; :class:`RunBusy` after ``timeout`` s of waiting."""
        if not self.take(timeout):
            raise RunBusy("another tab (or the server's keeper of unwatched runs) is busy with this run: try again")
        try:
            yield
        finally:
            self.give()

    def __deepcopy__(self, memo: dict) -> Lease:  # a copied session (a test's snapshot) gets a lease of its own
        return Lease()
