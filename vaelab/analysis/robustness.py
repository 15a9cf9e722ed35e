"""What the denoising and contractive lessons measure: reconstruction error of corrupted inputs (and the
error of returning them unchanged), and how far codes move when the input moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from vaelab import losses
from vaelab.analysis.inference import ArrayLike, Labels, as_images, as_labels, evaluating
from vaelab.variants.base import Variant


def corruption_sweep(model: Variant, images: ArrayLike, kind: str, levels: Sequence[float],
                     corrupt_fn: Callable[..., torch.Tensor], labels: Labels = None, seed: int = 0) -> list[float]:
    """Mean summed squared error between the clean images and the reconstructions of their corrupted copies,
    one value per level. ``corrupt_fn(x, kind, level, generator)``; the noise draw is seeded per level, so two
    models see the same corrupted images."""
    x = as_images(model, images)
    y = as_labels(model, labels, x.shape[0])
    errors = []
    with evaluating(model):
        for level in levels:
            gen = torch.Generator(device=x.device).manual_seed(seed)
            x_noisy = corrupt_fn(x, kind, level, gen)  # (N, D)
            errors.append(float(losses.squared_error(model.reconstruct(x_noisy, y), x).mean()))
    return errors


def corruption_baseline(images: ArrayLike, kind: str, levels: Sequence[float],
                        corrupt_fn: Callable[..., torch.Tensor], seed: int = 0) -> list[float]:
    """Mean summed squared error between clean images and their corrupted copies, per level: the error of
    returning the noisy input unchanged. Draws the same noise as ``corruption_sweep`` with the same seed on the CPU."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float().cpu()
    if x.dim() != 2:
        raise ValueError(f"images: expected flattened images (N, D), got shape {tuple(x.shape)}")
    errors = []
    for level in levels:
        gen = torch.Generator().manual_seed(seed)
        errors.append(float(losses.squared_error(corrupt_fn(x, kind, level, gen), x).mean()))
    return errors


def sensitivity_curve(model: Variant, images: ArrayLike, eps_values: Sequence[float], n_directions: int = 8,
                      labels: Labels = None, seed: int = 0, per_eps: bool = False) -> np.ndarray:
    """Mean code change ||f(x + eps u) - f(x)|| over images and random unit directions u, per eps.

    With ``per_eps`` it is divided by eps (a finite-difference estimate of ||J_f(x) u||). Inputs are not
    clipped to [0, 1], so eps is exactly the perturbation's length. -> (len(eps_values),)
    """
    if n_directions < 1:
        raise ValueError(f"n_directions: must be >= 1 (got {n_directions})")
    x = as_images(model, images)  # (N, D)
    y = as_labels(model, labels, x.shape[0])
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn((n_directions, *x.shape), generator=gen).to(x.device)  # (R, N, D)
    u = u / u.norm(dim=-1, keepdim=True)
    y_rep = None if y is None else y.repeat(n_directions)
    out = []
    with evaluating(model):
        f_x = model.encode(x, y)  # (N, d)
        for eps in eps_values:
            f_moved = model.encode((x + float(eps) * u).reshape(-1, x.shape[1]), y_rep)  # (R*N, d)
            change = (f_moved.reshape(n_directions, *f_x.shape) - f_x).norm(dim=-1).mean()
            out.append(float(change) / (float(eps) if per_eps and eps else 1.0))
    return np.asarray(out)
