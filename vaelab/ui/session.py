"""Training state that outlives a script run: one :class:`TrainingSession` per variant in ``st.session_state``.

Leaving a page and coming back finds the run where it was; so does a reload, a second tab with the same address, or
a reconnect after sleep: the sessions live in the server's :data:`~vaelab.ui.run_store.RUNS` under the tab's private
token (``?run=...``), and ``st.session_state`` holds the same objects. Status moves
idle -> running <-> paused -> finished (or error); Reset returns to idle. A loaded checkpoint becomes a paused
(resumable) run, or a view-only model when its training data cannot be restored. Nothing here draws widgets.

Where the training runs: in a worker process (:mod:`vaelab.live_worker`), while the session's ``trainer`` is the
server's mirror of it, never trained here and updated from the worker's reports (brought in by the relay thread,
:mod:`vaelab.ui.live_relay`), so the pages draw from it unchanged.

Every function here that drives a run (talks to its worker, replaces its model) holds the run's lease
(:mod:`vaelab.ui.lease`) while it does: a redraw's ``advance`` only tries it (another tab or the keeper of unwatched
runs drives: the mirror is drawn as it is), a command waits for it at most ``COMMAND_WAIT_S`` and then leaves the run
as it was, with a message.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from vaelab.checkpoints import Checkpoint
from vaelab.config import BaseConfig, ConfigError
from vaelab.data import DataBundle
from vaelab.live_worker import LiveWorker
from vaelab.memory import release_freed_memory, release_freed_memory_later
from vaelab.training import Trainer
from vaelab.ui.lease import Lease, RunBusy
from vaelab.ui.run_store import RUNS
from vaelab.ui.run_token import run_token
from vaelab.variants.base import Variant

IDLE, RUNNING, PAUSED, FINISHED, ERROR, VIEW_ONLY = "idle", "running", "paused", "finished", "error", "view-only"
MAX_RESULTS_PER_NAME = 4  # live views cache one result per step: keep the few newest of each name
FIRST_REPORT_WAIT_S = 1.0  # a fresh run's first advance waits this long for the worker's first rows (the first curve)


@dataclass
class TrainingSession:
    """A variant's run: a Trainer (trained here or restored from a checkpoint) or a view-only checkpoint."""

    variant: str
    trainer: Trainer | None = None
    checkpoint: Checkpoint | None = None  # set when the run came from a file
    status: str = IDLE
    message: str | None = None  # the last error or notice, shown by the panel
    version: int = 0  # bumps whenever the model is replaced; part of every cache key
    views_busy: bool = False  # the page's views reported work left (they keep their timer): see live_view
    device: str = "cpu"  # where the worker trains (the mirror stays on the CPU)
    worker: LiveWorker | None = field(default=None, repr=False)  # the running worker
    saved_step: int | None = None  # the step last saved or loaded (None: this run was never saved)
    results: dict[Hashable, Any] = field(default_factory=dict, repr=False)  # see model_cached
    run_views: dict[str, Any] = field(default_factory=dict, repr=False)  # see run_view_state
    _view_data: DataBundle | None = field(default=None, repr=False)  # data for a view-only checkpoint
    lease: Lease = field(default_factory=Lease, repr=False, compare=False)  # who drives the run now (module doc)
    archived: Path | None = None  # the file that holds this run while no tab shows it (see archive)
    channel: str = field(default_factory=lambda: f"run-{secrets.token_hex(8)}", repr=False)  # its live stream
    stream_token: str | None = field(default=None, repr=False)  # the tab's subscription (vaelab/ui/live_relay.py)

    # -- what pages read ----------------------------------------------------------------------------------
    def _of_run(self, name: str, default: Any) -> Any:
        """The trainer's ``name`` (model, history, config), else the checkpoint's, else ``default``."""
        source = self.trainer if self.trainer is not None else self.checkpoint
        return getattr(source, name) if source is not None else default

    @property
    def model(self) -> Variant | None:
        return self._of_run("model", None)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self._of_run("history", [])

    @property
    def config(self) -> BaseConfig | None:
        return self._of_run("config", None)

    @property
    def data(self) -> DataBundle | None:
        """The data the model trains on (view-only models: the data the panel could load for them)."""
        if self.trainer is not None:
            return self.trainer.data
        return self._view_data

    @property
    def step(self) -> int:
        if self.trainer is not None:
            return self.trainer.step
        return int(self.checkpoint.meta.get("steps", 0)) if self.checkpoint is not None else 0

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def can_resume(self) -> bool:
        """Paused, or stopped by a lost worker (its state is in the mirror); not after a non-finite loss."""
        t = self.trainer
        return self.status in (PAUSED, ERROR) and t is not None and not t.done and t.error is None

    @property
    def unsaved(self) -> bool:
        """A trained run whose current state is in no file (Stop / Reset asks first)."""
        return self.trainer is not None and self.step > 0 and self.saved_step != self.step


def session_key(variant: str) -> str:
    return f"vaelab.session.{variant}"


