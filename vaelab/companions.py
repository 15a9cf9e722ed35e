"""A companion model for a page's own: the same-size Gaussian VAE beside the binary-latent VAE.

The binary-latent VAE page compares its model with a Gaussian VAE of the same size (hidden layers, latent
dimension, activation, training settings) on the same digits. The companion comes from a saved ``vae``
checkpoint or is trained here with the shared Trainer. Nothing in this module draws anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaelab.baselines import train_to_the_end
from vaelab.checkpoints import CheckpointError, load_checkpoint
from vaelab.config import BaseConfig
from vaelab.data import DataBundle
from vaelab.training import Trainer
from vaelab.variants import binary_vae, vae
from vaelab.variants.base import Variant


@dataclass
class Companion:
    """A trained Gaussian VAE (eval mode), its config, where it came from, and its history."""

    model: Variant
    config: vae.Config
    source: str  # e.g. "trained here (3 epochs)" or "checkpoint 'vae-mnist-5k-10ep'"
    input_dim: int
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)


def same_size_gaussian_vae(config: binary_vae.Config, **overrides: Any) -> vae.Config:
    """The Gaussian VAE matching a binary VAE's size: hidden layers, latent dimension (d bits -> d Gaussian
    dimensions), activation, L samples and the training settings; Bernoulli decoder, beta = 1 (the plain ELBO)."""
    values = {"hidden_sizes": config.hidden_sizes, "latent_dim": config.latent_dim, "activation": config.activation,
              "n_samples": config.n_samples, "lr": config.lr, "batch_size": config.batch_size,
              "epochs": config.epochs, "binarize": config.binarize, "decoder": "bernoulli", "beta": 1.0}
    return vae.Config.from_preset(None, **{**values, **overrides})


def size_summary(config: BaseConfig) -> str:
    """'hidden 200, latent 16' from a config with hidden_sizes and latent_dim."""
    hidden = ", ".join(str(h) for h in config.hidden_sizes) or "none"
    return f"hidden {hidden}, latent {config.latent_dim}"


def same_size(a: BaseConfig, b: BaseConfig) -> bool:
    """Same hidden layers and latent dimension."""
    return tuple(a.hidden_sizes) == tuple(b.hidden_sizes) and a.latent_dim == b.latent_dim


def train_gaussian_vae(config: vae.Config, data: DataBundle, seed: int = 0, device: str = "cpu",
                       on_progress: Callable[[Trainer], None] | None = None, chunk_seconds: float = 0.25
                       ) -> Companion:
    """Train a Gaussian VAE for ``config.epochs`` epochs, calling ``on_progress(trainer)`` after every chunk.

    Raises RuntimeError when training stops on a non-finite loss."""
    trainer = train_to_the_end(Trainer("vae", config, data, seed=seed, device=device), on_progress, chunk_seconds)
    if trainer.error is not None:
        raise RuntimeError(f"the Gaussian VAE stopped training: {trainer.error}")
    trainer.model.eval()
    epochs = trainer.epoch
    return Companion(trainer.model, config, f"trained here ({epochs} epoch{'s' if epochs != 1 else ''})",
                     data.input_dim, trainer.history)


def test_negative_elbo(history: Sequence[Mapping[str, Any]]) -> float | None:
    """The last test row's reconstruction + kl: the negative ELBO whatever beta the run trained with (its ``total``
    is reconstruction + beta * kl). None before a test row."""
    rows = [row for row in history if row.get("kind") == "test" and "reconstruction" in row and "kl" in row]
    return None if not rows else float(rows[-1]["reconstruction"] + rows[-1]["kl"])


def negative_elbo_caption(binary: float, gaussian: float, gaussian_config: vae.Config) -> str:
    """The two test figures with what they are: nats for Bernoulli decoders; a Gaussian decoder's figure is a
    negative log density of grey levels, which no number of nats compares with."""
    if gaussian_config.decoder == "bernoulli":
        return (f"Test negative ELBO per image (reconstruction + KL, whatever β): binary VAE {binary:.1f} nats, "
                f"Gaussian VAE {gaussian:.1f} nats (lower is better).")
    return (f"Test negative ELBO per image: binary VAE {binary:.1f} nats. The Gaussian VAE has a Gaussian decoder: "
            f"its {gaussian:.1f} is a negative log density of grey levels, not comparable with nats of a Bernoulli "
            "decoder.")


def load_gaussian_vae(path: str | Path, input_dim: int) -> Companion:
    """A saved ``vae`` checkpoint as a companion; CheckpointError when it is not a vae or its images differ."""
    ckpt = load_checkpoint(path, expected_variant="vae")
    if ckpt.meta.get("input_dim") != input_dim:
        raise CheckpointError(f"{ckpt.path.stem!r} was trained on images of {ckpt.meta.get('input_dim')} pixels; "
                              f"this data has {input_dim}")
    return Companion(ckpt.model, ckpt.config, f"checkpoint '{ckpt.path.stem}'", input_dim, ckpt.history)
