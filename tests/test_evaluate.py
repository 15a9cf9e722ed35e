"""Metrics against models whose log p(x) is known exactly, probes, active units, caching, the CLI eval/pretrain."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
from torch import distributions as D

from tests.helpers import mnist_5k_subset
from vaelab import evaluate, losses, plots
from vaelab.analysis import inference
from vaelab.checkpoints import list_checkpoints, load_checkpoint, read_metadata, save_trainer
from vaelab.classroom import CLASSROOM_NAME, CLASSROOM_PRESETS
from vaelab.cli import main
from vaelab.compare import checkpoint_entries, common_terms, comparison_table, key_settings, metric_bars
from vaelab.config import ConfigError
from vaelab.data import DataBundle
from vaelab.training import Trainer
from vaelab.variants import VARIANTS, binary_vae, get_variant, vae

torch.set_default_dtype(torch.float32)


def repeated_bound(model, x: torch.Tensor, k: int, repeats: int, seed: int = 0) -> torch.Tensor:
    """`repeats` independent K-sample bounds per image from one call: (repeats, B)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, k * repeats, generator=g)  # (R*K, B)
    return losses.log_mean_exp(log_w.reshape(repeats, k, -1).double(), dim=1)  # (R, B)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    v = values.double().reshape(-1)
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


# -- (a) a binary latent small enough to enumerate ---------------------------------------------------------------
@pytest.fixture(scope="module")
def binary_model() -> tuple[binary_vae.Model, torch.Tensor]:
    torch.manual_seed(0)
    model = binary_vae.Model(binary_vae.Config(hidden_sizes=(8,), latent_dim=4), input_dim=12).double().eval()
    with torch.no_grad():  # a decoder that depends strongly on z: a posterior far from q, bounds far apart
        for p in model.decoder.parameters():
            p.mul_(4.0)
        for p in model.encoder.parameters():
            p.mul_(2.0)
    x = (torch.rand(5, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64) > 0.5).double()
    return model, x


def brute_force_log_px(model: binary_vae.Model, x: torch.Tensor) -> torch.Tensor:
    """log sum_z p(x|z) p(z) over every code, with torch.distributions. -> (B,)"""
    d = model.config.latent_dim
    terms = []
    with torch.no_grad():
        for bits in itertools.product([0.0, 1.0], repeat=d):
            z = torch.tensor(bits, dtype=x.dtype).expand(len(x), d)
            terms.append(D.Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1) - d * math.log(2))
    return torch.logsumexp(torch.stack(terms), dim=0)


def brute_force_elbo(model: binary_vae.Model, x: torch.Tensor) -> torch.Tensor:
    """sum_z q(z|x) [log p(x|z) + log p(z) - log q(z|x)] with torch.distributions. -> (B,)"""
    d = model.config.latent_dim
    total = torch.zeros(len(x), dtype=x.dtype)
    with torch.no_grad():
        q = D.Bernoulli(logits=model.encoder_logits(x))
        for bits in itertools.product([0.0, 1.0], repeat=d):
            z = torch.tensor(bits, dtype=x.dtype).expand(len(x), d)
            log_q = q.log_prob(z).sum(-1)
            log_joint = D.Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1) - d * math.log(2)
            total += log_q.exp() * (log_joint - log_q)
    return total


def test_binary_importance_weights_follow_their_definition(binary_model):
    model, x = binary_model
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 7, generator=torch.Generator().manual_seed(3))  # (7, B)
        z = model.sample_latents(model.encoder_logits(x), 7, torch.Generator().manual_seed(3))  # the same draws
        expected = (D.Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1) - 4 * math.log(2)
                    - D.Bernoulli(logits=model.encoder_logits(x)).log_prob(z).sum(-1))
    assert log_w.shape == (7, 5)
    torch.testing.assert_close(log_w, expected)


def test_binary_exact_log_likelihood_is_used_and_matches_brute_force(binary_model):
    model, x = binary_model
    result = evaluate.log_likelihood(model, x)
    exact = brute_force_log_px(model, x)
    assert result["method"] == "exact" and result["k"] is None and result["n"] == 5
    assert result["mean"] == pytest.approx(float(exact.mean()), abs=1e-9)
    assert result["stderr"] == pytest.approx(float(exact.std() / math.sqrt(5)), rel=1e-9)


