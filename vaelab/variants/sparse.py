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
    beta: float = param(10.0, label="beta (sparsity weight)",
                        help="Weight of the penalty sum_j KL(rho || rho_hat_j); 0 turns it off. Against a "
                             "reconstruction summed over the 784 pixels, 10 brings the units to rho within the "
                             "default epochs.", low=0.0, high=1000.0)
    epochs: int = redefault(ae.Config, "epochs", 50)
    weight_decay: float = redefault(ae.Config, "weight_decay", 1e-3)

    PRESETS = {
        "default": {},
        "lecture-code": {"reconstruction": "mse-mean", "beta": 3.0, "weight_decay": 0.0, "epochs": 5},
        "rho-0.1": {"rho": 0.1},
        "no-penalty": {"beta": 0.0},
    }
    PRESET_NOTES = {
        "default": "The lecture's figure \"144 hidden units, sparse activation, visualised as 12x12 images\": 144 "
                   "sigmoid units, rho = 0.05, beta = 10 against the per-image BCE, weight decay 0.001 (UFLDL's "
                   "recipe for clean filters), 50 epochs.",
        "lecture-code": "The lecture's code as written: nn.MSELoss() (a mean over pixels) + 3 x sum_j KL(rho || "
                        "rho_hat_j), 5 epochs. Against a per-pixel mean the penalty weighs 784 times more: the "
                        "units reach rho at once, but the filters barely leave their random start.",
        "rho-0.1": "The UFLDL exercise's target activation rho = 0.1.",
        "no-penalty": "The same network without the penalty (beta = 0): compare the filters and the histogram.",
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
