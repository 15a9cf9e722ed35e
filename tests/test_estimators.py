"""The reparameterised and score-function estimators of the encoder's gradient: the same mean (each other's and a
finite-difference gradient of E_q[f]), different variances."""

import math

import pytest
import torch

from vaelab.estimators import ESTIMATORS, encoder_gradient_estimates
from vaelab.variants import vae


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = vae.Model(vae.Config(hidden_sizes=(4,), latent_dim=2), input_dim=6).eval()
    x = (torch.rand(3, 6) > 0.5).float()
    return model, x


def _expected_f(model, x, mu, logvar, eps):
    """E_q[-log p(x|z)] by common random numbers eps (S, B, d)."""
    z = mu + (0.5 * logvar).exp() * eps
    return float((-model.log_likelihood(z, x)).mean(dim=0).sum())


def test_both_estimators_are_unbiased_for_the_finite_difference_gradient(tiny):
    model, x = tiny
    draws = 400_000
    estimates = encoder_gradient_estimates(model, x, draws=draws, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        eps = torch.randn((draws, *mu.shape), generator=torch.Generator().manual_seed(2))
        step = 1e-3
        fd = torch.zeros(3, 4)
        for b in range(3):
            for j in range(4):
                params = [mu.clone(), logvar.clone()]
                which, k = divmod(j, 2)
                params[which][b, k] += step
                up = _expected_f(model, x, *params, eps)
                params[which][b, k] -= 2 * step
                down = _expected_f(model, x, *params, eps)
                fd[b, j] = (up - down) / (2 * step)
    for name in ESTIMATORS:
        all_draws = estimates.estimates[name]  # (S, B, 2d)
        stderr = all_draws.std(dim=0) / math.sqrt(draws)
        error = (estimates.mean(name) - fd).abs()
        assert bool((error < 4 * stderr + 0.003).all()), (name, error, stderr)


def test_the_reparameterised_estimator_has_the_smallest_variance_and_a_baseline_helps(tiny):
    model, x = tiny
    estimates = encoder_gradient_estimates(model, x, draws=4000, generator=torch.Generator().manual_seed(3))
    rep, plain, base = (estimates.variance(name) for name in ESTIMATORS)
    assert rep < base < plain
    assert plain / rep > 10


def test_the_estimates_leave_the_model_unchanged(tiny):
    model, x = tiny
    before = [p.detach().clone() for p in model.parameters()]
    encoder_gradient_estimates(model, x, draws=8)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
