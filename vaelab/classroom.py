"""The classroom set: every variant's lesson model, trained in the background on the training workers and kept as
``classroom`` checkpoints, exactly as ``python -m vaelab pretrain`` writes them (``<dir>/<variant>/classroom.pt``).

    job = start(lesson_specs("mnist-5k"))        # returns at once; the runs train in worker processes
    job.progress()                               # [ModelProgress(variant, step, total, state, error), ...]
    job.done, job.fraction
    lesson_checkpoint("vae")                     # the saved lesson model's path, or None

One job per checkpoint folder at a time, kept for the whole server process (a teacher who leaves Home finds it still
running). The job's thread only waits on the workers (``workers.run``) and records their progress: no training and
no drawing happen in it. ``$VAELAB_CLASSROOM_VARIANTS`` (comma-separated keys) and ``$VAELAB_CLASSROOM_EPOCHS``
(a whole number >= 1) shrink the set for a quick trial, as ``pretrain --only / --epochs`` do.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.config import ConfigError
from vaelab.workers import RunResult, RunSpec

if TYPE_CHECKING:
    from vaelab.checkpoints import CheckpointInfo

# vaelab.checkpoints (torch) is imported where it is used: Home draws its button and progress before torch loads.

# One checkpoint per variant with the preset its lesson uses, named CLASSROOM_NAME (``pretrain`` writes the same).
CLASSROOM_NAME = "classroom"
CLASSROOM_PRESETS = {"ae": "default", "denoising": "default", "sparse": "default", "ksparse": "default",
                     "contractive": "default", "vae": "default", "cvae": "default", "binary-vae": "default",
                     "ae-gmm": "default"}
VARIANTS_ENV = "VAELAB_CLASSROOM_VARIANTS"
EPOCHS_ENV = "VAELAB_CLASSROOM_EPOCHS"
WAITING, TRAINING, SAVING, SAVED, FAILED = "waiting", "training", "saving", "saved", "failed"


def classroom_budget() -> tuple[list[str], int | None]:
    """(variant keys, epochs or None for each preset's) from the environment; every variant by default."""
    text = os.environ.get(VARIANTS_ENV, "").strip()
    keys = checked_variants([k.strip() for k in text.split(",") if k.strip()] if text else list(CLASSROOM_PRESETS),
                            VARIANTS_ENV)
    epochs_text = os.environ.get(EPOCHS_ENV, "").strip()
    if not epochs_text:
        return keys, None
    try:
        epochs = int(epochs_text)
    except ValueError:
        epochs = 0
    if epochs < 1:
        raise ConfigError(EPOCHS_ENV, f"must be a whole number >= 1 (got {epochs_text!r})")
    return keys, epochs


def checked_variants(keys: list[str], field_name: str) -> list[str]:
    """``keys`` when each is a variant of the classroom set; else a ConfigError naming ``field_name``."""
    for key in keys:
        if key not in CLASSROOM_PRESETS:
            raise ConfigError(field_name, f"unknown variant {key!r}; allowed: {', '.join(CLASSROOM_PRESETS)}")
    return keys


def lesson_config(variant: str, epochs: int | None = None):
    """The variant's lesson preset, ``epochs`` (when given) instead of the preset's."""
    from vaelab.variants import get_variant

    return get_variant(variant).config_cls.from_preset(CLASSROOM_PRESETS[variant],
                                                        **({} if epochs is None else {"epochs": epochs}))


def lesson_specs(train: str, test: str | None = None, seed: int = 0, device: str = "cpu",
                 variants: list[str] | None = None, epochs: int | None = None,
                 directory: str | Path | None = None) -> list[RunSpec]:
    """One run per variant: its lesson preset (``epochs`` overrides the preset's), saved as ``classroom``."""
    keys = list(CLASSROOM_PRESETS) if variants is None else variants
    return [RunSpec(key, lesson_config(key, epochs).to_dict(), train, test, seed, device, CLASSROOM_NAME,
                    None if directory is None else str(directory)) for key in keys]


def lesson_checkpoint(variant: str, directory: str | Path | None = None) -> Path | None:
    """The variant's saved lesson model, when there is one."""
    from vaelab.checkpoints import checkpoint_path

    path = checkpoint_path(variant, CLASSROOM_NAME, directory)
    return path if path.is_file() else None


def lesson_checkpoints(directory: str | Path | None = None, variant: str | None = None) -> list[CheckpointInfo]:
    """The classroom set as saved now (unreadable files included, with ``error`` set), in variant order; only the
    variant's when one is named."""
    from vaelab.checkpoints import list_checkpoints

    return [i for i in list_checkpoints(directory, variant) if i.name == CLASSROOM_NAME]


@dataclass(frozen=True)
class ModelProgress:
    """Where one lesson model stands."""

    variant: str
    step: int
    total: int  # 0 until its worker reports
    state: str  # waiting, training, saving, saved, failed
    error: str | None = None

    @property
    def fraction(self) -> float:
        if self.state == SAVED:
            return 1.0
        return min(1.0, self.step / self.total) if self.total else 0.0


class ClassroomJob:
    """The runs of one preparation and their progress; ``run`` is what its thread does."""

    def __init__(self, specs: list[RunSpec]) -> None:
        self.specs = specs
        self.started = time.time()
        self._lock = threading.Lock()
        self._steps: dict[int, tuple[int, int]] = {}  # run index -> (step, total steps)
        self._results: list[RunResult] | None = None
        self._error: str | None = None
        self.thread = threading.Thread(target=self.run, name="vaelab-classroom", daemon=True)

    def run(self) -> None:
        from vaelab import workers

        try:
            results = workers.run(self.specs, on_progress=self._on_progress)
        except Exception as error:  # the workers could not start at all: every run says why
            with self._lock:
                self._error = f"{type(error).__name__}: {error}"
        else:
            with self._lock:
                self._results = results

    def _on_progress(self, index: int, step: int, total: int) -> None:
        with self._lock:
            self._steps[index] = (step, total)

    @property
    def done(self) -> bool:
        with self._lock:
            return self._results is not None or self._error is not None

    def progress(self) -> list[ModelProgress]:
        with self._lock:
            steps, results, error = dict(self._steps), self._results, self._error
        return [self._progress_of(i, spec, *steps.get(i, (0, 0)), results, error) for i, spec in enumerate(self.specs)]

    def _progress_of(self, i: int, spec: RunSpec, step: int, total: int, results: list[RunResult] | None,
                     error: str | None) -> ModelProgress:
        if error is not None:
            return ModelProgress(spec.variant, step, total, FAILED, error)
        if results is not None:
            result = results[i]
            return ModelProgress(spec.variant, step, total, SAVED if result.ok else FAILED, result.error)
        if self._saved_since_start(spec):  # its worker saved it; the others are still at work
            return ModelProgress(spec.variant, step, total, SAVED)
        if total and step >= total:
            return ModelProgress(spec.variant, step, total, SAVING)
        return ModelProgress(spec.variant, step, total, TRAINING if total else WAITING)

    def _saved_since_start(self, spec: RunSpec) -> bool:
        from vaelab.checkpoints import checkpoint_path

        path = checkpoint_path(spec.variant, CLASSROOM_NAME, spec.directory)
        try:
            return path.stat().st_mtime >= self.started
        except OSError:
            return False

    @property
    def fraction(self) -> float:
        models = self.progress()
        return sum(m.fraction for m in models) / len(models) if models else 1.0


_JOBS: dict[Path, ClassroomJob] = {}  # checkpoint folder -> its latest preparation, for the server's lifetime
# Lock rules: _JOBS_LOCK guards _JOBS alone (read or replace an entry), ClassroomJob._lock its job's progress and
# result. Neither is held while taking another lock (a job's ``done`` is asked outside _JOBS_LOCK), starting a
# thread, reading a file or waiting for the workers.
_JOBS_LOCK = threading.Lock()


def _folder(directory: str | Path | None) -> Path:
    """The checkpoint folder (checkpoints.checkpoint_dir's rule, without importing torch)."""
    return Path(directory or os.environ.get("VAELAB_CHECKPOINT_DIR") or "checkpoints").resolve()


def current_job(directory: str | Path | None = None) -> ClassroomJob | None:
    """The latest preparation into the folder (running or finished), if any since the server started."""
    with _JOBS_LOCK:
        return _JOBS.get(_folder(directory))


def start(specs: list[RunSpec]) -> ClassroomJob:
    """Start preparing the set in the background (the running job when one is already at work on its folder)."""
    if not specs:
        raise ConfigError("variants", "no lesson model to prepare")
    folder = _folder(specs[0].directory)
    with _JOBS_LOCK:
        running = _JOBS.get(folder)
    if running is not None and not running.done:  # outside: ``done`` takes the job's own lock
        return running
    job = ClassroomJob(specs)
    with _JOBS_LOCK:  # the same job as looked at (a second click since then got there first: its job stands)
        if _JOBS.get(folder) is not running:
            return _JOBS[folder]
        _JOBS[folder] = job
    job.thread.start()
    return job