def test_binary_importance_estimate_converges_to_the_enumerated_value_from_below(binary_model):
    model, x = binary_model
    exact = brute_force_log_px(model, x)  # (B,)
    elbo = brute_force_elbo(model, x)
    assert (elbo < exact - 0.5).all()  # q is far from the posterior: the bounds have room to move
    gaps = {}
    for k in (1, 10, 100):
        bounds = repeated_bound(model, x, k, repeats=2000, seed=k)  # (R, B)
        mean, se = mean_and_se(bounds - exact)
        assert mean < 3 * se, f"K={k}: the bound exceeds log p(x) on average ({mean:.4f} +- {se:.4f})"
        gaps[k] = -mean
    assert gaps[1] > gaps[10] > gaps[100] >= -1e-3
    # K = 1 is the ELBO in expectation
    k1 = repeated_bound(model, x, 1, repeats=40_000, seed=5) - elbo  # (R, B)
    mean, se = mean_and_se(k1)
    assert abs(mean) < 4 * se
    # with many samples the estimate (through the evaluator's batching) reaches the exact value
    estimate = evaluate.importance_sampled_log_likelihood(model, x, 20_000,
                                                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0)
    assert float((estimate - exact).abs().max()) < 0.05 * float((exact - elbo).min())  # 95% of the gap closed


def test_wide_binary_latent_falls_back_to_importance_sampling():
    model = binary_vae.Model(binary_vae.Config(hidden_sizes=(8,), latent_dim=binary_vae.MAX_ENUMERABLE_BITS + 1),
                             input_dim=12)
    x = (torch.rand(4, 12) > 0.5).float()
    result = evaluate.log_likelihood(model, x, k=8)
    assert result["method"] == "importance" and result["k"] == 8 and math.isfinite(result["mean"])


# -- (b) a linear-Gaussian decoder: p(x) = N(b, W W^T + s^2 I) ---------------------------------------------------
class LinearGaussian(torch.nn.Module):
    """p(z) = N(0, I), p(x|z) = N(W z + b, s2 I), q(z|x) = N(A x + c, diag(exp(q_logvar))); follows the
    log_importance_weights contract of the VAEs (float64)."""

    uses_labels = False

    def __init__(self, W, b, s2, A, c, q_logvar):
        super().__init__()
        self.W, self.b, self.s2, self.A, self.c, self.q_logvar = W, b, s2, A, c, q_logvar
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

    @classmethod
    def with_true_posterior(cls, W, b, s2):
        """q = the exact posterior, which is diagonal when W's columns are orthogonal."""
        cov = torch.linalg.inv(torch.eye(W.shape[1], dtype=W.dtype) + W.T @ W / s2)
        assert torch.allclose(cov, torch.diag(torch.diag(cov)))
        return cls(W, b, s2, cov @ W.T / s2, -(cov @ W.T @ b) / s2, torch.diag(cov).log())

    def posterior(self, x):
        mu = x @ self.A.T + self.c  # (B, d)
        return mu, self.q_logvar.expand_as(mu)

    def log_importance_weights(self, x, k, y=None, generator=None):
        mu, logvar = self.posterior(x)
        z = losses.reparameterize(mu, logvar, k, generator)  # (K, B, d)
        log_px_z = D.Normal(z @ self.W.T + self.b, math.sqrt(self.s2)).log_prob(x).sum(-1)
        log_pz = D.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = D.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
        return log_px_z + log_pz - log_q  # (K, B)

    def exact_marginal(self, x):
        cov = self.W @ self.W.T + self.s2 * torch.eye(self.W.shape[0], dtype=x.dtype)
        return D.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def analytic_elbo(self, x):
        """E_q[log p(x|z)] - KL(q || p) in closed form."""
        mu, logvar = self.posterior(x)
        n_pixels = x.shape[1]
        resid = x - mu @ self.W.T - self.b
        trace = (self.W.pow(2) * logvar.exp()[:, None, :]).sum(dim=(1, 2))  # tr(W diag(var) W^T), (B,)
        expected = -0.5 * n_pixels * math.log(2 * math.pi * self.s2) - (resid.pow(2).sum(-1) + trace) / (2 * self.s2)
        kl = D.kl_divergence(D.Normal(mu, (0.5 * logvar).exp()), D.Normal(0.0, 1.0)).sum(-1)
        return expected - kl


