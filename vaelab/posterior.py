"""The true posterior beside q(z|x) for small latents: exact log p(x), the posterior on a grid, and the ELBO gap.

    log p(x) = ELBO(x) + KL(q(z|x) || p(z|x))

For a Gaussian latent of 1 or 2 dimensions, p(x) = integral of p(x|z) N(z; 0, I) dz is computed by the midpoint
rule on a grid that adapts to each image: a coarse scan of a wide box finds where the joint p(x, z) lives, a
second grid zooms into it, and the grid over that region is refined (points per axis doubled) until log p(x) moves
by less than ``TOLERANCE`` nats; the last change is reported as the quadrature error. The ELBO, the integral of
q(z) [log p(x, z) - log q(z)], is computed the same way over q's own +-6 standard deviations (no sampling), and
the gap is log p(x) - ELBO.
For binary latents (at most 16 bits) the sums over all 2^d codes are exact (``binary_gap``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vaelab import losses

MAX_GAUSSIAN_DIM = 2
TOLERANCE = 0.01  # nats: refine until log p(x) moves less than this
START_POINTS = 16  # grid points per axis of the first fine grid
MAX_POINTS = {1: 65536, 2: 384}  # per axis: the most a refinement may reach
SCAN_POINTS = {1: 4096, 2: 48}  # the coarse scan that finds the joint's mass
SCAN_RADIUS = 6.0  # the scan covers [-r, r]^d (and q's +-8 sd): where a posterior under N(0, I) can be
KEEP_LOG_RATIO = 30.0  # the fine grid covers where log p(x, z) > max - 30 (e^-30 of the peak)
Q_SDS = 6.0  # and q's +-6 standard deviations, where the ELBO's integrand lives
CHUNK = 16384  # grid points decoded at once

LogLikelihood = Callable[[torch.Tensor], torch.Tensor]  # z (G, d) -> log p(x|z) (G,) for one image


@dataclass
class GridPosterior:
    """The result for one image: the grid, log p(z|x) on it, and the figures."""

    axes: list[torch.Tensor]  # per latent dimension, the picture grid's cell centres (m,)
    log_posterior: torch.Tensor  # log p(z|x) at the picture grid, shape (m,) or (m, m) (axis 0 = z1)
    log_px: float  # exact log p(x), nats
    quadrature_error: float  # |change of log p(x)| at the last refinement
    elbo: float  # E_q[log p(x, z) - log q(z)] on the grid
    points: int  # points per axis of the evidence grid

    @property
    def gap(self) -> float:
        """KL(q(z|x) || p(z|x)) = log p(x) - ELBO."""
        return self.log_px - self.elbo


# ---------------------------------------------------------------- grids
def _grid(lows: list[float], highs: list[float], n: int) -> tuple[list[torch.Tensor], torch.Tensor, float]:
    """Cell centres of an n^d midpoint grid over the box: (axes, points (n^d, d), log cell volume)."""
    axes = [lo + (hi - lo) * (torch.arange(n, dtype=torch.float64) + 0.5) / n for lo, hi in zip(lows, highs,
                                                                                                strict=True)]
    points = torch.cartesian_prod(*axes) if len(axes) > 1 else axes[0].unsqueeze(1)  # (n^d, d)
    log_cell = sum(math.log((hi - lo) / n) for lo, hi in zip(lows, highs, strict=True))
    return axes, points, log_cell


def _log_joint(log_likelihood: LogLikelihood, points: torch.Tensor) -> torch.Tensor:
    """log p(x|z) + log N(z; 0, I) at every point, decoded in chunks. (G, d) -> (G,) float64"""
    parts = [log_likelihood(points[i:i + CHUNK]).double() + losses.standard_normal_log_density(points[i:i + CHUNK])
             for i in range(0, len(points), CHUNK)]
    return torch.cat(parts)


def _box(points: torch.Tensor, log_joint: torch.Tensor, spacing: list[float]) -> tuple[list[float], list[float]]:
    """The box where the joint keeps mass: within KEEP_LOG_RATIO of its peak, one grid cell wider each side."""
    kept = points[log_joint > log_joint.max() - KEEP_LOG_RATIO]  # (m, d)
    if len(kept) == 0:  # nan everywhere: a model whose decoder gives no finite likelihood
        raise ValueError("the joint density p(x, z) is not finite anywhere on the grid (a broken or diverged model)")
    pad = torch.tensor(spacing, dtype=torch.float64)
    return (kept.min(dim=0).values - pad).tolist(), (kept.max(dim=0).values + pad).tolist()


def _spacing(lows: list[float], highs: list[float], n: int) -> list[float]:
    return [(hi - lo) / n for lo, hi in zip(lows, highs, strict=True)]


def _refined_integral(log_integrand: Callable[[torch.Tensor], torch.Tensor], lows: list[float], highs: list[float],
                      tolerance: float, d: int) -> tuple[float, float, int]:
    """log of the integral of exp(log_integrand) over the box by the midpoint rule, points per axis doubled until the
    result moves less than ``tolerance``: (log integral, last change, points per axis)."""
    n, previous = START_POINTS, None
    while True:
        _, points, log_cell = _grid(lows, highs, n)
        value = float(torch.logsumexp(log_integrand(points), dim=0)) + log_cell
        if previous is not None and (abs(value - previous) < tolerance or 2 * n > MAX_POINTS[d]):
            return value, abs(value - previous), n
        previous, n = value, 2 * n


def grid_posterior(log_likelihood: LogLikelihood, mu: torch.Tensor, logvar: torch.Tensor,
                   tolerance: float = TOLERANCE, display_points: int = 48) -> GridPosterior:
    """Exact log p(x), p(z|x) on a grid and the ELBO gap of q = N(mu, diag(exp(logvar))), for one image.

    ``log_likelihood(z)`` gives log p(x|z) for grid points z (G, d); mu, logvar: (d,) with d in {1, 2}. The evidence
    is integrated over the posterior's own box (found by a scan, then zoomed in once more), the ELBO over q's
    +-6 sd; the returned log p(z|x) covers both boxes at ``display_points`` per axis (for a picture)."""
    mu, logvar = mu.detach().double().reshape(-1), logvar.detach().double().reshape(-1)
    d = mu.numel()
    if not 1 <= d <= MAX_GAUSSIAN_DIM:
        raise ValueError(f"latent_dim: the grid needs 1 or 2 latent dimensions (got {d})")
    std = (0.5 * logvar).exp()

    def log_joint(points: torch.Tensor) -> torch.Tensor:
        return _log_joint(log_likelihood, points)

    radius = [max(SCAN_RADIUS, abs(float(m)) + 8 * float(s)) for m, s in zip(mu, std, strict=True)]
    lows, highs = [-r for r in radius], radius
    for n in (SCAN_POINTS[d], START_POINTS):  # scan the wide box, then zoom into the mass it found
        _, points, _ = _grid(lows, highs, n)
        lows, highs = _box(points, log_joint(points), _spacing(lows, highs, n))
    log_px, change, n = _refined_integral(log_joint, lows, highs, tolerance, d)

    def log_q(points: torch.Tensor) -> torch.Tensor:
        return losses.diag_gaussian_log_density(points, mu.expand_as(points), logvar.expand_as(points))

    q_lows, q_highs = (mu - Q_SDS * std).tolist(), (mu + Q_SDS * std).tolist()
    m, previous = START_POINTS, None
    while True:  # E_q[log p(x, z) - log q(z)] on q's box, refined like the evidence
        _, points, log_cell = _grid(q_lows, q_highs, m)
        weights = (log_q(points) + log_cell).exp()  # q's probability of each cell
        elbo = float((weights * (log_joint(points) - log_q(points))).sum() / weights.sum())
        if previous is not None and (abs(elbo - previous) < tolerance or 2 * m > MAX_POINTS[d]):
            break
        previous, m = elbo, 2 * m

    view_lows = [min(a, b) for a, b in zip(lows, q_lows, strict=True)]
    view_highs = [max(a, b) for a, b in zip(highs, q_highs, strict=True)]
    axes, points, _ = _grid(view_lows, view_highs, display_points)
    log_posterior = (log_joint(points) - log_px).reshape((display_points,) * d)
    return GridPosterior(axes, log_posterior, log_px, change, elbo, n)


# ---------------------------------------------------------------- models
def can_grid(model) -> bool:
    """A Gaussian-latent VAE (vae, cvae) whose latent has 1 or 2 dimensions."""
    return hasattr(model, "posterior") and hasattr(model, "decoder_output") and \
        1 <= getattr(model.config, "latent_dim", 0) <= MAX_GAUSSIAN_DIM


def model_log_likelihood(model, x: torch.Tensor, y: int | None = None) -> LogLikelihood:
    """log p(x|z) of one image x (D,) under the model's decoder (Bernoulli or Gaussian), as a function of z (G, d).
    A conditional model decodes with the image's label y."""
    x_row = x.reshape(1, -1).to(model.device)

    labels = None if y is None else torch.tensor([int(y)], device=model.device)  # one label for the one image

    def log_likelihood(z: torch.Tensor) -> torch.Tensor:
        z = z.to(device=model.device, dtype=model.mean_head.weight.dtype)  # (G, d)
        return model.log_likelihood(z.unsqueeze(1), x_row, labels).squeeze(1).cpu()  # (G, 1, d) -> (G,)

    return log_likelihood


