"""A live training run in a worker process: the app's page sends commands and draws from the snapshots it receives.

    mirror = Trainer("vae", config, data, seed=0)       # the server's copy: never trains, only mirrors the worker
    worker = LiveWorker(mirror)                          # a process that continues from the mirror's state
    worker.poll()                                        # each redraw: newest rows and weights -> the mirror
    worker.pause()                                       # the worker's whole state -> the mirror; the worker ends

The worker owns the training: its own process (forkserver preloaded with torch on Linux, spawn elsewhere), its own
RNG, its share of the cores and a memory limit set by the operating system. It runs the same ``Trainer`` in chunks
and answers each request between chunks with one *report*: the history rows since the last report, the weights and
counters the pictures draw from, and its status. Every ``COMPLETE_EVERY_S``, when asked (a save) and in its last
report it sends the trainer's complete state instead (weights, optimizer, RNG, data order: ``Trainer.state_dict``
without the history): three times the bytes for Adam, which the server would unpickle two or three times a second.
Requests are asynchronous: ``poll`` takes what has arrived and asks for the next report, so a redraw never waits
for training and training never waits for a redraw (a thread in the worker writes the report into the pipe).

The mirror takes every report's rows and weights at once (the pictures draw from them) and the newest complete state
when it is needed (``settle``: pause, save, a dead worker, the end of the run), so after ``settle`` the mirror is the
run's exact state and saving or resuming it is the same as saving or resuming the worker. A worker that dies is
reported with its cause (``error``); the run goes back to its last complete state (at most ``COMPLETE_EVERY_S``
old), the history rows after it dropped.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import queue as queue_module
import threading
import time
import weakref
from typing import Any

import torch

from vaelab.live_frames import Frame, ViewSchedule, decode_frame, encode_frame, fixed_batch, views_for
from vaelab.memory import freeze_long_lived_objects
from vaelab.training import Trainer
from vaelab.workers import (
    MEMORY_HEADROOM_MB,
    _context,
    _init_worker,
    _main_module_hidden,
    death_cause,
    free_cores,
    vaelab_environment,
)

FRAME_IMAGES = 10  # test images in the reconstruction frame, as the page shows them
CHUNK_SECONDS = 0.2  # training between two looks at the command pipe (Pause answers within about this)
FIRST_CHUNK_SECONDS = 0.05  # a fresh run's first chunk: its first loss row reaches the page sooner
MAX_THREADS = 4  # these models gain nothing from more torch threads; more only take cores from other sessions
SETTLE_TIMEOUT_S = 10.0
# A report's state travels in parts of this size. multiprocessing reads a message with os.read(fd, remaining) until
# it has all of it: each read allocates a buffer of all that remains and fills 64 KiB of it (a pipe's worth), so one
# 4 MB message cost about 140 MB of allocations. In the server that was 100 MB/s while the VAE page trained.
STATE_PART_BYTES = 64 * 1024
COMPLETE_EVERY_S = 5.0  # a report carries the complete state at least this often (what a dead worker's run keeps)
# A report carries the weights at most this often: the page's pictures come as frames, and the server's copy of the
# weights only serves what a control draws on demand. Sending them with every report (4 a second) cost the worker
# and the server the pickling and loading of the whole model each time.
WEIGHTS_EVERY_S = 1.0
# A worker whose run ended waits this long for the server to read its last report (the run's final state), then
# ends anyway. It waited 30 s: a run that ended while no tab watched it lost its final state to a reader that came
# later (the keeper of unwatched runs reads within 30 s, vaelab/ui/run_keeper.py). A worker nobody keeps any more is
# killed (LiveWorker.__del__), and one whose server went away ends at once (its pipe breaks).
FINAL_REPORT_WAIT_S = 1800.0
# A live worker runs below the server's priority: when more runs train than there are cores, the server (it relays
# every run's frames and answers every click) still gets the CPU it asks for, and the workers share the rest. At equal
# priority, sixteen workers on two cores left the server a seventeenth of them, and every picture came seconds late.
WORKER_NICENESS = 10
# this process's running workers (new ones take their share of the cores); weak, so that a run nobody keeps any more
# takes its worker with it (LiveWorker.__del__): a strong set kept every worker training for good
_live_workers: weakref.WeakSet[LiveWorker] = weakref.WeakSet()
# Lock rules (_registry_lock): it guards ``_live_workers`` and ``_warming`` and nothing else. Hold it only to add,
# discard or copy the set, or to read or set ``_warming``: never while asking a worker anything (``alive`` reads its
# process; ``poll`` / ``pause`` read the pipe and may join), never while taking another lock. It is the innermost
# lock of the server process: callers may hold a run's lease (vaelab/ui/session.py) when they come here, nothing
# here takes one. ``LiveWorker.__del__`` may run in any thread at any allocation, this lock held or not: it takes
# no lock. (A worker that had ended unobserved ran its death check inside ``worker_threads``' hold of this lock,
# and the check's ``_close`` took it again: the script thread waited for itself, and every later Start behind it.)
_registry_lock = threading.Lock()


def worker_threads() -> int:
    """Torch threads for a new worker: ``VAELAB_WORKER_THREADS``, else the free cores but one (the server draws),
    shared with the workers already running, 1 to ``MAX_THREADS``."""
    configured = os.environ.get("VAELAB_WORKER_THREADS")
    if configured:
        return max(1, int(configured))
    with _registry_lock:
        workers = list(_live_workers)
    running = sum(1 for w in workers if w.alive)  # outside the lock: each answer reads a process
    return max(1, min(MAX_THREADS, (free_cores() - 1) // (running + 1)))


def warm_up() -> None:
    """Start the forkserver (it imports torch once, a few seconds) so the first Start does not wait for it."""
    ctx = _context()
    if hasattr(ctx, "get_start_method") and ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        with _main_module_hidden():
            forkserver.ensure_running()


_warming: threading.Thread | None = None


def warm_up_in_background() -> None:
    """Once per process, in a thread: the forkserver, and torch's lazy import that a first optimizer triggers
    (about 1 s each), so that a page's first Start answers at once."""
    global _warming
    with _registry_lock:
        if _warming is not None:
            return
        _warming = threading.Thread(target=_warm, name="vaelab-warm-up", daemon=True)
    _warming.start()