@pytest.fixture(scope="module")
def linear_gaussian():
    g = torch.Generator().manual_seed(0)
    q_mat, _ = torch.linalg.qr(torch.randn(5, 2, generator=g, dtype=torch.float64))  # orthonormal columns
    W = q_mat * torch.tensor([2.0, 0.7], dtype=torch.float64)  # orthogonal columns
    b = torch.randn(5, generator=g, dtype=torch.float64)
    s2 = 0.3
    truth = LinearGaussian.with_true_posterior(W, b, s2)
    # an imperfect q: the posterior's mean shifted and its variance widened
    rough = LinearGaussian(W, b, s2, truth.A * 0.8, truth.c + 0.3, truth.q_logvar + 0.7)
    x = D.MultivariateNormal(b, W @ W.T + s2 * torch.eye(5, dtype=torch.float64)).sample((6,))
    return truth, rough, x


def test_with_the_true_posterior_every_weight_is_log_px(linear_gaussian):
    truth, _, x = linear_gaussian
    log_w = truth.log_importance_weights(x, 50, generator=torch.Generator().manual_seed(1))  # (50, B)
    torch.testing.assert_close(log_w, truth.exact_marginal(x).expand_as(log_w), atol=1e-9, rtol=0)
    torch.testing.assert_close(truth.analytic_elbo(x), truth.exact_marginal(x), atol=1e-9, rtol=0)


def test_linear_gaussian_estimate_converges_to_the_exact_marginal_from_below(linear_gaussian):
    _, model, x = linear_gaussian
    exact = model.exact_marginal(x)  # (B,)
    elbo = model.analytic_elbo(x)
    assert (elbo < exact - 0.1).all()
    gaps = {}
    for k in (1, 10, 100):
        bounds = repeated_bound(model, x, k, repeats=2000, seed=k)
        mean, se = mean_and_se(bounds - exact)
        assert mean < 3 * se, f"K={k}: the bound exceeds log p(x) on average ({mean:.4f} +- {se:.4f})"
        gaps[k] = -mean
    assert gaps[1] > gaps[10] > gaps[100] >= -1e-3
    mean, se = mean_and_se(repeated_bound(model, x, 1, repeats=40_000, seed=9) - elbo)  # K = 1: the ELBO
    assert abs(mean) < 4 * se
    result = evaluate.log_likelihood(model, x, k=20_000, seed=0)
    assert result["method"] == "importance" and result["k"] == 20_000
    assert result["mean"] == pytest.approx(float(exact.mean()), abs=0.02)
    assert result["stderr"] == pytest.approx(float(exact.std() / math.sqrt(len(x))), rel=0.05)


def test_vae_k1_weight_is_a_one_sample_elbo():
    torch.manual_seed(0)
    model = vae.Model(vae.Config(hidden_sizes=(16,), latent_dim=3), input_dim=20).eval()
    x = torch.rand(4, 20)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 1, generator=torch.Generator().manual_seed(2))[0]  # (B,)
        mu, logvar = model.posterior(x)
        z = losses.reparameterize(mu, logvar, 1, torch.Generator().manual_seed(2))[0]  # the same draw
        q = D.Normal(mu, (0.5 * logvar).exp())
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(model.decoder(z), x,
                                                                         reduction="none").sum(-1)
        expected = log_px_z + D.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        torch.testing.assert_close(log_w, expected)
        # and in expectation the analytic-KL ELBO
        many = model.log_importance_weights(x, 20_000, generator=torch.Generator().manual_seed(3))  # (K, B)
        elbo = model.elbo_per_example(x, n_samples=20_000, generator=torch.Generator().manual_seed(4))
    se = many.std(dim=0) / math.sqrt(many.shape[0])
    assert ((many.mean(dim=0) - elbo).abs() < 5 * se + 1e-3).all()


