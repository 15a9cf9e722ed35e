"""The maths, as pure functions. Every "per example" result has shape (B,) and is summed over units/pixels.

Conventions: x is a batch of flattened images (B, D) in [0, 1]; log-likelihoods are in nats;
the reconstruction *loss* of a model is the negative log-likelihood (or summed squared error).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------- KL divergences
def kl_diag_gaussian_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) per example.

    = 1/2 * sum_j ( mu_j^2 + sigma_j^2 - 1 - log sigma_j^2 ).   mu, logvar: (..., d) -> (...)
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def kl_bernoulli(p: torch.Tensor | float, q: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Elementwise KL( Bernoulli(p) || Bernoulli(q) ) = p log(p/q) + (1-p) log((1-p)/(1-q)).

    Uses x log x = 0 at x = 0; q is clamped to [eps, 1-eps] so a dead or saturated unit gives a large,
    finite value rather than inf.
    """
    p = torch.as_tensor(p, dtype=q.dtype, device=q.device)
    q = q.clamp(eps, 1.0 - eps)
    return torch.xlogy(p, p) - p * torch.log(q) + torch.xlogy(1.0 - p, 1.0 - p) - (1.0 - p) * torch.log1p(-q)


def kl_bernoulli_to_uniform(mu: torch.Tensor) -> torch.Tensor:
    """KL( Bernoulli(mu) || Bernoulli(1/2) ) per example = sum_j [mu log mu + (1-mu) log(1-mu) + log 2].

    mu: (B, d) -> (B,)
    """
    return (torch.xlogy(mu, mu) + torch.xlogy(1.0 - mu, 1.0 - mu) + math.log(2.0)).sum(dim=-1)


def kl_bernoulli_logits_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Same KL from logits, numerically stable for saturated units. logits: (B, d) -> (B,)

    With mu = sigmoid(l): mu log mu + (1-mu) log(1-mu) = mu * l + log(1 - mu) = mu * l - softplus(l).
    """
    mu = torch.sigmoid(logits)
    return (mu * logits - F.softplus(logits) + math.log(2.0)).sum(dim=-1)


# ---------------------------------------------------------------- log-likelihoods
def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) under independent Bernoullis, per example; x may be grey levels in [0,1].

    = -BCEWithLogits summed over pixels.   logits, x: (..., D) -> (...)
    """
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(dim=-1)


def gaussian_log_likelihood(mean: torch.Tensor, x: torch.Tensor, logvar: torch.Tensor | float) -> torch.Tensor:
    """log N(x; mean, diag(exp(logvar))) per example. logvar: scalar or broadcastable to mean. -> (...)"""
    logvar = torch.as_tensor(logvar, dtype=mean.dtype, device=mean.device).expand_as(mean)
    return -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) / logvar.exp()).sum(dim=-1)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example. z: (..., d) -> (...)"""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)


def diag_gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) per example. -> (...)"""
    return gaussian_log_likelihood(mu, z, logvar)


# ---------------------------------------------------------------- reconstruction losses (per example)
def squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared pixel errors per image. (B, D) -> (B,)"""
    return (x_hat - x).pow(2).sum(dim=-1)


def binary_cross_entropy(x_hat: torch.Tensor, x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Sum of pixel BCEs per image, for outputs x_hat already in (0,1). (B, D) -> (B,)"""
    x_hat = x_hat.clamp(eps, 1.0 - eps)
    return -(x * torch.log(x_hat) + (1.0 - x) * torch.log1p(-x_hat)).sum(dim=-1)


# ---------------------------------------------------------------- the reparameterisation trick
def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 1,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): a sample whose gradient flows to mu and logvar.

    mu, logvar: (B, d) -> z: (L, B, d) with L = n_samples
    """
    std = torch.exp(0.5 * logvar)
    eps = torch.randn((n_samples, *mu.shape), dtype=mu.dtype, device=mu.device, generator=generator)
    return mu.unsqueeze(0) + std.unsqueeze(0) * eps


# ---------------------------------------------------------------- penalties
def sparsity_penalty(codes: torch.Tensor, rho: float) -> torch.Tensor:
    """sum_j KL( rho || rho_hat_j ), rho_hat_j = mean activation of unit j over the batch.

    codes: (B, H) in (0,1) -> scalar (a batch-level quantity; the same value is charged to every example)
    """
    rho_hat = codes.mean(dim=0)  # (H,)
    return kl_bernoulli(rho, rho_hat).sum()


def contractive_penalty_sigmoid(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """||J_f(x)||_F^2 for f(x) = sigmoid(W x + b), in closed form, per example.

    dh_j/dx_i = h_j (1 - h_j) W_ji, so ||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2.
    h: (B, H), weight: (H, D) -> (B,)
    """
    return ((h * (1.0 - h)).pow(2) * weight.pow(2).sum(dim=1)).sum(dim=-1)


def jacobian_frobenius_sq(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                          create_graph: bool = True) -> torch.Tensor:
    """||J_f(x)||_F^2 per example for any encoder f: (B, D) -> (B, H), by autograd.

    One backward pass per code unit (H passes) with the sum-over-batch trick, valid because example b's
    code depends on example b's input only.   -> (B,)
    """
    x = x.detach().requires_grad_(True)
    h = f(x)  # (B, H)
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for j in range(h.shape[1]):
        (g,) = torch.autograd.grad(h[:, j].sum(), x, create_graph=create_graph, retain_graph=True)
        total = total + g.pow(2).sum(dim=-1)
    return total


# ---------------------------------------------------------------- utilities
def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log( mean_k exp(values_k) ) along dim, computed stably."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])
