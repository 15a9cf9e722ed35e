"""Reference models for comparisons: a plain autoencoder of the same size as a variant, trained on demand, and the
chunked training loop every model trained beside a page's own uses (``train_to_the_end``).

    trainer = train_plain_autoencoder(contractive_config, data, seed=0, epochs=3, on_progress=update_bar)

The plain autoencoder copies every field it shares with the given config (layer sizes, activations, loss, learning
rate, batch size, epochs, binarisation), so the two differ only in what the variant adds (a penalty, noise, top-k).
Built under the same seed, a variant that adds no parameters starts from the same weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from vaelab.config import BaseConfig
from vaelab.data import DataBundle
from vaelab.training import Trainer
from vaelab.variants import ae


def plain_autoencoder_config(config: BaseConfig, epochs: int | None = None) -> ae.Config:
    """The ``ae`` config sharing every field ``config`` has; ``epochs`` (when given) replaces its epochs."""
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(ae.Config) if hasattr(config, f.name)}
    if epochs is not None:
        shared["epochs"] = epochs
    return ae.Config(**shared)  # ConfigError names a field that ae does not allow


def train_plain_autoencoder(config: BaseConfig, data: DataBundle, seed: int = 0, device: str = "cpu",
                            epochs: int | None = None, on_progress: Callable[[Trainer], None] | None = None,
                            chunk_seconds: float = 0.25) -> Trainer:
    """Train the plain autoencoder of ``config``'s size on ``data`` to the end and return its Trainer.

    ``on_progress(trainer)`` runs after each chunk of about ``chunk_seconds`` (e.g. to move a progress bar).
    A run that diverges stops early with ``trainer.error`` set, as the Trainer does.
    """
    trainer = Trainer("ae", plain_autoencoder_config(config, epochs), data, seed=seed, device=device)
    return train_to_the_end(trainer, on_progress, chunk_seconds)


def train_to_the_end(trainer: Trainer, on_progress: Callable[[Trainer], None] | None = None,
                     chunk_seconds: float = 0.25) -> Trainer:
    """Advance ``trainer`` in chunks of about ``chunk_seconds`` until it is done or stops on a non-finite loss
    (``trainer.error`` set); ``on_progress(trainer)`` runs after every chunk. Returns the trainer."""
    while not trainer.done and trainer.error is None:
        trainer.advance(max_seconds=chunk_seconds)
        if on_progress is not None:
            on_progress(trainer)
    return trainer
