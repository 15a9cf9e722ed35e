"""The progress line of a run, as the page and the live stream write it."""

from __future__ import annotations

from vaelab.training import Trainer


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(trainer: Trainer, running: bool = True) -> str:
    """'Epoch 3/10 · step 1,234/4,000 · 5,400 samples/s · 0:42 left' (or the finished summary); not running (paused,
    stopped), only where the run is: no rate or time left that would stand still on screen."""
    epochs = trainer.config.epochs
    if trainer.done:
        return (f"Finished: {trainer.epoch} epoch{'s' if trainer.epoch != 1 else ''}, {trainer.step:,} steps "
                f"in {_clock(trainer.elapsed)}")
    parts = [f"Epoch {min(trainer.epoch + 1, epochs)}/{epochs}", f"step {trainer.step:,}/{trainer.total_steps:,}"]
    if not running:
        return " · ".join(parts)
    rate = next((r["samples_per_s"] for r in reversed(trainer.history) if r.get("kind") == "train"), None)
    if rate is not None:
        parts.append(f"{rate:,.0f} samples/s")
    if trainer.progress > 0:
        parts.append(f"{_clock(trainer.elapsed * (1 - trainer.progress) / trainer.progress)} left")
    return " · ".join(parts)
