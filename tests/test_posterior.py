"""The exact posterior and the ELBO gap against closed forms (a linear-Gaussian model), brute-force enumeration
(binary latents) and the importance-sampled bound (a trained VAE)."""

import math

import pytest
import torch

from vaelab import evaluate, posterior
from vaelab.data import load_data
from vaelab.training import Trainer
from vaelab.variants import VARIANTS, binary_vae


def _linear_gaussian(d: int, big_d: int = 6, noise: float = 0.3, seed: int = 0):
    """p(z) = N(0, I), p(x|z) = N(A z + b, noise^2 I): p(x) and p(z|x) are Gaussian in closed form."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(big_d, d, generator=g, dtype=torch.float64)
    b = torch.randn(big_d, generator=g, dtype=torch.float64)
    x = a @ torch.randn(d, generator=g, dtype=torch.float64) + b + noise * torch.randn(big_d, generator=g,
                                                                                       dtype=torch.float64)
    evidence = torch.distributions.MultivariateNormal(b, a @ a.T + noise**2 * torch.eye(big_d, dtype=torch.float64))
    s = torch.linalg.inv(torch.eye(d, dtype=torch.float64) + a.T @ a / noise**2)
    m = s @ a.T @ (x - b) / noise**2
    true_posterior = torch.distributions.MultivariateNormal(m, s)

    def log_likelihood(z):  # (G, d) -> (G,)
        return torch.distributions.Normal(z.double() @ a.T + b, noise).log_prob(x).sum(dim=-1)

    return log_likelihood, float(evidence.log_prob(x)), true_posterior


@pytest.mark.parametrize("d", [1, 2])
def test_quadrature_matches_the_closed_form_evidence_posterior_and_gap(d):
    log_likelihood, log_px, true_posterior = _linear_gaussian(d)
    q_mu = true_posterior.mean + 0.3  # a q that is off: a gap to measure
    q_logvar = torch.log(torch.diagonal(true_posterior.covariance_matrix) * 2.0)
    result = posterior.grid_posterior(log_likelihood, q_mu, q_logvar)
    assert result.log_px == pytest.approx(log_px, abs=0.01)
    assert result.quadrature_error < posterior.TOLERANCE
    points = torch.cartesian_prod(*result.axes) if d == 2 else result.axes[0].unsqueeze(1)
    expected = true_posterior.log_prob(points).reshape(result.log_posterior.shape)
    peak = expected > expected.max() - 10  # where the posterior has its mass
    assert torch.allclose(result.log_posterior[peak], expected[peak], atol=0.02)
    q = torch.distributions.MultivariateNormal(q_mu, torch.diag(q_logvar.exp()))
    kl = float(torch.distributions.kl_divergence(q, true_posterior))
    assert result.gap == pytest.approx(kl, abs=0.01)
    assert result.elbo == pytest.approx(log_px - kl, abs=0.02)


def test_a_narrow_posterior_far_from_the_origin_is_found():
    log_likelihood, log_px, true_posterior = _linear_gaussian(2, big_d=40, noise=0.05, seed=3)
    assert float(torch.diagonal(true_posterior.covariance_matrix).sqrt().max()) < 0.05  # narrow
    wrong_q = torch.zeros(2), torch.zeros(2)  # q = the prior: far from the true posterior
    result = posterior.grid_posterior(log_likelihood, *wrong_q)
    assert result.log_px == pytest.approx(log_px, abs=0.01)
    assert result.gap > 5  # the prior is a poor posterior: a large gap


@pytest.fixture(scope="module")
def trained_vae():
    data = load_data("digits")
    config = VARIANTS["vae"].config_cls(hidden_sizes=(32,), latent_dim=2, epochs=3, batch_size=50)
    trainer = Trainer("vae", config, data, seed=0)
    trainer.run()
    trainer.model.eval()
    return trainer.model, data


def test_the_gap_of_a_trained_vae_is_log_px_minus_a_sampled_elbo(trained_vae):
    model, data = trained_vae
    x = data.test.images[:3]
    sampled = model.elbo_per_example(x, n_samples=20000, generator=torch.Generator().manual_seed(0))
    for i in range(3):
        result = posterior.model_posterior(model, x[i])
        assert result.elbo == pytest.approx(float(sampled[i].detach()), abs=0.15)
        assert result.gap >= -posterior.TOLERANCE
        assert result.gap == pytest.approx(result.log_px - result.elbo)


def test_the_importance_weighted_bound_stays_below_the_exact_value_and_closes_in(trained_vae):
    """E[log (1/K) sum_k w_k] <= log p(x) for every K (estimated from 200 draws of the bound per image, so the
    check allows 3 standard errors), and the shortfall shrinks as K grows."""
    model, data = trained_vae
    x = data.test.images[:6]
    exact = torch.tensor([posterior.model_posterior(model, row).log_px for row in x], dtype=torch.float64)
    repeats = 200
    shortfalls = []
    for k in (1, 10, 100):
        draws = evaluate.importance_sampled_log_likelihood(model, x.repeat_interleave(repeats, 0), k,
                                                           generator=torch.Generator().manual_seed(k))
        draws = draws.view(len(x), repeats)  # (images, draws of the bound)
        mean, stderr = draws.mean(dim=1), draws.std(dim=1) / math.sqrt(repeats)
        assert bool((mean <= exact + 3 * stderr + 1e-3).all()), (k, exact - mean, stderr)
        shortfalls.append(float((exact - mean).mean()))
    assert shortfalls[0] > shortfalls[1] > shortfalls[2] >= -0.01


def test_a_conditional_vae_uses_the_images_label(trained_vae):
    data = trained_vae[1]
    config = VARIANTS["cvae"].config_cls(hidden_sizes=(16,), latent_dim=2, epochs=1, batch_size=100)
    trainer = Trainer("cvae", config, data, seed=0)
    trainer.run()
    x, y = data.test.images[0], int(data.test.labels[0])
    right, wrong = posterior.model_posterior(trainer.model, x, y), posterior.model_posterior(trainer.model, x,
                                                                                             (y + 1) % 10)
    assert right.log_px != pytest.approx(wrong.log_px, abs=1e-3)


def test_binary_gap_equals_brute_force_enumeration():
    torch.manual_seed(0)
    model = binary_vae.Model(binary_vae.Config(hidden_sizes=(8,), latent_dim=3), input_dim=12).eval()
    x = (torch.rand(4, 12) > 0.5).float()
    log_px, elbo, gap = posterior.binary_gap(model, x)
    logits = model.encoder_logits(x)  # (4, 3)
    for b in range(4):
        joint, q_terms = [], []
        for code in range(8):
            z = torch.tensor([(code >> j) & 1 for j in range(3)], dtype=torch.float32)
            log_pxz = float(model.log_px_given_z(x[b:b + 1], z.view(1, 1, 3)).detach()) + 3 * math.log(0.5)
            log_q = float(torch.distributions.Bernoulli(logits=logits[b]).log_prob(z).sum())
            joint.append(log_pxz)
            q_terms.append((math.exp(log_q), log_pxz - log_q))
        assert float(log_px[b]) == pytest.approx(float(torch.logsumexp(torch.tensor(joint), 0)), abs=1e-4)
        assert float(elbo[b]) == pytest.approx(sum(p * v for p, v in q_terms), abs=1e-4)
        assert float(gap[b]) >= -1e-6


def test_the_grid_refuses_latents_it_cannot_cover():
    with pytest.raises(ValueError, match="1 or 2 latent dimensions"):
        posterior.grid_posterior(lambda z: z.sum(dim=1), torch.zeros(3), torch.zeros(3))


@pytest.mark.parametrize(("variant", "settings"), [
    ("vae", {"hidden_sizes": (32,), "latent_dim": 2}),
    ("binary-vae", {"hidden_sizes": (32,), "latent_dim": 6}),
])
def test_eval_prints_the_exact_figures_and_the_bound_against_them(variant, settings, tmp_path, capsys):
    import re

    from vaelab.checkpoints import save_trainer_to
    from vaelab.cli import main

    data = load_data("digits")
    trainer = Trainer(variant, VARIANTS[variant].config_cls(epochs=2, batch_size=50, **settings), data, seed=0)
    trainer.run()
    path = save_trainer_to(trainer, tmp_path / "m.pt")
    assert main(["eval", str(path), "--n", "12", "--k", "5", "-q"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"exact, mean over 12 test images \((grid|enumeration)", out)
    out = out[out.index("exact, mean over"):]
    value = {name: float(re.search(rf"^  {re.escape(name)}\s+(-?[\d.]+)", out, re.M)[1])
             for name in ("log p(x)", "ELBO", "gap (KL(q||p(z|x)))")}
    assert value["log p(x)"] == pytest.approx(value["ELBO"] + value["gap (KL(q||p(z|x)))"], abs=0.002)
    bounds = [float(v) for v in re.findall(r"IW bound K=\d+\s+(-?[\d.]+)", out)]
    assert len(bounds) == 4 and bounds[-1] <= value["log p(x)"] + 0.05  # convergence: the test above
