"""The variant contract every model follows (see DESIGN.md, "The variant contract").

Inputs are flattened images x: (B, D) in [0, 1] and optional labels y: (B,) int64.
"""

from __future__ import annotations

import torch
from torch import nn

from vaelab.config import BaseConfig


class Variant(nn.Module):
    """Base class: subclasses set ``generative`` and implement loss/encode/decode (and sample)."""

    generative: bool = False
    uses_labels: bool = False  # True when encode/decode need y (conditional VAE)
    # Reported terms that are diagnostics, not losses (e.g. a gradient variance): kept in the history, left out of
    # the loss curves, which are in nats.
    diagnostic_terms: tuple[str, ...] = ()
    # State entries whose size the model takes from a stored state rather than from its config (a refitted mixture)
    resizable_state: tuple[str, ...] = ()

    def __init__(self, config: BaseConfig, input_dim: int, n_classes: int = 10):
        super().__init__()
        self.config = config
        self.input_dim = input_dim
        self.n_classes = n_classes

    def stored_state_problem(self, state: dict) -> str | None:
        """What is wrong with a stored state's ``resizable_state`` entries (their sizes come from the file, so a
        variant that has them bounds them here, before anything is allocated), or None."""
        return None

    # -- the contract -------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Named per-example-averaged scalar terms plus ``total`` (the value reported and minimised)."""
        raise NotImplementedError

    def training_objective(self, x: torch.Tensor, y: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar to backpropagate, terms to report). Equal to terms['total'] unless the variant needs a
        surrogate (the score-function estimator does)."""
        terms = self.loss(x, y)
        return terms["total"], terms

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The code: (B, D) -> (B, code_dim). For a VAE, the posterior mean."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel means in [0, 1]: (B, code_dim) -> (B, D)."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x, y), y)

    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """n generated images (n, D) in [0, 1]; only for generative variants."""
        raise NotImplementedError(f"{type(self).__name__} is not generative")

    def prepare(self, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        """Hook the trainer calls once, before the first step, with the training images (N, D) as the run sees
        them and their labels (a data-dependent setting, e.g. the k-sparse encoder's mean image, goes here)."""

    def set_training_progress(self, epochs_done: float) -> None:
        """Hook the trainer calls before each step with the epochs trained so far (a schedule such as the k-sparse
        autoencoder's annealed k reads it). A model that never trained here behaves as fully trained."""

    def on_epoch_end(self, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        """Hook the trainer calls after each epoch (the AE + Gaussian mixture fits its mixture here)."""

    @property
    def code_dim(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