def _warm() -> None:
    import torch._dynamo  # noqa: F401  (Adam imports it on first use)

    warm_up()
    freeze_long_lived_objects()  # all heavy imports done (torch._dynamo brings sympy, triton, ...)


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _from_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=True)


class LiveWorker:
    """One training session's worker process, continuing ``mirror``'s run (see the module docstring).

    One thread at a time drives a worker (its commands read the pipe and write the mirror): the holder of the run's
    lease (vaelab/ui/session.py). ``alive`` and ``pid`` only read, and any thread may ask them."""

    def __init__(self, mirror: Trainer, device: str = "cpu", memory_limit_mb: float | None = None,
                 threads: int | None = None, frames: bool = False) -> None:
        from vaelab.budget import budget_mb

        self.mirror = mirror
        self.error: str | None = None  # the worker died or failed: why
        # with ``frames``: the newest frame of each live view the worker computed (vaelab/live_frames.py)
        self.frames: dict[str, Frame] = {}
        self.reported_at = 0.0  # time.time() in the worker when it wrote its newest report (the rows' freshness)
        self._complete: dict[str, Any] | None = None  # the newest complete state the worker reported
        self._complete_rows = 0  # the history rows at that state
        self._mirror_settled = True  # the mirror holds exactly that state (no later weights applied)
        self._awaiting = False  # a report was asked for and has not arrived
        self._finished = False  # the worker sent its last report (paused, done, error) and ended
        limit = budget_mb() + MEMORY_HEADROOM_MB if memory_limit_mb is None else memory_limit_mb
        ctx = _context()
        self._conn, child = ctx.Pipe(duplex=True)
        state = _to_bytes(mirror.state_dict(include_history=True))
        self.threads = threads or worker_threads()
        self._process = ctx.Process(
            target=_worker_main, daemon=True, name=f"vaelab-live-{mirror.variant}",
            args=(child, mirror.variant, mirror.config.to_dict(), mirror.data, mirror.seed, device, state,
                  self.threads, limit, vaelab_environment(), frames))
        with _main_module_hidden():
            self._process.start()
        child.close()
        with _registry_lock:
            _live_workers.add(self)
        self._request()

    # -- state --------------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """Training (or about to): False once it sent its last report, failed or ended. It only reads: the driving
        thread's next command (``poll``, ``pause``, ``sync``) reads what a dead worker sent and records why it
        ended (``error``); another thread may ask without touching the pipe or the mirror."""
        return not self._finished and self.error is None and self._process.is_alive()

    def ended(self) -> bool:
        """For the driving thread: whether the worker ended (sent its last report, failed or died); a death not yet
        observed is recorded now, with what the worker sent before it went and why it ended (``error``)."""
        self._check_death()
        return not self.alive

    @property
    def pid(self) -> int | None:
        return self._process.pid

    # -- commands -----------------------------------------------------------------------------------------
    def poll(self, wait: float = 0.0) -> list[dict[str, Any]]:
        """Apply every report that has arrived (waiting up to ``wait`` s for one) to the mirror, ask for the next
        one; the new history rows."""
        rows, _ = self._receive(wait=wait if self.alive else 0.0)
        if self.alive:
            self._request()
        return rows

    def pause(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Stop training; the worker's exact state goes to the mirror and the worker ends."""
        self._finish("pause", timeout)

    def sync(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """The worker's state of now in the mirror (for a save while training runs); training goes on."""
        self._check_death()
        if not self.alive:
            self.settle()
            return
        self._send(("report", True))  # the complete state
        deadline = time.monotonic() + timeout
        arrived = False
        while not arrived and time.monotonic() < deadline and self.alive:
            _, arrived = self._receive(wait=min(0.5, max(0.0, deadline - time.monotonic())))
        self.settle()

    def stop(self) -> None:
        """End the worker at once (Stop / Reset): nothing more reaches the mirror."""
        self._finished = True
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=5)
        self._close()

    def settle(self) -> None:
        """Put the newest complete state into the mirror (weights, optimizer, RNG, data order, step, error); the
        history rows logged after it (a dead worker's last seconds) go."""
        if self._complete is None or self._mirror_settled:
            return
        del self.mirror.history[self._complete_rows:]
        self.mirror.load_state_dict({**self._complete, "history": self.mirror.history})
        self._mirror_settled = True

    # -- inside ---------------------------------------------------------------------------------------------
    def _finish(self, command: str, timeout: float) -> None:
        self._check_death()  # ended unobserved: what it sent, and why it ended
        if self.alive:
            self._send((command,))
            deadline = time.monotonic() + timeout
            while not self._finished and time.monotonic() < deadline and self._process.is_alive():
                self._receive(wait=min(0.5, max(0.0, deadline - time.monotonic())))
            self._receive(wait=0.0)
        if not self._finished:
            self.stop()
        self.settle()

    def _request(self) -> None:
        if not self._awaiting:
            self._send(("report", False))
            self._awaiting = True

    def _send(self, message: tuple) -> None:
        with contextlib.suppress(OSError, ValueError):  # the worker is gone: _check_death reports why
            self._conn.send(message)

    def _receive(self, wait: float) -> tuple[list[dict[str, Any]], bool]:
        """Apply the reports that have arrived (waiting up to ``wait`` s for the first): (new rows, any arrived)."""
        rows: list[dict[str, Any]] = []
        arrived = False
        timeout = wait
        while not self._conn.closed:
            try:
                if not self._conn.poll(timeout):
                    break
                report = _receive_report(self._conn)
            except (EOFError, OSError):
                break
            timeout, arrived = 0.0, True
            rows.extend(self._apply(report))
        self._check_death()
        return rows, arrived

    def _check_death(self) -> None:
        """A process gone without its last report: read what it sent before it went, then record its end."""
        if self._finished or self.error is not None or self._process.is_alive():
            return
        try:
            while not self._conn.closed and self._conn.poll(0):
                self._apply(_receive_report(self._conn))
        except (EOFError, OSError):
            pass
        if not self._finished:
            self._process.join(timeout=1)
            self.error = f"The training process {death_cause(self._process.exitcode)}."
            self.settle()
        self._close()

    def _apply(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        """One report into the mirror: rows (replacing any the worker took back), weights, counters."""
        self._awaiting = False
        self.reported_at = report.get("at", self.reported_at)
        mirror = self.mirror
        base, rows = report["base"], report["rows"]
        del mirror.history[base:]
        mirror.history.extend(rows)
        if report.get("failure"):
            self.error = report["failure"]
        for data in report.get("frames") or ():
            frame = decode_frame(data)
            self.frames[frame.view] = frame
        if report.get("state") is not None:
            state = _from_bytes(report["state"])
            if "model" in state:
                mirror.model.load_state_dict(state["model"])  # a variant resizes what may change size itself
            mirror.step, mirror.epoch, mirror.elapsed = state["step"], state["epoch"], state["elapsed"]
            mirror.error = state["error"]
            mirror.model.set_training_progress(mirror.step / mirror.steps_per_epoch)
            if report.get("complete"):
                self._complete, self._complete_rows = state, len(mirror.history)
            self._mirror_settled = False
        if report.get("final"):
            self._finished = True
            self._process.join(timeout=5)
            self._close()
        return rows

    def _close(self) -> None:
        with _registry_lock:  # the set alone: the pipe closes outside
            _live_workers.discard(self)
        if not self._conn.closed:
            self._conn.close()

    def __del__(self) -> None:  # a run nobody keeps takes its worker with it; any thread, no lock (see above)
        try:
            if self._process.is_alive():
                self._process.kill()
        except (AttributeError, ValueError, AssertionError):
            pass


def _send_report(conn: Any, report: dict[str, Any]) -> None:
    """``report`` with its state bytes sent after it in ``STATE_PART_BYTES`` parts (``_receive_report``)."""
    state = report.get("state")
    if state is None:
        conn.send(report)
        return
    view = memoryview(state)
    conn.send({**report, "state": None, "state_parts": math.ceil(len(view) / STATE_PART_BYTES)})
    for start in range(0, len(view), STATE_PART_BYTES):
        conn.send_bytes(view[start:start + STATE_PART_BYTES])


def _receive_report(conn: Any) -> dict[str, Any]:
    """One report as ``_send_report`` sent it, its state bytes whole again."""
    report = conn.recv()
    parts = report.pop("state_parts", 0)
    if parts:
        report["state"] = b"".join([conn.recv_bytes() for _ in range(parts)])
    return report


# ---------------------------------------------------------------- the worker process
def _worker_main(conn: Any, variant: str, config: dict[str, Any], data: Any, seed: int, device: str, state: bytes,
                 threads: int, limit_mb: float, environment: dict[str, str], frames: bool = False) -> None:
    for key in [k for k in os.environ if k.startswith("VAELAB_")]:  # the caller's settings of now
        del os.environ[key]
    os.environ.update(environment)
    outbox: queue_module.Queue = queue_module.Queue()
    writer = threading.Thread(target=_write_reports, args=(conn, outbox), daemon=True)
    writer.start()  # before the memory limit: a thread's stack counts against it
    _init_worker(threads, limit_mb)
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice (Windows)
        os.nice(WORKER_NICENESS)
    try:
        _train(conn, outbox, variant, config, data, seed, device, state, frames)
    finally:
        outbox.put(None)
        writer.join(timeout=FINAL_REPORT_WAIT_S)
        conn.close()


def _write_reports(conn: Any, outbox: queue_module.Queue) -> None:
    """The worker's sender: a report of a few MB blocks on the pipe until the server reads it; training does not."""
    while (report := outbox.get()) is not None:
        try:
            _send_report(conn, report)
        except (OSError, ValueError):  # the server went away
            return
        except Exception as error:  # noqa: BLE001 (no memory to pickle it: say so in a few bytes)
            with contextlib.suppress(Exception):
                conn.send({"base": 0, "rows": [], "state": None, "final": True,
                           "failure": failure_text(error)})
            return


def _train(conn: Any, outbox: queue_module.Queue, variant: str, config_dict: dict[str, Any], data: Any, seed: int,
           device: str, state: bytes, frames: bool = False) -> None:
    from vaelab.variants import get_variant

    sent = 0  # history rows already reported
    completed_at = -math.inf  # when a report last carried the complete state
    weighed_at = -math.inf  # when a report last carried the weights
    newest: dict[str, Frame] = {}  # frames computed since the last report, the newest of each view
    schedule: ViewSchedule | None = None
    batch = fixed_batch(data, FRAME_IMAGES) if frames else None

    def compute_frames() -> None:
        if schedule is not None:
            newest.update((frame.view, frame) for frame in schedule.run_due(trainer.model, batch, trainer.step))

    def report(final: bool = False, failure: str | None = None, complete: bool = False) -> None:
        nonlocal sent, completed_at, weighed_at
        base = min(sent, len(trainer.history))
        rows = [dict(r) for r in trainer.history[base:]]
        sent = len(trainer.history)
        complete = complete or final or time.monotonic() - completed_at >= COMPLETE_EVERY_S
        if complete:
            completed_at = time.monotonic()
            state = trainer.state_dict(include_history=False)
        else:  # the counters, and now and then the weights (what a control draws from on demand)
            state = {"step": trainer.step, "epoch": trainer.epoch, "elapsed": trainer.elapsed, "error": trainer.error}
            if time.monotonic() - weighed_at >= WEIGHTS_EVERY_S:
                state["model"] = trainer.model.state_dict()
        if "model" in state:
            weighed_at = time.monotonic()
        outbox.put({"base": base, "rows": rows, "state": _to_bytes(state), "complete": complete, "final": final,
                    "failure": failure, "frames": [encode_frame(f) for f in newest.values()], "at": time.time()})
        newest.clear()

    trainer: Trainer | None = None
    ready = False  # the trainer holds the run's state
    try:
        config = get_variant(variant).config_cls.from_dict(config_dict)
        trainer = Trainer(variant, config, data, seed=seed, device=device)
        full = _from_bytes(state)
        sent = len(full["history"])
        trainer.load_state_dict(full)
        ready = True
        if frames:
            schedule = ViewSchedule(views_for(variant, trainer.model))
        if not trainer.done and trainer.error is None and not trainer.history:
            trainer.advance(max_seconds=FIRST_CHUNK_SECONDS)  # a fresh run: the first report carries rows
        while True:
            while conn.poll(0):
                command, *options = conn.recv()
                if command == "report":
                    report(complete=bool(options and options[0]))
                elif command == "pause":
                    report(final=True)
                    return
            compute_frames()
            if trainer.done or trainer.error is not None:
                report(final=True)
                return
            trainer.advance(max_seconds=CHUNK_SECONDS if trainer.history else FIRST_CHUNK_SECONDS)
    except (EOFError, OSError):  # the server went away
        return
    except Exception as error:  # noqa: BLE001 (every failure is the run's error, reported to the page)
        failure = failure_text(error, started=ready)
        try:
            if not ready:
                raise RuntimeError("no state to report")
            report(final=True, failure=failure)  # the weights of the last finished step
        except Exception:  # noqa: BLE001 (no memory left even for the report: the failure alone)
            outbox.put({"base": 0, "rows": [], "state": None, "final": True, "failure": failure})


def failure_text(error: BaseException, started: bool = True) -> str:
    """A worker's failure in one line: out of memory (the memory limit), or the error's first line."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, MemoryError) or "allocate memory" in str(error) or "out of memory" in str(error).lower():
        return ("The training process ran out of memory (its limit is the memory budget, VAELAB_MEMORY_BUDGET_MB, "
                f"plus {MEMORY_HEADROOM_MB} MB): {text}")
    return f"The training process {'failed' if started else 'could not start'}: {type(error).__name__}: {text}"