@torch.no_grad()
def model_posterior(model, x: torch.Tensor, y: int | None = None, tolerance: float = TOLERANCE) -> GridPosterior:
    """``grid_posterior`` of a Gaussian-latent VAE for one image x (D,) (and its label, for a conditional VAE)."""
    if not can_grid(model):
        raise ValueError("model: the exact posterior on a grid needs a Gaussian latent of 1 or 2 dimensions")
    model.eval()
    labels = None if y is None else torch.tensor([int(y)], device=model.device)
    mu, logvar = model.posterior(x.reshape(1, -1).to(model.device), labels)  # (1, d) each
    return grid_posterior(model_log_likelihood(model, x, y), mu[0].cpu(), logvar[0].cpu(), tolerance)


@torch.no_grad()
def binary_gap(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log p(x), ELBO, gap = KL(q || p(z|x))) per image of a binary-latent VAE, each exact by enumerating all
    2^d codes. x: (B, D) -> three (B,)"""
    model.eval()
    log_px, elbo = model.exact_log_likelihood(x).double(), model.exact_elbo(x).double()
    return log_px, elbo, log_px - elbo


# ---------------------------------------------------------------- a summary over test images
BOUND_KS = (1, 10, 100, 1000)


@dataclass
class ExactSummary:
    """Means over the images: exact log p(x), ELBO, gap, and the importance-weighted bound at each K."""

    images: int
    log_px: float
    elbo: float
    gap: float
    quadrature_error: float | None  # the largest over the images (None: exact by enumeration)
    method: str  # "grid n x n" or "enumeration of 2^d codes"
    bounds: dict[int, float]  # K -> mean log (1/K) sum_k w_k


def can_summarise(model) -> bool:
    return can_grid(model) or hasattr(model, "exact_elbo") and getattr(model.config, "latent_dim", 99) <= 16


@torch.no_grad()
def exact_summary(model, x: torch.Tensor, y: torch.Tensor | None = None, ks: tuple[int, ...] = BOUND_KS,
                  seed: int = 0) -> ExactSummary:
    """Exact log p(x), ELBO and gap averaged over images x (N, D) (labels y for a conditional VAE), beside the
    importance-weighted bound at each K (a fixed seed)."""
    from vaelab.evaluate import importance_sampled_log_likelihood

    model.eval()
    if can_grid(model):
        results = [model_posterior(model, x[i], None if y is None else int(y[i])) for i in range(len(x))]
        log_px = torch.tensor([r.log_px for r in results], dtype=torch.float64)
        elbo = torch.tensor([r.elbo for r in results], dtype=torch.float64)
        error = max(r.quadrature_error for r in results)
        method = f"grid up to {max(r.points for r in results)} x {max(r.points for r in results)}" \
            if model.config.latent_dim == 2 else f"grid up to {max(r.points for r in results)} points"
    elif can_summarise(model):
        log_px, elbo, _ = binary_gap(model, x.to(model.device))
        log_px, elbo, error = log_px.cpu(), elbo.cpu(), None
        method = f"enumeration of 2^{model.config.latent_dim} codes"
    else:
        raise ValueError("model: exact figures need a Gaussian latent of 1 or 2 dimensions or at most 16 bits")
    bounds = {k: float(importance_sampled_log_likelihood(model, x.to(model.device), k, y=y,
                                                         generator=torch.Generator().manual_seed(seed + k)).mean())
              for k in ks}
    return ExactSummary(len(x), float(log_px.mean()), float(elbo.mean()), float((log_px - elbo).mean()), error,
                        method, bounds)
