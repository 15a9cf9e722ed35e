"""Denoising autoencoder [denoising]: the encoder sees a corrupted image, the loss compares with the clean one.

Corruptions (``noise_level`` = a):
    uniform          add U(0, a) noise per pixel, clamp to [0, 1]
    gaussian         add N(0, a^2) noise per pixel, clamp to [0, 1]
    masking          set a fraction a of the pixels to 0 (the original denoising paper's "destruction")
    salt-and-pepper  set a fraction a of the pixels to 0 or 1, each with probability 1/2

Corruption happens only inside ``loss`` (fresh noise every call, from torch's global RNG, which the trainer
seeds); ``encode`` and ``reconstruct`` use the input as given, so ``reconstruct(corrupt(x, ...))`` denoises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaelab.config import ConfigError, param, redefault
from vaelab.variants import ae

CORRUPTIONS = ("uniform", "gaussian", "masking", "salt-and-pepper")
FRACTION_KINDS = ("masking", "salt-and-pepper")  # noise_level is a fraction of pixels: must lie in [0, 1]


def check_corruption(kind: str, level: float) -> None:
    """Raise ConfigError (naming ``corruption`` or ``noise_level``) unless kind/level make a valid corruption."""
    if kind not in CORRUPTIONS:
        raise ConfigError("corruption", f"must be one of {', '.join(repr(k) for k in CORRUPTIONS)} (got {kind!r})")
    if isinstance(level, bool) or not isinstance(level, int | float) or not math.isfinite(level) or level < 0:
        raise ConfigError("noise_level", f"must be a finite number >= 0 (got {level!r})")
    if kind in FRACTION_KINDS and level > 1:
        raise ConfigError("noise_level", f"must be in [0, 1] for {kind} (a fraction of the pixels) (got {level:g})")


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A corrupted copy of x (B, D) in [0, 1] -> (B, D) in [0, 1]; x itself is not changed.

    ``generator`` (on x's device) makes the draw reproducible; None uses torch's global RNG.
    """
    check_corruption(kind, level)
    level = float(level)

    def uniform01() -> torch.Tensor:
        return torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    if kind == "uniform":
        return (x + level * uniform01()).clamp(0.0, 1.0)
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (x + level * noise).clamp(0.0, 1.0)
    hit = uniform01() < level  # (B, D) bool: each pixel is hit with probability level
    if kind == "masking":
        return x.masked_fill(hit, 0.0)
    salt = (uniform01() < 0.5).to(x.dtype)  # salt-and-pepper: 1 or 0 with equal odds
    return torch.where(hit, salt, x)


@dataclass
class Config(ae.Config):
    corruption: str = param("uniform", label="Corruption",
                            help="uniform: add U(0, a); gaussian: add N(0, a^2); masking: zero a fraction a of the "
                                 "pixels; salt-and-pepper: set a fraction a to 0 or 1. Noisy pixels are clamped "
                                 "to [0, 1].", choices=CORRUPTIONS)
    noise_level: float = param(0.5, label="Noise level (a)",
                               help="uniform: the noise's upper end a; gaussian: sigma; masking and "
                                    "salt-and-pepper: the fraction of pixels hit, in [0, 1].", low=0.0, high=5.0)
    epochs: int = redefault(ae.Config, "epochs", 10)

    PRESETS = {
        "default": {},  # uniform noise U(0, 0.5), the course setting
        "masking": {"corruption": "masking", "noise_level": 0.3},  # the denoising-autoencoder tutorial's 30%
        "gaussian": {"corruption": "gaussian", "noise_level": 0.3},
        "salt-and-pepper": {"corruption": "salt-and-pepper", "noise_level": 0.2},
    }
    PRESET_NOTES = {
        "default": "The lecture's denoising code: uniform noise U(0, 0.5) added to each pixel, clamped to [0, 1].",
        "masking": "The denoising-autoencoder tutorial's setting: 30% of the pixels set to 0.",
        "gaussian": "Gaussian noise with sigma 0.3, clamped to [0, 1].",
        "salt-and-pepper": "20% of the pixels set to 0 or 1.",
    }

    def check(self) -> None:
        super().check()
        check_corruption(self.corruption, self.noise_level)


class Model(ae.Model):
    """The autoencoder of ae.py, trained to undo the configured corruption."""

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return corrupt(x, self.config.corruption, self.config.noise_level)