def test_gaussian_decoder_result_says_it_is_a_density():
    model = vae.Model(vae.Config(hidden_sizes=(8,), latent_dim=2, decoder="gaussian"), input_dim=10)
    result = evaluate.log_likelihood(model, torch.rand(6, 10), k=5)
    assert result["decoder"] == "gaussian"
    assert "not comparable with Bernoulli nats" in evaluate.describe("log_likelihood", result)


@pytest.mark.parametrize("k", [0, -1, 1.5, True, evaluate.MAX_K + 1])
def test_bad_k_is_a_config_error_naming_k(k):
    with pytest.raises(ConfigError, match="^k: "):
        evaluate.importance_sampled_log_likelihood(None, torch.zeros(1, 3), k)


# -- reconstruction, probes, active units, speed -----------------------------------------------------------------
def test_reconstruction_error_matches_torch_losses():
    torch.manual_seed(0)
    model = get_variant("ae").model_cls(get_variant("ae").config_cls(hidden_sizes=(8,), code_size=3), 16)
    x = torch.rand(7, 16)
    result = evaluate.reconstruction_error(model, x)
    with torch.no_grad():
        x_hat = torch.sigmoid(model.decoder(model.encoder(x)))
    bce = torch.nn.functional.binary_cross_entropy(x_hat, x, reduction="none").sum(-1)
    mse = torch.nn.functional.mse_loss(x_hat, x, reduction="none").mean(-1)
    assert result["bce"] == pytest.approx(float(bce.mean()), rel=1e-5)
    assert result["mse"] == pytest.approx(float(mse.mean()), rel=1e-5)
    assert result["bce_stderr"] == pytest.approx(float(bce.std() / math.sqrt(7)), rel=1e-4)
    assert result["n"] == 7


def test_count_active_units_against_numpy_variances():
    rng = np.random.default_rng(0)
    means = np.stack([rng.normal(0, 1.0, 500), rng.normal(3, 0.05, 500), rng.normal(0, 0.2, 500),
                      np.full(500, 0.7)], axis=1)  # variances ~1, 0.0025, 0.04, 0
    result = evaluate.count_active_units(means)
    assert result["active"] == 2 and result["units"] == 4
    np.testing.assert_allclose(result["variances"], means.var(axis=0, ddof=1))


def test_a_vae_unit_whose_posterior_mean_ignores_x_is_inactive():
    torch.manual_seed(0)
    model = vae.Model(vae.Config(hidden_sizes=(16,), latent_dim=3), input_dim=20)
    with torch.no_grad():
        model.mean_head.weight.mul_(20.0)
        model.mean_head.weight[1].zero_()
        model.mean_head.bias[1] = 0.4
    result = evaluate.active_units(model, torch.rand(300, 20))
    assert result["active"] == 2 and result["variances"][1] == pytest.approx(0.0, abs=1e-12)


def test_training_speed_is_total_samples_over_total_seconds():
    history = [{"kind": "train", "step": 2, "samples_per_s": 100.0},  # 20 samples in 0.2 s
               {"kind": "test", "step": 2},
               {"kind": "train", "step": 6, "samples_per_s": 40.0}]  # 40 samples in 1 s
    result = evaluate.training_speed(history, {"config": {"batch_size": 10}, "train_time": 1.5, "epochs": 1})
    assert result["samples_per_s"] == pytest.approx(60 / 1.2)
    assert result["train_time"] == 1.5
    assert evaluate.training_speed([], {})["samples_per_s"] is None


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return mnist_5k_subset(2000, slice(None, None, 4))  # test: 250, every class