def get_session(variant: str) -> TrainingSession:
    """The variant's session of this tab's token (:func:`run_token`), created idle on first use."""
    session = RUNS.run(run_token(), variant, functools.partial(TrainingSession, variant))
    key = session_key(variant)
    if st.session_state.get(key) is not session:
        st.session_state[key] = session
    return session


def _command(fallback: Any = None) -> Callable:
    """A function that drives a run: it holds the run's lease; when another thread keeps the lease longer than a
    command waits, the run stays as it was, ``session.message`` says why and the function returns ``fallback``."""
    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def driving(session: TrainingSession, *args: Any, **kwargs: Any) -> Any:
            try:
                with session.lease.driving():
                    return function(session, *args, **kwargs)
            except RunBusy as error:
                session.message = f"Not done: {error}."
                return fallback
        return driving
    return decorate


def _replace_model(session: TrainingSession, trainer: Trainer | None, checkpoint: Checkpoint | None,
                   status: str, message: str | None = None, view_data: DataBundle | None = None) -> None:
    _end_worker(session)
    session.trainer, session.checkpoint, session.status, session.message = trainer, checkpoint, status, message
    session.saved_step = None
    session.archived = None
    session._view_data = view_data
    session.version += 1
    session.results.clear()
    session.run_views.clear()


@_command(fallback=False)
def start(session: TrainingSession, config: BaseConfig, data: DataBundle, seed: int, device: str) -> bool:
    """A fresh Trainer for ``config`` (the mirror, on the CPU: the worker trains on ``device``), running. False
    (message set) when it cannot be built."""
    try:
        trainer = Trainer(session.variant, config, data, seed=seed, device="cpu")
    except (ConfigError, ValueError, RuntimeError) as error:
        session.message = f"Cannot start: {error}"
        session.status = ERROR if session.trainer is not None else IDLE
        return False
    _replace_model(session, trainer, None, RUNNING)
    session.device = device
    _start_worker(session)
    return True


def _start_worker(session: TrainingSession) -> None:
    """A worker continuing the mirror's run; a worker that cannot start leaves the run stopped, with the reason."""
    try:
        session.worker = LiveWorker(session.trainer, device=session.device, frames=True)
    except (OSError, RuntimeError, ValueError) as error:
        session.status, session.message = ERROR, f"The training process could not start: {error}"


def _end_worker(session: TrainingSession) -> None:
    if session.worker is not None:
        session.worker.stop()
        session.worker = None


@_command()
def settle(session: TrainingSession) -> None:
    """The run's exact state of now in ``session.trainer`` (before a save or a download of it): with a worker,
    its newest complete state (training goes on)."""
    if session.worker is not None:
        session.worker.sync()


@_command()
def pause(session: TrainingSession) -> None:
    if session.status == RUNNING:
        if session.worker is not None:
            session.worker.pause()  # its exact state is in the mirror now
            _take_worker_end(session)
        if session.status == RUNNING:
            session.status = PAUSED


@_command()
def resume(session: TrainingSession) -> None:
    if session.can_resume:
        session.status = RUNNING
        session.message = None
        _start_worker(session)


def change_model(session: TrainingSession, change: Callable[[Variant], Any]) -> Any:
    """``change(session.model)`` made to the run itself (e.g. the AE + GMM page's Refit), and its result.

    While a worker trains, the server's model is a mirror that every report overwrites with the worker's weights:
    a change made to it alone was undone within a second. So training pauses (the worker's exact state comes to
    the mirror and the worker ends), the change is made, and a new worker continues from the changed state, also
    when the change raises (the run goes on unchanged). Raises :class:`RunBusy` when another tab drives the run."""
    with session.lease.driving():
        in_worker = session.running
        if in_worker:
            pause(session)
        try:
            return change(session.model)
        finally:
            if in_worker:
                resume(session)


@_command()
def save_run(session: TrainingSession, save: Callable[[Trainer], Path]) -> Path:
    """``save(trainer)`` of the run's exact state of now (a worker's newest complete state; training goes on), and
    the run marked saved. The save's own errors (CheckpointError, OSError) reach the caller."""
    settle(session)
    path = save(session.trainer)
    mark_saved(session)
    return path


@_command(fallback="another tab is busy with this run: try again")
def resume_with_lr(session: TrainingSession, lr: float) -> str | None:
    """Continue a run that stopped on a non-finite value (weights already back at the last finite state) with a
    new learning rate. Returns an error message (naming the field and range) or None."""
    trainer = session.trainer
    if session.status != ERROR or trainer is None or trainer.error is None:
        return "only a run stopped by a non-finite loss can resume with a new learning rate"
    try:
        trainer.clear_error(lr=lr)
    except ConfigError as error:
        return str(error)
    session.status, session.message = RUNNING, None
    _start_worker(session)
    return None


@_command()
def mark_saved(session: TrainingSession) -> None:
    """The run as it is now is in a file (Stop / Reset need not ask)."""
    session.saved_step = session.step


