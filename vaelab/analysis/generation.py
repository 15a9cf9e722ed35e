"""Walking the latent space of a generative model: the 2-D manifold, interpolation, traversal, prior samples,
the conditional VAE's label x style grid, the AE + Gaussian mixture's samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vaelab.analysis.image_grids import image_grid
from vaelab.analysis.inference import ArrayLike, Labels, as_images, decode_latents, encode_dataset, evaluating, to_numpy
from vaelab.variants.base import Variant


def manifold_latents(n: int = 15, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """The n x n grid of 2-D codes z = Phi^{-1}(p), p evenly spaced in [low, high]. -> (n*n, 2) float32.

    Row-major as drawn: row r has z_2 = Phi^{-1}(p[n-1-r]) (largest at the top), column c has z_1 = Phi^{-1}(p[c]).
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1 (got {n})")
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"low, high: need 0 < low <= high < 1 (got {low:g}, {high:g})")
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(low, high, n, dtype=torch.float64))  # (n,)
    z1 = q.repeat(n)  # column index varies fastest
    z2 = q.flip(0).repeat_interleave(n)
    return torch.stack([z1, z2], dim=1).float().numpy()  # (n*n, 2)


def manifold_grid(model: Variant, n: int = 15, image_shape: Sequence[int] = (28, 28), y: int | None = None,
                  latents: ArrayLike | None = None) -> np.ndarray:
    """Decode the n x n grid of ``manifold_latents(n)`` (or given ``latents`` (n*n, 2)) -> (n*H, n*W)."""
    if model.code_dim != 2:
        raise ValueError(f"model: the manifold grid needs a 2-D latent (code_dim = 2), got code_dim = {model.code_dim}")
    z = manifold_latents(n) if latents is None else to_numpy(latents)
    if z.shape != (n * n, 2):
        raise ValueError(f"latents: expected shape ({n * n}, 2), got {z.shape}")
    images = decode_latents(model, z, y)  # (n*n, D)
    return image_grid(images, image_shape, ncols=n, sep=0)


def interpolate(model: Variant, x_a: ArrayLike, x_b: ArrayLike, steps: int = 10, y: int | None = None
                ) -> np.ndarray:
    """Decodings of (1-t) z_a + t z_b for t = 0..1 in ``steps`` steps, z = encode(x). -> (steps, D)."""
    if steps < 2:
        raise ValueError(f"steps: must be >= 2 (got {steps})")
    x = torch.cat([as_images(model, x_a, "x_a"), as_images(model, x_b, "x_b")])  # (2, D)
    if x.shape[0] != 2:
        raise ValueError("x_a, x_b: expected one image each")
    codes = torch.as_tensor(encode_dataset(model, x, y))  # (2, d)
    t = torch.linspace(0.0, 1.0, steps).unsqueeze(1)  # (steps, 1)
    z = (1.0 - t) * codes[0] + t * codes[1]  # (steps, d)
    return decode_latents(model, z, y)


def latent_traversal(model: Variant, x: ArrayLike, dim: int, values: Sequence[float], y: int | None = None
                     ) -> np.ndarray:
    """Encode one image, set code unit ``dim`` to each value in turn, decode. -> (len(values), D)."""
    if not 0 <= dim < model.code_dim:
        raise ValueError(f"dim: must be in [0, {model.code_dim - 1}] (got {dim})")
    z0 = torch.as_tensor(encode_dataset(model, as_images(model, x, "x")[:1], y))  # (1, d)
    z = z0.repeat(len(values), 1)  # (V, d)
    z[:, dim] = torch.as_tensor(list(values), dtype=z.dtype)
    return decode_latents(model, z, y)


def _prior_draws(n: int, code_dim: int, temperature: float, seed: int) -> torch.Tensor:
    """temperature * eps, eps ~ N(0, I) from a generator seeded with ``seed``. -> (n, code_dim)"""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: number of samples must be a whole number >= 1 (got {n!r})")
    if not temperature >= 0:
        raise ValueError(f"temperature: must be >= 0 (got {temperature!r})")
    eps = torch.randn(int(n), code_dim, generator=torch.Generator().manual_seed(int(seed)))  # (n, d)
    return float(temperature) * eps


def prior_samples(model: Variant, n: int, temperature: float = 1.0, seed: int = 0, y: Labels = None) -> np.ndarray:
    """Decode n draws z = temperature * eps, eps ~ N(0, I). -> (n, D) pixel means.

    The same seed gives the same eps at every temperature, so a temperature slider rescales one set of draws.
    ``y`` (an int or (n,) labels) is only needed by label-conditioned models.
    """
    return decode_latents(model, _prior_draws(n, model.code_dim, temperature, seed), y)


def digit_style_grid(model: Variant, n_styles: int = 8, temperature: float = 1.0, seed: int = 0,
                     labels: Sequence[int] | None = None) -> np.ndarray:
    """A label x style grid from a conditional model: row k decodes the same n_styles draws z_j with label k.

    labels default to 0..n_classes-1. -> (len(labels) * n_styles, D), row-major: entry k * n_styles + j is
    decode(z_j, labels[k]); tile it with ``image_grid(..., ncols=n_styles)``.
    """
    if not getattr(model, "uses_labels", False):
        raise ValueError(f"model: {type(model).__name__} is not conditioned on labels; the grid needs a CVAE")
    labels = list(range(model.n_classes)) if labels is None else [int(k) for k in labels]
    if not labels:
        raise ValueError("labels: need at least one label")
    z = _prior_draws(n_styles, model.code_dim, temperature, seed)  # (S, d)
    z_grid = z.repeat(len(labels), 1)  # (K*S, d): the styles repeat along each row
    y_grid = torch.tensor(labels, dtype=torch.long).repeat_interleave(n_styles)  # (K*S,): one label per row
    return decode_latents(model, z_grid, y_grid)


def mixture_vs_normal_samples(model: Variant, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Codes drawn from the model's fitted mixture and from N(0, I), and their decodings (AE + Gaussian mixture).

    -> {"mixture_codes": (n, d), "mixture_images": (n, D), "normal_codes": (n, d), "normal_images": (n, D)};
    each draw uses its own generator seeded with ``seed``, so ``model.sample`` / ``model.sample_standard_normal``
    with such a generator give the same images.
    """
    if not hasattr(model, "sample_codes") or not hasattr(model, "standard_normal_codes"):
        raise ValueError(f"model: {type(model).__name__} has no code-space mixture (ae-gmm models only)")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: number of samples must be a whole number >= 1 (got {n!r})")
    with evaluating(model):
        z_mix, _ = model.sample_codes(int(n), generator=torch.Generator().manual_seed(int(seed)))  # (n, d)
        z_normal = model.standard_normal_codes(int(n), generator=torch.Generator().manual_seed(int(seed)))  # (n, d)
        out = {"mixture_codes": z_mix, "mixture_images": model.decode(z_mix),
               "normal_codes": z_normal, "normal_images": model.decode(z_normal)}
        return {name: value.float().cpu().numpy() for name, value in out.items()}
