"""Sparse autoencoder [sparse]: a KL-Bernoulli penalty keeps each code unit's mean activation near rho.

Loss terms (per image, averaged over the batch):
    reconstruction = BCE (or squared error) of the output against x, summed over pixels
    sparsity       = beta * sum_j KL( rho || rho_hat_j ),  rho_hat_j = mean of unit j over the batch

The code is a sigmoid, so rho_hat_j lies in (0, 1). The default is one layer of 144 units (a 12x12 grid): the
encoder's first Linear weight (144, D) holds one filter per unit, which the app draws as images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab import losses
from vaelab.config import param, redefault
from vaelab.variants import ae


@dataclass
class Config(ae.Config):
    # the autoencoder's fields with the course defaults: one sigmoid layer of 144 units
    hidden_sizes: tuple[int, ...] = redefault(ae.Config, "hidden_sizes", ())
    code_size: int = redefault(ae.Config, "code_size", 144)
    code_activation: str = param("sigmoid", label="Code activation",
                                 help="Sigmoid, so each unit's mean activation rho_hat lies in (0, 1) as the "
                                      "KL-Bernoulli penalty needs.", choices=("sigmoid",))
    rho: float = param(0.05, label="rho (target mean activation)",
                       help="The mean activation each code unit should have over a batch.",
                       low=0.0, high=1.0, low_open=True, high_open=True)
    beta: float = param(3.0, label="beta (sparsity weight)",
                        help="Weight of the penalty sum_j KL(rho || rho_hat_j); 0 turns it off.", low=0.0, high=1000.0)

    PRESETS = {
        "default": {},  # 144 sigmoid units, rho 0.05, beta 3, lr 1e-3, batch 100: the course setting
        "rho-0.1": {"rho": 0.1},  # the UFLDL exercise's target activation
        "no-penalty": {"beta": 0.0},  # the same network without the penalty, to compare filters
    }


class Model(ae.Model):
    """The autoencoder of ae.py plus the sparsity penalty on its sigmoid code."""

    def penalty_terms(self, x_in: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        return {"sparsity": c.beta * losses.sparsity_penalty(h, c.rho)}  # h: (B, H) in (0, 1)

    @torch.no_grad()
    def mean_activations(self, x: torch.Tensor) -> torch.Tensor:
        """rho_hat: each code unit's mean activation over the batch x (B, D) -> (H,)."""
        return self.encode(x).mean(dim=0)