@_command()
def reset(session: TrainingSession) -> None:
    """Forget the run (Stop/Reset); the page's form can start a new one. The memory it held goes back to the OS."""
    _replace_model(session, None, None, IDLE)
    release_freed_memory()
    release_freed_memory_later()  # and what the page's next redraws free


@_command()
def archive(session: TrainingSession, path: Path) -> None:
    """The run is in ``path`` (its autosave, or the checkpoint it was loaded from) and no tab shows it: its memory
    goes back; the next page that shows it loads it from there (:func:`take_archived`)."""
    if session.running:
        raise RuntimeError("a run that trains cannot be archived: pause it first")
    message = session.message
    _replace_model(session, None, None, IDLE, message)
    session.archived = path


@_command()
def take_archived(session: TrainingSession) -> Path | None:
    """The archived run's file, once (the caller loads it back), or None."""
    path, session.archived = session.archived, None
    return path


@_command()
def adopt_trainer(session: TrainingSession, trainer: Trainer, checkpoint: Checkpoint) -> None:
    """A trainer restored from ``checkpoint``: paused (resumable), or finished / error as stored."""
    if trainer.error is not None:
        status = ERROR
    elif trainer.done:
        status = FINISHED
    else:
        status = PAUSED
    _replace_model(session, trainer, checkpoint, status, trainer.error)
    session.device = str(trainer.device)  # Resume trains where the checkpoint was restored
    mark_saved(session)


@_command()
def adopt_view_only(session: TrainingSession, checkpoint: Checkpoint, data: DataBundle | None, why: str) -> None:
    """A checkpoint whose training cannot resume here: its model and stored curves, nothing to train."""
    _replace_model(session, None, checkpoint, VIEW_ONLY, why, view_data=data)
    mark_saved(session)


def advance(session: TrainingSession, first_wait: float = FIRST_REPORT_WAIT_S) -> list[dict[str, Any]]:
    """The worker's reports that have arrived (a fresh run's first, waited for up to ``first_wait`` s) into the
    mirror; the new rows. Moves status to finished / error when the run stops (the worker's end, or its death, with
    the cause). Nothing when another thread drives the run (a tab's command, the keeper, the relay): that thread
    brings the reports in."""
    if not session.lease.try_take():
        return []
    try:
        return _advance(session, first_wait)
    finally:
        session.lease.give()


def _advance(session: TrainingSession, first_wait: float) -> list[dict[str, Any]]:
    trainer = session.trainer
    if session.status != RUNNING or trainer is None:
        return []
    if session.worker is None:
        _start_worker(session)
        return []
    rows = session.worker.poll()
    deadline = time.monotonic() + first_wait
    while not trainer.history and not session.worker.ended() and time.monotonic() < deadline:  # a fresh run
        rows = session.worker.poll(wait=0.05)
    _take_worker_end(session)
    return rows


def _take_worker_end(session: TrainingSession) -> None:
    """The worker ended (finished, paused, failed or died): its last state into the mirror, the status to match."""
    worker, trainer = session.worker, session.trainer
    if worker is None or not worker.ended():
        return
    worker.settle()
    session.worker = None
    if worker.error is not None:
        session.status = ERROR
        session.message = (f"{worker.error} The run keeps its last reported state (step {trainer.step:,}): Save "
                           "keeps it, Resume continues from it.")
    elif trainer.error is not None:
        session.status, session.message = ERROR, trainer.error
    elif trainer.done:
        session.status = FINISHED


def model_cached(session: TrainingSession, name: str, compute: Callable[[], Any], *key: Hashable) -> Any:
    """A heavy result (t-SNE map, encodings) computed once per model state and ``key``.

    The cache key is (name, model version, training step, *key): training on, loading or resetting invalidates it.
    Only the newest few results of each name are kept, so a live view caching per step does not push out others.
    """
    full_key = (name, session.version, session.step, *key)
    if full_key not in session.results:
        same_name = [k for k in session.results if k[0] == name]
        for old in same_name[:max(0, len(same_name) - MAX_RESULTS_PER_NAME + 1)]:  # oldest first
            del session.results[old]
        session.results[full_key] = compute()
    return session.results[full_key]


def run_view_state(session: TrainingSession, name: str, new: Callable[[], Any]) -> Any:
    """What a live view of this run keeps from one redraw to the next (the mean-gap curve and the frozen copy of
    the weights it works on, the estimator series), made by ``new()`` on first use. It goes with the run: Stop /
    Reset, Start or a load drops it (kept in ``st.session_state``, a copy of the weights outlived the run)."""
    if name not in session.run_views:
        session.run_views[name] = new()
    return session.run_views[name]


def latest_cached(session: TrainingSession, name: str, *key: Hashable) -> tuple[int, Any] | None:
    """(step, result) of the newest cached ``name`` result for this model and ``key`` (maybe an older step)."""
    found = [(k[2], v) for k, v in session.results.items()
             if k[0] == name and k[1] == session.version and tuple(k[3:]) == key]
    return max(found, key=lambda kv: kv[0]) if found else None
