"""Reference models for comparisons: the chunked training loop every model trained beside a page's own uses
(``train_to_the_end``), and a reference run that follows a model's training step by step (``ReferenceRun``: the
same net without its penalty, say).

    reference = reference_run("contractive", config, data, measure, seed=0, lam=0.0)
    reference.extend_to(model_trainer.step, max_seconds=1.0)   # bounded; call again until caught_up(step)

A reference of the same variant built under the same seed starts from the same weights, so the two differ only in
the changed fields (``lam=0.0``: the penalty).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from vaelab.config import BaseConfig
from vaelab.data import DataBundle
from vaelab.training import Trainer
from vaelab.variants.base import Variant


def train_to_the_end(trainer: Trainer, on_progress: Callable[[Trainer], None] | None = None,
                     chunk_seconds: float = 0.25) -> Trainer:
    """Advance ``trainer`` in chunks of about ``chunk_seconds`` until it is done or stops on a non-finite loss
    (``trainer.error`` set); ``on_progress(trainer)`` runs after every chunk. Returns the trainer."""
    while not trainer.done and trainer.error is None:
        trainer.advance(max_seconds=chunk_seconds)
        if on_progress is not None:
            on_progress(trainer)
    return trainer


@dataclasses.dataclass
class ReferenceRun:
    """A Trainer beside a model's own, advanced in bounded chunks up to that model's step, with ``measure(model)``
    recorded at the start, after each epoch and where a chunk stops: ``points`` = [(epoch, value), ...].

    ``seconds`` is the wall time spent training and measuring it (its cost to the page)."""

    trainer: Trainer
    measure: Callable[[Variant], float]
    points: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.points:
            started = time.perf_counter()
            self._record()
            self.seconds += time.perf_counter() - started

    @property
    def epoch(self) -> float:
        """Epochs trained (fractional)."""
        return self.trainer.step / self.trainer.steps_per_epoch

    def caught_up(self, step: int) -> bool:
        """True when it has trained ``step`` steps (or its whole run), or cannot train on (``trainer.error``)."""
        t = self.trainer
        return t.step >= min(step, t.total_steps) or t.error is not None

    def extend_to(self, step: int, max_seconds: float) -> bool:
        """Train towards ``step`` for about ``max_seconds`` (at least one step while behind), stopping at every
        epoch end to record the measure. Returns :meth:`caught_up`."""
        t, started = self.trainer, time.perf_counter()
        left = max_seconds
        while not self.caught_up(step) and left > 0:
            to_epoch_end = t.steps_per_epoch - (t.step - t.epoch * t.steps_per_epoch)
            t.advance(max_steps=min(step - t.step, to_epoch_end), max_seconds=left)
            self._record()
            left = max_seconds - (time.perf_counter() - started)
        self.seconds += time.perf_counter() - started
        return self.caught_up(step)

    def _record(self) -> None:
        if self.trainer.error is None and (not self.points or self.points[-1][0] != self.epoch):
            self.points.append((self.epoch, float(self.measure(self.trainer.model))))


def reference_run(variant: str, config: BaseConfig, data: DataBundle, measure: Callable[[Variant], float],
                  seed: int = 0, device: str = "cpu", **changes: Any) -> ReferenceRun:
    """A fresh :class:`ReferenceRun` of ``variant`` with ``config.replace(**changes)`` (e.g. ``lam=0.0``: the same
    net without its penalty), on the same data, seed and device as the model it follows."""
    return ReferenceRun(Trainer(variant, config.replace(**changes), data, seed=seed, device=device), measure)
