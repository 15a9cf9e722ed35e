"""Runs nobody watches: brought in, paused after a grace period and kept as an autosave.

A token is watched while one of the tabs that brought it is connected to the server (Streamlit's session is
active: a tab in the background or on another page of the app counts, a closed, reloaded or sleeping one does not),
and seen at its last page run. A run whose token has had no connected tab for ``POLL_AFTER_S`` is looked after by
the keeper (:func:`start_keeper`):

- it reads the worker's reports, so a run that ends unwatched ends properly (its last state in the mirror, the
  worker process gone) and is saved as the token's autosave;
- after the grace period unwatched (:func:`~vaelab.ui.run_store.grace_s`) it is paused (the worker's exact state comes
  to the mirror and the worker ends), saved as the autosave and *archived*: its memory goes back, and the next tab
  that brings the token loads it from the autosave (paused: Resume continues it). A run that was not training is
  saved and archived the same way (a loaded, view-only model points at its own file). The autosave survives even a
  restart of the server, listed on the variant's page like any saved checkpoint;
- a token unseen for ``FORGET_AFTER_S`` with nothing training is forgotten (its memory goes back).

The keeper only tries a run's lease (:mod:`vaelab.ui.lease`): a run that a tab drives is left to that tab.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vaelab.checkpoints import CheckpointError, save_trainer
from vaelab.memory import release_freed_memory
from vaelab.ui import session as state
from vaelab.ui.run_store import RUNS, RunStore, grace_s

POLL_AFTER_S = 30.0  # no tab for this long (or the grace period, if shorter): nobody reads its reports but the keeper
FORGET_AFTER_S = 6 * 3600.0  # a token nobody has shown for this long, with nothing training, is dropped
KEEPER_PERIOD_S = 2.0
AUTOSAVE_PREFIX = "autosave-"

log = logging.getLogger(__name__)


def autosave_name(token: str) -> str:
    """The checkpoint name of a token's autosave: a digest, so the listing (seen by every tab) shows no token."""
    return AUTOSAVE_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:10]


def autosave(run: state.TrainingSession, token: str) -> Path | None:
    """Save the run as its token's autosave (replacing the last one); None (the reason in its message) on failure."""
    try:
        return state.save_run(run, lambda trainer: save_trainer(trainer, autosave_name(token), overwrite=True))
    except (CheckpointError, OSError) as error:
        run.message = f"{run.message + ' ' if run.message else ''}The autosave failed: {error}"
        return None


def connected_sessions() -> Callable[[str], bool] | None:
    """Whether a Streamlit session (a tab) is connected, asked of the server (thread-safe); None outside a server
    (AppTest, a script)."""
    from streamlit import runtime

    return runtime.get_instance().is_active_session if runtime.exists() else None


def look_after(store: RunStore = RUNS, now: float | None = None, grace: float | None = None,
               connected: Callable[[str], bool] | None = None) -> list[str]:
    """One pass of the keeper over ``store``: what it did, one line an action (tests and logs read them).
    ``connected(session id)`` tells an open tab (default: the server's sessions; without a server, only the time a
    tab was last seen counts)."""
    now = time.monotonic() if now is None else now
    grace = grace_s() if grace is None else grace
    connected = connected_sessions() if connected is None else connected
    poll_after = min(POLL_AFTER_S, grace)
    done: list[str] = []
    archived = False
    for token, seen, runs, sessions in store.owners():
        if connected is not None and sessions:
            gone = {session for session in sessions if not connected(session)}
            if gone != sessions:  # a tab with this token is open: watched now
                store.touch(token, now=now)
                seen = now
            if gone:
                store.drop_sessions(token, gone)
        unwatched = now - seen
        for run in runs:
            if unwatched >= poll_after and run.lease.try_take():  # else a tab drives it after all
                kept_in_memory = run.archived is None
                try:
                    done.extend(_look_after_run(run, token, unwatched, grace))
                finally:
                    run.lease.give()
                archived = archived or kept_in_memory and run.archived is not None
        if unwatched >= FORGET_AFTER_S and not any(run.running for run in runs):
            store.forget(token)
            done.append(f"forgot a token unseen for {unwatched:.0f} s")
    if archived:  # a run's memory went: hand it back to the OS
        release_freed_memory()
    return done


def _look_after_run(run: state.TrainingSession, token: str, unwatched: float, grace: float) -> list[str]:
    done: list[str] = []
    if run.running:
        state.advance(run)  # its reports; a run that ended takes its end
        if not run.running:
            path = autosave(run, token)
            done.append(f"{run.variant}: ended unwatched ({run.status}), autosaved to {path}")
    if unwatched < grace or not run.has_model:
        return done
    if run.running:
        state.pause(run)
        run.message = (f"Paused after {unwatched:.0f} s with no tab open on it: Resume continues it. "
                       f"{run.message or ''}").strip()
    path = autosave(run, token) if run.trainer is not None else run.checkpoint.path  # view-only: its file
    if path is None:  # not saved: it stays in memory
        return [*done, f"{run.variant}: unwatched for {unwatched:.0f} s, kept in memory (the autosave failed)"]
    state.archive(run, path)
    return [*done, f"{run.variant}: unwatched for {unwatched:.0f} s, archived to {path}"]


_keeper: threading.Thread | None = None
# Lock rules: _keeper_lock guards _keeper alone; the thread starts outside it.
_keeper_lock = threading.Lock()


def start_keeper(period_s: float = KEEPER_PERIOD_S) -> None:
    """Once per process: the keeper thread (a pass every ``period_s``)."""
    global _keeper
    with _keeper_lock:  # app.py calls this at every rerun: a thread object is made once
        if _keeper is not None:
            return
        _keeper = thread = threading.Thread(target=_keep, args=(period_s,), name="vaelab-run-keeper", daemon=True)
    thread.start()


def _keep(period_s: float) -> None:
    while True:
        time.sleep(period_s)
        try:
            for line in look_after():
                log.info("run keeper: %s", line)
        except Exception:  # a pass that failed must not end the keeper: the next one tries again
            log.exception("run keeper: a pass failed")
