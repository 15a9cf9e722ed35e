"""A memory budget checked before anything is allocated: what training a config would need, estimated on the meta
device (no memory), against a budget sized for a laptop.

    estimate = check_budget("vae", config, input_dim=784)   # ConfigError naming the fields when over the budget

The estimate counts the parameters and buffers (float32), their gradients and Adam's two moments (4 copies of the
parameters in all), and the activations of one training batch: batch_size x the widths of every layer's output,
times 3 (the forward value, what backward keeps, its gradient), times the latent samples per image where a variant
draws several. The budget is ``VAELAB_MEMORY_BUDGET_MB`` megabytes (default 2048).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from vaelab.config import BaseConfig, ConfigError
from vaelab.variants import build_model

ENV_VAR = "VAELAB_MEMORY_BUDGET_MB"
DEFAULT_BUDGET_MB = 2048
FLOAT_BYTES = 4
TRAINING_COPIES = 4  # the parameters, their gradients, Adam's first and second moments
ACTIVATION_COPIES = 3  # a layer's output, what backward keeps of it, its gradient
MB = 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int  # parameters and buffers (numbers)
    parameter_bytes: int  # with gradients and optimizer moments
    activation_bytes: int  # one training batch

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.activation_bytes

    def describe(self) -> str:
        return (f"about {self.total_bytes / MB:,.0f} MB ({self.parameters:,} parameters: "
                f"{self.parameter_bytes / MB:,.0f} MB with gradients and Adam's moments; one batch's activations: "
                f"{self.activation_bytes / MB:,.0f} MB)")


def budget_mb() -> float:
    """The budget in MB: ``$VAELAB_MEMORY_BUDGET_MB`` when set (a number > 0), else DEFAULT_BUDGET_MB."""
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return float(DEFAULT_BUDGET_MB)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(ENV_VAR, f"must be a number of megabytes > 0 (got {text!r})")
    return value


def estimate(variant: str, config: BaseConfig, input_dim: int, n_classes: int = 10) -> MemoryEstimate:
    """What training ``config`` on images of ``input_dim`` pixels needs, from the model built on the meta device."""
    with torch.device("meta"):
        model = build_model(variant, config, input_dim, n_classes)
    tensors = [*model.parameters(), *model.buffers()]
    count = sum(t.numel() for t in tensors)
    widths = sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear))  # per example, all layers
    samples = max(1, int(getattr(config, "n_samples", 1)))
    activations = config.batch_size * (widths + input_dim) * samples * ACTIVATION_COPIES * FLOAT_BYTES
    return MemoryEstimate(count, count * TRAINING_COPIES * FLOAT_BYTES, activations)


def check_budget(variant: str, config: BaseConfig, input_dim: int, n_classes: int = 10,
                 budget: float | None = None) -> MemoryEstimate:
    """The estimate, or ConfigError naming the fields that set the size when it is over the budget (MB)."""
    if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
        raise ConfigError("input_dim", f"must be a whole number >= 1 (got {input_dim!r})")
    limit = budget_mb() if budget is None else budget
    found = estimate(variant, config, input_dim, n_classes)
    if found.total_bytes <= limit * MB:
        return found
    sizes = [name for name in ("hidden_sizes", "code_size", "latent_dim") if hasattr(config, name)]
    culprit = "batch_size" if found.activation_bytes > found.parameter_bytes else sizes[0]
    fields = ", ".join([*sizes, "batch_size"])
    raise ConfigError(culprit, f"training this model needs {found.describe()}, over the memory budget of "
                               f"{limit:,.0f} MB (set by {ENV_VAR}); make {fields} smaller "
                               f"(images of {input_dim:,} pixels)")
