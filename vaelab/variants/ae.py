"""Autoencoder [ae]: an MLP encoder to a code, an MLP decoder back to pixel means.

Also the base for the other deterministic variants (denoising, sparse, k-sparse, contractive, ae-gmm):
they override ``corrupt`` (what the encoder sees), ``code_transform`` (e.g. top-k) and
``penalty_terms`` (extra named loss terms), and keep everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab import losses
from vaelab.config import BaseConfig, param, redefault
from vaelab.nn import mlp
from vaelab.variants.base import Variant

RECONSTRUCTIONS = ("bce", "mse", "mse-mean")


@dataclass
class Config(BaseConfig):
    hidden_sizes: tuple[int, ...] = param(
        (400,), label="Hidden layers", help="Sizes of the encoder's hidden layers (decoder mirrors them); "
                                            "empty for a single layer.", low=1, high=4096)
    code_size: int = param(32, label="Code size", help="Units in the bottleneck code.", low=1, high=4096)
    activation: str = param("relu", label="Hidden activation", help="Non-linearity of the hidden layers.",
                            choices=("relu", "tanh", "sigmoid", "elu"))
    code_activation: str = param("identity", label="Code activation",
                                 help="Non-linearity on the code units.",
                                 choices=("identity", "sigmoid", "relu", "tanh"))
    reconstruction: str = param("bce", label="Reconstruction loss",
                                help="bce: Bernoulli cross-entropy summed over pixels; mse: squared error summed "
                                     "over pixels; mse-mean: squared error averaged over pixels (PyTorch's "
                                     "nn.MSELoss(), as in the course's sparse autoencoder: a penalty then weighs "
                                     "D = 784 times more against it than against a sum).",
                                choices=RECONSTRUCTIONS)

    epochs: int = redefault(BaseConfig, "epochs", 30)

    PRESETS = {
        "default": {},
        "2d-code": {"hidden_sizes": (512, 256), "code_size": 2, "lr": 1e-3},
        "shallow-144": {"hidden_sizes": (), "code_size": 144, "code_activation": "sigmoid"},
    }
    PRESET_NOTES = {
        "default": "The lesson's defaults: 784-400-32 with a linear code, 30 epochs; the 32-unit code keeps about 85% "
                   "of the pixel variance (python -m vaelab lessons).",
        "2d-code": "A 2-unit code you can plot: digits form clusters with gaps between them.",
        "shallow-144": "One sigmoid layer of 144 units (a 12x12 filter grid), the sparse page's net without a penalty.",
    }


class Model(Variant):
    """MLP autoencoder. Decoder produces logits; ``decode`` returns sigmoid(logits) in [0, 1]."""

    def __init__(self, config: Config, input_dim: int, n_classes: int = 10):
        super().__init__(config, input_dim, n_classes)
        c = config
        enc_sizes = [input_dim, *c.hidden_sizes, c.code_size]
        dec_sizes = [c.code_size, *reversed(c.hidden_sizes), input_dim]
        self.encoder = mlp(enc_sizes, c.activation, c.code_activation)  # (B, D) -> (B, code)
        self.decoder = mlp(dec_sizes, c.activation, "identity")  # (B, code) -> (B, D) logits

    @property
    def code_dim(self) -> int:
        return self.config.code_size

    # -- hooks for subclasses -------------------------------------------------------------------------
    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder sees inside ``loss`` (identity here; noise for the denoising variant).

        ``reconstruct`` and ``encode`` never corrupt: they show what the model does with the given input."""
        return x

    def code_transform(self, h: torch.Tensor) -> torch.Tensor:
        """Applied to the encoder output to give the code (identity here; top-k for k-sparse)."""
        return h

    def penalty_terms(self, x_in: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra named scalar terms added to the total (already weighted)."""
        return {}

    # -- the contract ---------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.code_transform(self.encoder(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def reconstruction_error(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example reconstruction loss (B,) of decoder logits against the clean target x."""
        if self.config.reconstruction == "bce":
            return -losses.bernoulli_log_likelihood(logits, x)
        error = losses.squared_error(torch.sigmoid(logits), x)  # (B,) summed over the D pixels
        return error / x.shape[-1] if self.config.reconstruction == "mse-mean" else error

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x_in = self.corrupt(x)  # (B, D); the target stays the clean x
        h = self.encoder(x_in)  # (B, code) before any code transform
        z = self.code_transform(h)
        terms = {"reconstruction": self.reconstruction_error(self.decode_logits(z), x).mean()}
        terms.update(self.penalty_terms(x_in, h))
        terms["total"] = sum(terms.values())
        return terms
