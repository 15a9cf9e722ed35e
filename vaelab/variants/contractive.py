"""Contractive autoencoder [contractive]: penalise the encoder's Jacobian so the code ignores small input changes.

Loss terms (per image, averaged over the batch):
    reconstruction = BCE (or squared error) of the output against x, summed over pixels
    contractive    = lam * ||J_f(x)||_F^2,  J_f = d code / d input  (H x D per image)

For the default encoder, one sigmoid layer h = sigmoid(W x + b), the norm has a closed form
(losses.contractive_penalty_sigmoid); any other encoder uses autograd (losses.jacobian_frobenius_sq, one
backward pass per code unit, so keep the code small there). Defaults: 144 sigmoid units in one layer (the
course's 12x12 grid) and lam = 3: against a reconstruction summed over the pixels, the tutorial's 0.1 barely
contracts (the `tutorial` preset keeps it).
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
    code_activation: str = redefault(ae.Config, "code_activation", "sigmoid")
    lam: float = param(3.0, label="lambda", help="Weight of the penalty ||J_f(x)||_F^2 on the encoder's "
                                                 "Jacobian; 0 gives a plain autoencoder.", low=0.0, high=1000.0)
    epochs: int = redefault(ae.Config, "epochs", 20)

    PRESETS = {
        "default": {},
        "tutorial": {"lam": 0.1},
        "no-penalty": {"lam": 0.0},
        "deep": {"hidden_sizes": (256,), "code_size": 16},
    }
    PRESET_NOTES = {
        "default": "The lesson's defaults: one sigmoid layer of 144 units (closed-form penalty), lambda = 3, 20 "
                   "epochs: the Jacobian norm ends about 8x smaller than the same net's without the penalty.",
        "tutorial": "The contractive-autoencoder tutorial's contraction level lambda = 0.1: against a reconstruction "
                    "summed over 784 pixels it shrinks the Jacobian only about 1.5x.",
        "no-penalty": "The same network as a plain autoencoder (lambda = 0), for the comparison.",
        "deep": "A two-layer encoder (256 then 16 units): the penalty by autograd, one backward pass per code unit.",
    }


class Model(ae.Model):
    """The autoencoder of ae.py plus the contractive penalty on its encoder."""

    @property
    def closed_form(self) -> bool:
        """True when the encoder is one sigmoid layer, whose Jacobian norm has a closed form."""
        return not self.config.hidden_sizes and self.config.code_activation == "sigmoid"

    def _jacobian_norm_sq(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """||J_f(x)||_F^2 per example, (B, D) -> (B,), differentiable when grad mode is on.

        h = encoder(x) when the caller has it (the closed form reuses it)."""
        if self.closed_form:
            linear = self.encoder[0]  # Linear(D, H), weight (H, D)
            return losses.contractive_penalty_sigmoid(self.encoder(x) if h is None else h, linear.weight)
        if torch.is_grad_enabled():
            return losses.jacobian_frobenius_sq(self.encoder, x, create_graph=True)
        with torch.enable_grad():  # autograd needs grad mode, also when evaluating under no_grad
            return losses.jacobian_frobenius_sq(self.encoder, x, create_graph=False).detach()

    def penalty_terms(self, x_in: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        lam = self.config.lam
        if lam == 0:  # skip the (possibly costly) Jacobian; the term stays in the report as 0
            return {"contractive": h.new_zeros(())}
        return {"contractive": lam * self._jacobian_norm_sq(x_in, h).mean()}

    @torch.no_grad()
    def jacobian_norm_sq(self, x: torch.Tensor) -> torch.Tensor:
        """||J_f(x)||_F^2 of the encoder at each row of x, no graph kept. (B, D) -> (B,)"""
        return self._jacobian_norm_sq(x)
