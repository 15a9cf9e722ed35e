"""The Gaussian and Bernoulli maths of vaelab.losses against torch.distributions, autograd and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelab import losses


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


# ---------------------------------------------------------------- KL of a diagonal Gaussian to N(0, I)
def test_kl_diag_gaussian_matches_torch_distributions(gen):
    mu, logvar = randn(gen, 5, 3), randn(gen, 5, 3)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    got = losses.kl_diag_gaussian_to_standard_normal(mu, logvar)
    assert got.shape == (5,)
    torch.testing.assert_close(got, expected)


def test_kl_diag_gaussian_matches_monte_carlo(gen):
    mu, logvar = randn(gen, 2, 3) * 0.7, randn(gen, 2, 3) * 0.5
    std = torch.exp(0.5 * logvar)
    z = mu + std * randn(gen, 200_000, 2, 3)  # (N, 2, 3) draws from q
    log_ratio = Normal(mu, std).log_prob(z).sum(-1) - Normal(0.0, 1.0).log_prob(z).sum(-1)  # (N, 2)
    torch.testing.assert_close(losses.kl_diag_gaussian_to_standard_normal(mu, logvar), log_ratio.mean(0),
                               atol=0.02, rtol=0.02)


def test_kl_is_zero_exactly_at_the_prior():
    assert losses.kl_diag_gaussian_to_standard_normal(torch.zeros(4, 3), torch.zeros(4, 3)).abs().max() == 0


# ---------------------------------------------------------------- Bernoulli KL terms
def test_kl_bernoulli_matches_torch_distributions(gen):
    p = torch.rand(6, 4, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    q = torch.rand(6, 4, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    torch.testing.assert_close(losses.kl_bernoulli(p, q), kl_divergence(Bernoulli(probs=p), Bernoulli(probs=q)))


def test_kl_bernoulli_to_uniform_matches_torch_distributions_and_logits_form(gen):
    logits = randn(gen, 6, 5) * 3
    mu = torch.sigmoid(logits)
    expected = kl_divergence(Bernoulli(probs=mu), Bernoulli(probs=torch.full_like(mu, 0.5))).sum(-1)
    torch.testing.assert_close(losses.kl_bernoulli_to_uniform(mu), expected)
    torch.testing.assert_close(losses.kl_bernoulli_logits_to_uniform(logits), expected)


def test_kl_bernoulli_to_uniform_at_the_ends():
    # A deterministic unit carries log 2 nats; a fair coin carries none.
    mu = torch.tensor([[0.0, 1.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(losses.kl_bernoulli_to_uniform(mu), torch.tensor([2 * math.log(2.0)],
                                                                                 dtype=torch.float64))
    saturated = losses.kl_bernoulli_logits_to_uniform(torch.tensor([[200.0, -200.0]]))
    assert torch.isfinite(saturated).all()
    torch.testing.assert_close(saturated, torch.tensor([2 * math.log(2.0)]))


# ---------------------------------------------------------------- log-likelihoods
def test_bernoulli_log_likelihood_matches_torch_distributions_for_binary_x(gen):
    logits = randn(gen, 2, 4, 7) * 3  # (L, B, D): the leading sample axis broadcasts against x (B, D)
    x = (torch.rand(4, 7, generator=gen) < 0.5).double()
    got = losses.bernoulli_log_likelihood(logits, x)
    assert got.shape == (2, 4)
    torch.testing.assert_close(got, Bernoulli(logits=logits).log_prob(x.expand_as(logits)).sum(-1))


def test_bernoulli_log_likelihood_is_minus_bce_for_grey_levels(gen):
    logits = randn(gen, 4, 7) * 3
    x = torch.rand(4, 7, generator=gen, dtype=torch.float64)
    bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").sum(-1)
    torch.testing.assert_close(losses.bernoulli_log_likelihood(logits, x), -bce)
    torch.testing.assert_close(losses.binary_cross_entropy(torch.sigmoid(logits), x), bce)


def test_bernoulli_log_likelihood_is_finite_for_saturated_logits():
    logits = torch.tensor([[100.0, -100.0]])
    x = torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(losses.bernoulli_log_likelihood(logits, x), torch.tensor([-200.0]))


@pytest.mark.parametrize("logvar_kind", ["scalar", "per-pixel", "per-element"])
def test_gaussian_log_likelihood_matches_torch_distributions(gen, logvar_kind):
    mean, x = torch.rand(3, 4, 6, generator=gen, dtype=torch.float64), torch.rand(4, 6, generator=gen,
                                                                                   dtype=torch.float64)
    logvar = {"scalar": -2.3, "per-pixel": randn(gen, 6), "per-element": randn(gen, 3, 4, 6)}[logvar_kind]
    std = torch.exp(0.5 * torch.as_tensor(logvar, dtype=torch.float64)).expand_as(mean)
    got = losses.gaussian_log_likelihood(mean, x, logvar)
    assert got.shape == (3, 4)
    torch.testing.assert_close(got, Normal(mean, std).log_prob(x.expand_as(mean)).sum(-1))


def test_standard_normal_and_diag_gaussian_log_densities(gen):
    z, mu, logvar = randn(gen, 5, 3), randn(gen, 5, 3), randn(gen, 5, 3)
    torch.testing.assert_close(losses.standard_normal_log_density(z), Normal(0.0, 1.0).log_prob(z).sum(-1))
    torch.testing.assert_close(losses.diag_gaussian_log_density(z, mu, logvar),
                               Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1))


# ---------------------------------------------------------------- the reparameterisation trick
def test_reparameterize_shape_and_moments(gen):
    mu = torch.tensor([[1.0, -2.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(4.0), math.log(0.25)]], dtype=torch.float64)
    z = losses.reparameterize(mu, logvar, n_samples=50_000, generator=gen)
    assert z.shape == (50_000, 1, 3)
    torch.testing.assert_close(z.mean(0), mu, atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64), atol=0.03, rtol=0)


def test_reparameterize_gradients_flow_to_mu_and_logvar():
    mu = torch.tensor([[0.3, -1.0]], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([[0.5, -0.7]], dtype=torch.float64, requires_grad=True)
    z = losses.reparameterize(mu, logvar, n_samples=4, generator=torch.Generator().manual_seed(1))  # (4, 1, 2)
    eps = torch.randn((4, 1, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    std = torch.exp(0.5 * logvar.detach())
    torch.testing.assert_close(z.detach(), mu.detach() + std * eps)
    for k in range(4):
        for j in range(2):
            d_mu, d_logvar = torch.autograd.grad(z[k, 0, j], (mu, logvar), retain_graph=True)
            expected_mu = torch.zeros_like(mu)
            expected_mu[0, j] = 1.0
            expected_logvar = torch.zeros_like(logvar)
            expected_logvar[0, j] = 0.5 * eps[k, 0, j] * std[0, j]
            torch.testing.assert_close(d_mu, expected_mu)
            torch.testing.assert_close(d_logvar, expected_logvar)


# ---------------------------------------------------------------- log-mean-exp
def test_log_mean_exp_matches_naive_for_moderate_values(gen):
    values = randn(gen, 7, 3) * 3
    torch.testing.assert_close(losses.log_mean_exp(values, dim=0), values.exp().mean(0).log())
    torch.testing.assert_close(losses.log_mean_exp(values, dim=1), values.exp().mean(1).log())


def test_log_mean_exp_is_stable_for_large_values():
    values = torch.tensor([[-1000.0, 1000.0], [-1000.0 + math.log(3.0), 1000.0 + math.log(3.0)]],
                          dtype=torch.float64)  # (K=2, B=2): naive exp under/overflows
    assert not torch.isfinite(values.exp().mean(0).log()).all()
    expected = torch.tensor([-1000.0, 1000.0], dtype=torch.float64) + math.log(2.0)  # log((1 + 3) / 2)
    torch.testing.assert_close(losses.log_mean_exp(values, dim=0), expected)
