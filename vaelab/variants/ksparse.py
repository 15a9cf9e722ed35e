"""k-sparse autoencoder [ksparse]: keep the k largest code activations of each image, zero the rest.

No penalty term: sparsity is imposed by the code transform itself. The gradient flows only through the k kept
units. The default is one linear layer of 144 units (a 12x12 filter grid) with k = 44; k = 10 is the other
classic setting (Makhzani & Frey, 2013).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

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
    center_input: bool = param(
        True, label="Centre the input",
        help="Subtract the training set's mean image before the encoder, h = W (x - mean) + b. Without it, the units "
             "that happen to align with the average digit win every top-k from the first steps and the others never "
             "train (about half the units die on MNIST).")
    anneal_epochs: float = param(
        0.0, label="k annealing (epochs)",
        help="k starts at the code size and falls linearly to k over this many epochs, then stays (Makhzani & "
             "Frey's schedule: every unit gets gradient early, so none dies); 0 keeps k fixed from the start.",
        low=0.0, high=10000.0)

    epochs: int = redefault(ae.Config, "epochs", 20)

    PRESETS = {
        "default": {},
        "lecture-44-sparse": {},
        "lecture-10-sparse": {"k": 10, "anneal_epochs": 10.0},
    }
    PRESET_NOTES = {
        "default": "The lesson's defaults: 144 units, k = 44, the input centred on the training mean image so "
                   "that no unit dies, 20 epochs.",
        "lecture-44-sparse": "The lecture's figure \"144 hidden units, 44-sparse activation, visualised as 12x12 "
                             "images\".",
        "lecture-10-sparse": "The lecture's figure \"144 hidden units, 10-sparse activation\": k = 10, reached by "
                             "annealing k from 144 over the first 10 epochs (Makhzani & Frey), so every unit trains.",
    }

    def check(self) -> None:
        super().check()
        check_k(self.k, self.code_size)


def annealed_k(k: int, code_size: int, anneal_epochs: float, epochs_done: float) -> int:
    """k after ``epochs_done`` epochs: code_size at 0, falling linearly to k at ``anneal_epochs``, then k."""
    if anneal_epochs <= 0 or epochs_done >= anneal_epochs:
        return k
    return round(code_size - (code_size - k) * epochs_done / anneal_epochs)


class CentredEncoder(nn.Sequential):
    """The encoder's layers applied to x - input_mean (a buffer: zeros until ``prepare`` stores the training mean).
    (B, D) -> (B, code)"""

    def __init__(self, layers: nn.Sequential, input_dim: int):
        super().__init__(*layers)
        self.register_buffer("input_mean", torch.zeros(input_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x - self.input_mean)


class Model(ae.Model):
    """The autoencoder of ae.py whose code keeps only the k largest units (during annealing, more)."""

    def __init__(self, config: Config, input_dim: int, n_classes: int = 10):
        super().__init__(config, input_dim, n_classes)
        self.encoder = CentredEncoder(self.encoder, input_dim)  # same parameter names: encoder.0.weight, ...
        self.epochs_done = math.inf  # not trained here (loaded): the schedule is over, k is the configured k

    def prepare(self, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        if self.config.center_input:
            self.encoder.input_mean.copy_(train_x.mean(dim=0))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """A checkpoint saved before the encoder was centred has no input_mean: it was trained on x itself."""
        key = prefix + "encoder.input_mean"
        if key not in state_dict:
            state_dict[key] = torch.zeros_like(self.encoder.input_mean)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def set_training_progress(self, epochs_done: float) -> None:
        self.epochs_done = epochs_done

    @property
    def current_k(self) -> int:
        """The k the code keeps now (the configured k once annealing is over)."""
        c = self.config
        return annealed_k(c.k, c.code_size, c.anneal_epochs, self.epochs_done)

    def code_transform(self, h: torch.Tensor) -> torch.Tensor:
        return keep_top_k(h, self.current_k)

    def encode_topk(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """The code with the k largest units kept (default: the configured k). (B, D) -> (B, code_size)"""
        k = self.config.k if k is None else k
        check_k(k, self.config.code_size)
        return keep_top_k(self.encoder(x), k)