def test_probe_on_a_briefly_trained_autoencoder_beats_chance_by_far(digits):
    config = get_variant("ae").config_cls(hidden_sizes=(64,), code_size=16, epochs=5, batch_size=50, lr=3e-3)
    trainer = Trainer("ae", config, digits, seed=0)
    trainer.run()
    result = evaluate.probe_accuracy(trainer.model, digits.train.images, digits.train.labels,
                                     digits.test.images, digits.test.labels)
    assert result["logistic"] > 0.7 and result["knn"] > 0.7  # chance: about 0.1
    assert result["n_train"] == 2000 and result["n_test"] == 250
    # the same codes with labels that carry no information score near chance
    codes_train = trainer.model.encode(digits.train.images).detach().numpy()
    codes_test = trainer.model.encode(digits.test.images).detach().numpy()
    rng = np.random.default_rng(0)
    shuffled = evaluate.probe_scores(codes_train, rng.permutation(digits.train.labels.numpy()), codes_test,
                                     rng.permutation(digits.test.labels.numpy()))
    assert shuffled["logistic"] < 0.3 and shuffled["knn"] < 0.3


# -- evaluate_checkpoint: what applies, caching --------------------------------------------------------------------
def tiny_checkpoint(data: DataBundle, variant: str, directory, **overrides):
    """A small model trained one epoch (20 steps, with its test row) and saved as tiny-<variant>."""
    sizes = {"vae": {"latent_dim": 2}, "ae": {"code_size": 4}, "binary-vae": {"latent_dim": 6},
             "cvae": {"latent_dim": 2}}[variant]
    config = get_variant(variant).config_cls(**{"hidden_sizes": (16,), "batch_size": 100, "epochs": 1,
                                                **sizes, **overrides})
    trainer = Trainer(variant, config, data, seed=0, log_every=5)
    trainer.run()
    return save_trainer(trainer, f"tiny-{variant}", directory=directory, overwrite=True)


