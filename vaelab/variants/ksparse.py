"""k-sparse autoencoder [ksparse]: keep the k largest code activations of each image, zero the rest.

No penalty term: sparsity is imposed by the code transform itself. The gradient flows only through the k kept
units. The default is one linear layer of 144 units (a 12x12 filter grid) with k = 44; k = 10 is the other
classic setting (Makhzani & Frey, 2013).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab.config import ConfigError, param, redefault
from vaelab.variants import ae


def keep_top_k(h: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the k largest values of each row. h: (B, H) -> (B, H).

    The result is h times a 0/1 mask, so the gradient reaches the kept units only.
    """
    top = h.topk(k, dim=1).indices  # (B, k)
    mask = torch.zeros_like(h).scatter_(1, top, 1.0)  # (B, H), 1 at the kept units
    return h * mask


def check_k(k: int, code_size: int) -> None:
    """Raise ConfigError naming ``k`` unless 1 <= k <= code_size."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= code_size:
        raise ConfigError("k", f"must be a whole number in [1, {code_size}] (the code size) (got {k!r})")


@dataclass
class Config(ae.Config):
    # the autoencoder's fields with the course defaults: one linear layer of 144 units
    hidden_sizes: tuple[int, ...] = redefault(ae.Config, "hidden_sizes", ())
    code_size: int = redefault(ae.Config, "code_size", 144)
    # range [1, code_size] depends on code_size, so it is checked in check(), not in the field metadata
    k: int = param(44, label="k (active units)", help="Code units kept per image (the k largest); "
                                                      "must be in [1, code size].")

    PRESETS = {
        "default": {},  # 144 units, k = 44
        "k10": {"k": 10},
    }

    def check(self) -> None:
        super().check()
        check_k(self.k, self.code_size)


class Model(ae.Model):
    """The autoencoder of ae.py whose code keeps only the k largest units."""

    def code_transform(self, h: torch.Tensor) -> torch.Tensor:
        return keep_top_k(h, self.config.k)

    def encode_topk(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """The code with the k largest units kept (default: the configured k). (B, D) -> (B, code_size)"""
        k = self.config.k if k is None else k
        check_k(k, self.config.code_size)
        return keep_top_k(self.encoder(x), k)
