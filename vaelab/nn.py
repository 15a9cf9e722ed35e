"""Small building blocks: activations by name and a multilayer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU, "identity": nn.Identity}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], hidden_activation: str = "relu", out_activation: str = "identity") -> nn.Sequential:
    """Linear layers between consecutive sizes; ``hidden_activation`` after each but the last layer.

    mlp([784, 400, 20]) maps (B, 784) -> (B, 400) -> (B, 20).
    """
    if len(sizes) < 2:
        raise ValueError("mlp needs at least an input and an output size")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        last = i == len(sizes) - 2
        layers.append(activation(out_activation if last else hidden_activation))
    return nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])


def one_hot(y: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Labels (B,) -> one-hot (B, n_classes)."""
    return torch.nn.functional.one_hot(y.long(), n_classes).to(dtype)