def counting(monkeypatch, names):
    calls = dict.fromkeys(names, 0)
    for name in names:
        original = getattr(evaluate, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(evaluate, name, wrapper)
    return calls


def test_metrics_are_cached_in_the_checkpoint_and_not_recomputed(digits, tmp_path, monkeypatch):
    path = tiny_checkpoint(digits, "vae", tmp_path)
    calls = counting(monkeypatch, ["log_likelihood", "reconstruction_error", "probe_accuracy", "active_units"])
    progress = []
    first = evaluate.evaluate_checkpoint(path, digits, k=5, n=100, on_progress=lambda d, t: progress.append((d, t)))
    assert set(first) == set(evaluate.METRICS)
    assert calls == dict.fromkeys(calls, 1)
    assert progress[-1][0] == progress[-1][1] and all(d <= t for d, t in progress)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert first["log_likelihood"]["n"] == 100 and first["log_likelihood"]["k"] == 5

    stored = read_metadata(path)["evaluation"]
    assert len(stored) == 4 and all(e["settings"]["test"] == "mnist-5k" for e in stored.values())
    load_checkpoint(path)  # the rewritten file still loads, weights and all

    second = evaluate.evaluate_checkpoint(path, digits, k=5, n=100)
    assert calls == dict.fromkeys(calls, 1)
    assert second["log_likelihood"] == first["log_likelihood"] and second["probe"] == first["probe"]

    third = evaluate.evaluate_checkpoint(path, digits, metrics=["log_likelihood"], k=7, n=100)
    assert calls["log_likelihood"] == 2 and set(third) == {"log_likelihood"}
    assert len(read_metadata(path)["evaluation"]) == 5  # both settings kept
    assert evaluate.cached_results(read_metadata(path))["log_likelihood"]["k"] in (5, 7)

    evaluate.evaluate_checkpoint(path, digits, metrics=["reconstruction"], n=100, recompute=True)
    assert calls["reconstruction_error"] == 2


def test_deterministic_variants_get_no_likelihood_and_binary_vae_gets_the_exact_one(digits, tmp_path):
    ae_path = tiny_checkpoint(digits, "ae", tmp_path)
    results = evaluate.evaluate_checkpoint(ae_path, digits, n=50)
    assert set(results) == {"reconstruction", "probe", "speed"}
    with pytest.raises(ConfigError, match="^metrics: 'log_likelihood' does not apply to ae"):
        evaluate.evaluate_checkpoint(ae_path, digits, metrics=["log_likelihood"])
    with pytest.raises(ConfigError, match="^metrics: unknown metric"):
        evaluate.evaluate_checkpoint(ae_path, digits, metrics=["accuracy"])

    bin_path = tiny_checkpoint(digits, "binary-vae", tmp_path)
    ll = evaluate.evaluate_checkpoint(bin_path, digits, metrics=["log_likelihood"], n=50)["log_likelihood"]
    model = load_checkpoint(bin_path).model
    x = digits.test.images[inference.spaced_indices(len(digits.test), 50)]
    with torch.no_grad():
        assert ll["method"] == "exact"
        assert ll["mean"] == pytest.approx(float(model.exact_log_likelihood(x).mean()), rel=1e-5)


def test_cvae_likelihood_is_conditional_on_the_true_labels(digits, tmp_path):
    path = tiny_checkpoint(digits, "cvae", tmp_path)
    result = evaluate.evaluate_checkpoint(path, digits, metrics=["log_likelihood"], k=4, n=40)["log_likelihood"]
    assert result["conditional"] and "log p(x|y)" in evaluate.describe("log_likelihood", result)


# -- the compare table and its helpers -------------------------------------------------------------------------------
def test_comparison_table_lists_every_checkpoint_with_cached_metrics_and_broken_files(digits, tmp_path):
    vae_path = tiny_checkpoint(digits, "vae", tmp_path, lr=0.01)
    ae_path = tiny_checkpoint(digits, "ae", tmp_path)
    (tmp_path / "vae" / "broken.pt").write_bytes(b"not a checkpoint")
    evaluate.evaluate_checkpoint(vae_path, digits, k=3, n=40)
    entries = checkpoint_entries(tmp_path)
    table = comparison_table(entries)
    assert len(table) == 3
    rows = {r["name"]: r for r in table.to_dict("records")}
    assert rows["broken"]["status"].startswith("unreadable:")
    vae_row, ae_row = rows["tiny-vae"], rows["tiny-ae"]
    assert vae_row["status"] == "ok" and vae_row["variant"] == "vae" and vae_row["dataset"] == "mnist-5k"
    assert "latent_dim=2" in vae_row["settings"] and "lr=0.01" in vae_row["settings"]
    assert "lr=" not in ae_row["settings"]
    cached = evaluate.cached_results(read_metadata(vae_path))
    assert vae_row["log p(x)"] == cached["log_likelihood"]["mean"]
    assert vae_row["logistic probe"] == cached["probe"]["logistic"]
    assert vae_row["test total"] == read_metadata(vae_path)["metrics"]["total"]
    assert math.isnan(ae_row["log p(x)"])
    assert "tiny-vae" in table.to_csv(index=False)
    bars = dict((title.split(" (")[0], (names, values)) for title, names, values in
                metric_bars(table, [str(vae_path), str(ae_path)]))
    assert bars["log p(x), nats per image"] == (["vae / tiny-vae"], [vae_row["log p(x)"]])
    assert bars["Test loss"][0] == ["vae / tiny-vae<br>negative ELBO, nats", "ae / tiny-ae<br>BCE"]
    assert (vae_row["objective"], ae_row["objective"]) == ("negative ELBO, nats", "BCE")


def test_the_objective_says_what_each_test_total_is():
    from vaelab.compare import objective

    assert objective("vae", {"beta": 4.0, "decoder": "bernoulli"}) == "rec. + 4 KL (a β-VAE's objective), nats"
    assert objective("cvae", {"beta": 1.0, "decoder": "gaussian"}) == "negative ELBO (a density, not nats)"
    assert objective("sparse", {"reconstruction": "mse-mean"}) == "mean squared error + sparsity"
    assert objective("contractive", {"reconstruction": "bce"}) == "BCE + contractive"
    assert objective("binary-vae", {}) == "negative ELBO, nats"


def test_key_settings_show_sizes_and_changed_fields_only():
    config = get_variant("vae").config_cls(beta=4.0, epochs=3).to_dict()
    assert key_settings("vae", config) == "hidden_sizes=512-256, latent_dim=2, beta=4"


def test_compare_loss_curves_draws_each_history_in_its_own_colour():
    histories = {"a": [{"kind": "train", "epoch": 0.5, "total": 3.0}, {"kind": "test", "epoch": 1.0, "total": 2.0}],
                 "b": [{"kind": "train", "epoch": 0.5, "total": 5.0, "kl": 1.0}, {"kind": "train", "epoch": 1.0,
                                                                                   "total": float("nan")}]}
    fig = plots.compare_loss_curves(histories, "total")
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"a · train", "a · test", "b · train"}
    assert list(traces["b · train"].y) == [5.0] and list(traces["a · test"].y) == [2.0]
    assert traces["a · train"].line.color != traces["b · train"].line.color
    assert common_terms(list(histories.values())) == ["total"]


