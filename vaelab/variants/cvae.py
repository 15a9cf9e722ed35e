"""Conditional VAE [cvae]: the label, one-hot, is appended to the encoder's input and to the decoder's z.

q(z|x, y) and p(x|z, y): the label carries the digit's identity, so z is free to keep its style. Everything
else (heads, decoders, ELBO, importance weights) is the VAE's; this module only supplies the conditioning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab.nn import one_hot
from vaelab.variants import vae


@dataclass
class Config(vae.Config):
    PRESETS = vae.Config.PRESETS
    PRESET_NOTES = {**vae.Config.PRESET_NOTES,
                    "default": "The lecture's conditional VAE: the VAE's 2-D latent and layers, the label one-hot "
                               "into encoder and decoder, 50 epochs; each row of the digit x style grid is its digit "
                               "(about 97% judged so by a classifier)."}


class Model(vae.Model):
    """VAE whose encoder sees [x, onehot(y)] and whose decoder sees [z, onehot(y)]."""

    uses_labels = True

    @property
    def condition_dim(self) -> int:
        return self.n_classes

    def labels(self, y: torch.Tensor | int | None, n: int) -> torch.Tensor:
        """Labels as an int64 tensor (n,) on the model's device; an int is repeated n times."""
        if y is None:
            raise ValueError("y: the conditional VAE needs labels (an int digit or a (B,) tensor of class indices)")
        if isinstance(y, bool) or not isinstance(y, int | torch.Tensor):
            raise ValueError(f"y: expected an int or a tensor of class indices (got {type(y).__name__})")
        y = torch.full((n,), y, dtype=torch.long) if isinstance(y, int) else y.long().reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"y: expected {n} labels, got {y.shape[0]}")
        if n and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(f"y: labels must be in [0, {self.n_classes - 1}] (got {y.min().item()}..{y.max().item()})")
        return y.to(self.device)

    def condition(self, inputs: torch.Tensor, y: torch.Tensor | int | None) -> torch.Tensor:
        """[inputs, onehot(y)].   inputs: (..., B, n), y: (B,) or int -> (..., B, n + n_classes)"""
        codes = one_hot(self.labels(y, inputs.shape[-2]), self.n_classes, dtype=inputs.dtype)  # (B, C)
        return torch.cat([inputs, codes.expand(*inputs.shape[:-1], self.n_classes)], dim=-1)

    def sample(self, n: int, y: torch.Tensor | int | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """n images (n, D) of the given digit(s): y an int, a (n,) tensor, or None for 0..n_classes-1 cycled."""
        z = self.prior_sample(n, generator, temperature)  # (n, d)
        if y is None:
            y = torch.arange(n) % self.n_classes
        return self.decode(z, y)
