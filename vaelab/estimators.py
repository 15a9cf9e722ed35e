"""Two estimators of the same gradient, side by side: why the reparameterisation trick exists.

For a Gaussian VAE, q(z|x) = N(mu, diag(sigma^2)) with sigma^2 = exp(logvar), and f(z) = -log p(x|z) (the
reconstruction term), the encoder's gradient of E_q[f] with respect to q's parameters (mu, logvar) is estimated
from one draw eps ~ N(0, I), z = mu + sigma * eps, in two ways:

    reparameterised   g = d f(mu + sigma * eps) / d(mu, logvar)                      (autograd through z)
    score function    g = (f(z) - b) * d log q(z|x) / d(mu, logvar)                  (no gradient through z)
                      d log q / d mu = (z - mu) / sigma^2,   d log q / d logvar = ((z - mu)^2 / sigma^2 - 1) / 2

with b = 0 (plain) or a baseline b: the mean of f over the images' own independent draws (what a running
average of f converges to). Both are unbiased for the same gradient; their variance is what differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ESTIMATORS = ("reparameterised", "score function", "score function + baseline")


@dataclass
class GradientEstimates:
    """Single-draw estimates (draws, B, 2d) per estimator: columns 0..d-1 are d/d mu, d..2d-1 are d/d logvar."""

    estimates: dict[str, torch.Tensor]

    def mean(self, name: str) -> torch.Tensor:
        """The estimator's average over the draws: (B, 2d)."""
        return self.estimates[name].mean(dim=0)

    def variance(self, name: str) -> float:
        """The variance of one draw's estimate across draws, averaged over images and coordinates."""
        return float(self.estimates[name].var(dim=0).mean())


def encoder_gradient_estimates(model, x: torch.Tensor, draws: int = 16, y: torch.Tensor | None = None,
                               generator: torch.Generator | None = None) -> GradientEstimates:
    """``draws`` single-draw estimates of d E_q[f] / d(mu, logvar) for each image of x (B, D), by each estimator.

    The same eps serve all estimators (the baseline uses its own independent draws). The model is not changed
    (evaluated in eval mode; its train/eval mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return _estimates(model, x, draws, y, generator)
    finally:
        model.train(was_training)


def _estimates(model, x: torch.Tensor, draws: int, y: torch.Tensor | None,
               generator: torch.Generator | None) -> GradientEstimates:
    with torch.no_grad():
        mu, logvar = model.posterior(x, y)  # (B, d) each
    d = mu.shape[1]
    eps = torch.randn((draws, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)  # (S, B, d)
    mu_s = mu.expand(draws, -1, -1).clone().requires_grad_(True)  # one leaf per draw: per-draw gradients
    logvar_s = logvar.expand(draws, -1, -1).clone().requires_grad_(True)
    with torch.enable_grad():
        z = mu_s + (0.5 * logvar_s).exp() * eps  # (S, B, d)
        f = -model.log_likelihood(z, x, y)  # (S, B)
        grad_mu, grad_logvar = torch.autograd.grad(f.sum(), (mu_s, logvar_s))
    reparameterised = torch.cat([grad_mu, grad_logvar], dim=-1)  # (S, B, 2d)

    with torch.no_grad():
        f = f.detach()
        sigma2 = logvar.exp()  # (B, d)
        score = torch.cat([eps / sigma2.sqrt(), 0.5 * (eps.pow(2) - 1.0)], dim=-1)  # (S, B, 2d): (z-mu)/s^2 = eps/s
        other = torch.randn((draws, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        baseline = (-model.log_likelihood(mu + sigma2.sqrt() * other, x, y)).mean(dim=0)  # (B,) independent draws
        plain = f.unsqueeze(-1) * score
        with_baseline = (f - baseline).unsqueeze(-1) * score
    assert reparameterised.shape[-1] == 2 * d
    return GradientEstimates({"reparameterised": reparameterised.detach(), "score function": plain,
                              "score function + baseline": with_baseline})