# -- the CLI ---------------------------------------------------------------------------------------------------------
def test_classroom_presets_cover_every_variant_with_an_existing_preset():
    assert list(CLASSROOM_PRESETS) == list(VARIANTS)
    for key, preset in CLASSROOM_PRESETS.items():
        assert preset in get_variant(key).config_cls.PRESETS, key
    assert set(CLASSROOM_PRESETS.values()) == {"default"}  # the lesson defaults, as the pages start


LOG_P_LINE = re.compile(r"log p\(x\)\s+(-?\d+\.\d+) ± (\d+\.\d+) nats per image")


def test_cli_eval_prints_the_log_likelihood_with_its_standard_error(tmp_path, capsys):
    path = tmp_path / "vae.pt"
    assert main(["train", "vae", "--dataset", "mnist-5k", "--epochs", "1", "--set", "hidden_sizes=32",
                 "--out", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(path), "--k", "10", "--n", "200", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "total" in out  # the test terms are still there
    match = LOG_P_LINE.search(out)
    assert match, out
    assert float(match.group(1)) < 0 and float(match.group(2)) > 0
    assert "K=10" in out and "n=200" in out and "probe accuracy" in out and "active units" in out
    assert any("k=10" in key for key in read_metadata(path)["evaluation"])
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(path), "--k", "0"])
    assert exit_info.value.code == 2 and "k: " in capsys.readouterr().err


def test_cli_pretrain_overwrites_and_caches_metrics(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(tmp_path))
    args = ["pretrain", "--dataset", "mnist-5k", "--only", "vae", "--only", "binary-vae", "--epochs", "1",
            "--k", "5", "--n", "50", "--quiet"]
    assert main(args) == 0
    path = tmp_path / "vae" / f"{CLASSROOM_NAME}.pt"
    first = read_metadata(path)
    assert first["config"]["latent_dim"] == 2 and first["epochs"] == 1  # the lecture preset
    assert evaluate.cached_results(first)["log_likelihood"]["k"] == 5
    assert evaluate.cached_results(read_metadata(tmp_path / "binary-vae" / "classroom.pt"))["log_likelihood"][
        "method"] == "exact"
    assert main(["pretrain", "--dataset", "mnist-5k", "--only", "vae", "--epochs", "2", "--no-metrics",
                 "--quiet"]) == 0
    second = read_metadata(path)
    assert second["epochs"] == 2 and "evaluation" not in second  # replaced, with no stale metrics
    assert "log p(x)" in capsys.readouterr().out
    for bad, field in ((["--only", "nope"], "--only"), (["--n", "0"], "n")):
        with pytest.raises(SystemExit) as exit_info:
            main(["pretrain", "--dataset", "mnist-5k", *bad])
        assert exit_info.value.code == 2 and f"{field}: " in capsys.readouterr().err


def test_cli_pretrain_fills_the_checkpoint_dir_with_one_model_per_variant(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(tmp_path))
    assert main(["pretrain", "--dataset", "mnist-5k", "--epochs", "1", "--no-metrics", "--quiet"]) == 0
    infos = list_checkpoints()
    assert sorted((i.variant, i.name) for i in infos) == sorted((k, CLASSROOM_NAME) for k in VARIANTS)
    assert all(i.error is None and i.epochs == 1 for i in infos)
    assert len(capsys.readouterr().out.splitlines()) == len(VARIANTS)
    assert main(["eval", str(tmp_path / "vae" / "classroom.pt"), "--k", "10", "--n", "100", "--quiet"]) == 0
    assert LOG_P_LINE.search(capsys.readouterr().out)
