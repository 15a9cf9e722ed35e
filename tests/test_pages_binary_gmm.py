"""The binary-latent VAE and autoencoder + Gaussian mixture pages (AppTest on mnist-5k), and the functions they
added to vaelab: the code plane and projected Gaussians, mixture-vs-N(0, I) samples, recent history means,
variance curves, overlaid points, the Gaussian-VAE companion, and diagnostics kept out of the loss curves.

A run trains in its worker process while the test waits for it (tests/helpers.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from streamlit.testing.v1 import AppTest

from tests.helpers import (
    all_captions,
    chart_specs,
    chart_title,
    no_exception,
    open_page,
    plotly_array,
    session_of,
    set_form,
    subset,
    train_to_the_end,
)
from vaelab import companions, plots
from vaelab.analysis import generation, history_rows, inference, latent_maps
from vaelab.checkpoints import CheckpointError, load_checkpoint, restore_trainer, save_trainer
from vaelab.data import DataBundle, load_data
from vaelab.training import Trainer
from vaelab.ui.live_view import curve_terms
from vaelab.variants import ae_gmm, binary_vae


# ---------------------------------------------------------------- AppTest helpers (more in tests/helpers.py)
def _chart_titled(at: AppTest, start: str) -> dict:
    found = [c for c in chart_specs(at) if chart_title(c).startswith(start)]
    assert found, [chart_title(c) for c in chart_specs(at)]
    return found[-1]


# ---------------------------------------------------------------- binary-latent VAE page
def test_binary_vae_page_trains_live_and_shows_both_variance_curves_map_samples_and_kl():
    at = set_form(open_page("pages/binary_vae.py"), "binary-vae",
                  {"hidden_sizes": "32", "latent_dim": 8, "epochs": 1, "batch_size": 100})
    assert at.checkbox(key="cfg.binary-vae.baseline").value  # the baseline is a form field, on by default
    lengths = train_to_the_end(at, "binary-vae")
    assert lengths[-1] > lengths[0]  # the history grew: the run trained in its worker
    session = session_of(at, "binary-vae")
    train_rows = [r for r in session.history if r["kind"] == "train"]
    assert all({"grad_variance", "grad_variance_no_baseline"} <= set(r) for r in train_rows)
    # the lesson: the baseline cuts the variance (measured on the same batches and draws)
    late = train_rows[len(train_rows) // 2:]
    assert all(r["grad_variance"] < 0.5 * r["grad_variance_no_baseline"] for r in late)

    variance = _chart_titled(at, "Score-function gradient variance")
    assert variance["layout"]["yaxis"]["type"] == "log"
    assert {t["name"] for t in variance["data"]} == {"with the baseline b", "without (b = 0)"}
    plain = next(t for t in variance["data"] if t["name"] == "without (b = 0)")
    np.testing.assert_allclose(plotly_array(plain["y"]), [r["grad_variance_no_baseline"] for r in train_rows])
    loss_chart = next(c for c in chart_specs(at) if any(t["name"].startswith("train · ") for t in c["data"]))
    assert {t["name"].split(" · ")[1] for t in loss_chart["data"]} == {"reconstruction", "kl", "total"}
    code_map = _chart_titled(at, "PCA of the bit probabilities")
    assert sum(len(plotly_array(t["x"])) for t in code_map["data"]) == 1000 and len(code_map["data"]) == 10  # 1 a digit

    captions = all_captions(at)
    assert any(c.startswith("Top to bottom: 3 rows of Bernoulli means p(x|z), binary images") for c in captions)
    assert any("cuts the variance" in c for c in captions)
    latex = " ".join(e.value for e in at.latex)
    assert r"\mu_j \log \mu_j + (1-\mu_j)\log(1-\mu_j) + \log 2" in latex  # the closed-form KL
    assert r"(f(z) - b)\,\nabla_{l}\log q(z\mid x)" in latex  # the score-function gradient
    assert r"\mathrm{ELBO}(x)" in latex


def _tiny_data(n_train: int = 400, n_test: int = 100) -> DataBundle:
    full = load_data("mnist-5k")
    return subset(full, inference.spaced_indices(len(full.train), n_train),
                  inference.spaced_indices(len(full.test), n_test))


def test_binary_vae_page_trains_and_loads_the_same_size_gaussian_vae_beside_it():
    at = set_form(open_page("pages/binary_vae.py"), "binary-vae",
                  {"hidden_sizes": "16", "latent_dim": 4, "epochs": 1, "batch_size": 200})
    assert not [b for b in at.button if b.key == "binary_vae.companion_train"]  # no model, nothing to compare yet
    train_to_the_end(at, "binary-vae")
    assert not any("Reconstructions of the same test images" in c for c in all_captions(at))
    at.button(key="binary_vae.companion_train").click().run()
    no_exception(at)
    companion = at.session_state["binary_vae.companion"]
    assert companion.config.hidden_sizes == (16,) and companion.config.latent_dim == 4
    assert companion.source == "trained here (1 epoch)"
    captions = all_captions(at)
    assert any(c.startswith("Top to bottom: test images, binary VAE, Gaussian VAE") for c in captions)
    assert any(c.startswith("Top to bottom: binary VAE, Gaussian VAE. Samples") for c in captions)
    assert any("hidden 16, latent 4 (same size)" in c for c in captions)
    elbo_line = "Test negative ELBO per image (reconstruction + KL, whatever β): binary VAE"
    assert any(c.startswith(elbo_line) for c in captions)

    # a saved VAE of another size loads and says so
    other = Trainer("vae", companions.same_size_gaussian_vae(session_of(at, "binary-vae").config, hidden_sizes=(8,)),
                    _tiny_data())
    other.advance(max_steps=2)
    save_trainer(other, "other-vae")
    at.run()
    at.selectbox(key="binary_vae.companion_choice").select_index(0).run()
    at.button(key="binary_vae.companion_load").click().run()
    no_exception(at)
    assert at.session_state["binary_vae.companion"].source == "checkpoint 'other-vae'"
    assert any("hidden 8, latent 4 (not the same size" in c for c in all_captions(at))


# ---------------------------------------------------------------- AE + Gaussian mixture page
def test_ae_gmm_page_fits_draws_the_mixture_and_refits_on_demand_without_retraining():
    at = open_page("pages/ae_gmm.py")
    at.slider(key="ae_gmm.n_components").set_value(3)  # the run starts with the page's mixture settings
    set_form(at, "ae-gmm", {"hidden_sizes": "32", "epochs": 1, "batch_size": 100})
    lengths = train_to_the_end(at, "ae-gmm")
    assert lengths[-1] > lengths[0]  # the history grew: the run trained in its worker
    session = session_of(at, "ae-gmm")
    model = session.model
    assert session.config.n_components == 3 and model.mixture_components == 3 and bool(model.mixture_fitted)

    code_map = _chart_titled(at, "Codes of 2,000 training images, mixture of 3 (full)")
    names = [t["name"] for t in code_map["data"]]
    assert names.count("mixture components (2 sd)") == 3
    assert "codes drawn from the mixture" in names and "codes drawn from N(0, I)" in names
    by_name = {t["name"]: t for t in code_map["data"]}
    digits = [by_name[str(d)]["marker"] for d in range(10)]
    mixture, normal = (by_name[n]["marker"] for n in ("codes drawn from the mixture", "codes drawn from N(0, I)"))
    assert [m["color"] for m in digits] == list(plots.CLASS_COLORS) == list(plots.PALETTE[:10])
    assert len({digits[0].get("symbol", "circle"), mixture["symbol"], normal["symbol"]}) == 3  # three shapes
    assert normal["color"] not in plots.CLASS_COLORS and mixture["color"] not in plots.CLASS_COLORS
    assert min(mixture["size"], normal["size"]) > digits[0]["size"]
    assert names.index("codes drawn from N(0, I)") > names.index("9")  # drawn over the codes
    ellipse = next(t for t in code_map["data"] if t["name"] == "mixture components (2 sd)")
    expected = latent_maps.mixture_ellipses(model.mixture_means, model.mixture_covariances)[0]
    np.testing.assert_allclose(np.stack([plotly_array(ellipse["x"]), plotly_array(ellipse["y"])], 1), expected,
                               rtol=1e-5, atol=1e-5)
    captions = all_captions(at)
    assert any(c.startswith("Decoded codes drawn from the Gaussian mixture") for c in captions)
    assert any(c.startswith("Decoded codes drawn from N(0, I)") for c in captions)
    assert any("The autoencoder alone is not a generator" in c for c in captions)
    latex = " ".join(e.value for e in at.latex)
    assert r"p(z) = \sum_{k=1}^{K} w_k\,\mathcal{N}(z;\, m_k, C_k)" in latex

    drawn = generation.mixture_vs_normal_samples(model, 24, seed=0)  # what the page decodes
    assert drawn["mixture_images"].shape == (24, 784) and drawn["normal_images"].shape == (24, 784)

    weights = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("mixture")}
    step = session.step
    at.slider(key="ae_gmm.n_components").set_value(5)
    at.selectbox(key="ae_gmm.covariance_type").set_value("diag")
    at.button(key="ae_gmm.refit").click().run()
    no_exception(at)
    assert model.mixture_weights.shape == (5,) and model.mixture_covariances.shape == (5, 2, 2)
    assert model.mixture_covariance == "diag" and session.step == step
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # the AE is not retrained
    code_map = _chart_titled(at, "Codes of 2,000 training images, mixture of 5 (diag)")
    assert [t["name"] for t in code_map["data"]].count("mixture components (2 sd)") == 5
    assert any("In the model now: 5 components, diag covariances" in c for c in all_captions(at))


def test_a_checkpoint_saved_after_a_refit_loads_and_resumes_with_the_refit_mixture(tmp_path):
    trainer = Trainer("ae-gmm", ae_gmm.Config(hidden_sizes=(16,), n_components=4, epochs=2), _tiny_data())
    trainer.advance(max_steps=trainer.steps_per_epoch)  # one epoch: the mixture is fitted (4, full)
    trainer.model.refit_mixture(trainer.data.train.images, 6, "tied")
    path = save_trainer(trainer, "refit", directory=tmp_path)
    ckpt = load_checkpoint(path)
    assert ckpt.model.mixture_components == 6 and ckpt.model.mixture_covariance == "tied"
    torch.testing.assert_close(ckpt.model.mixture_means, trainer.model.mixture_means)
    resumed = restore_trainer(ckpt, trainer.data)
    resumed.run()
    assert resumed.done and resumed.model.mixture_components == 6  # the epoch's refit kept the settings


# ---------------------------------------------------------------- new analysis / plots / companion functions
def test_code_plane_is_the_identity_for_2d_codes_and_pca_otherwise():
    rng = np.random.default_rng(0)
    codes2 = rng.normal(size=(50, 2))
    center, axes, method = latent_maps.code_plane(codes2)
    assert method == "identity"
    np.testing.assert_allclose(latent_maps.project_to_plane(codes2, center, axes), codes2, rtol=1e-6, atol=1e-6)

    codes = rng.normal(size=(400, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1]) + 2.0
    center, axes, method = latent_maps.code_plane(codes)
    assert method == "pca"
    ours = latent_maps.project_to_plane(codes, center, axes)
    theirs = PCA(2).fit_transform(codes)
    for j in range(2):  # equal up to the sign of each axis
        sign = np.sign(ours[:, j] @ theirs[:, j])
        np.testing.assert_allclose(ours[:, j], sign * theirs[:, j], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="at least 2 units"):
        latent_maps.code_plane(rng.normal(size=(10, 1)))


def test_projected_gaussians_are_the_marginals_of_projected_samples():
    rng = np.random.default_rng(1)
    d = 4
    a = rng.normal(size=(d, d))
    cov = a @ a.T + 0.1 * np.eye(d)
    mean = rng.normal(size=d)
    center, axes, _ = latent_maps.code_plane(rng.normal(size=(300, d)))
    means2, covs2 = latent_maps.project_gaussians(mean[None], cov[None], center, axes)
    samples = latent_maps.project_to_plane(rng.multivariate_normal(mean, cov, size=200_000), center, axes)
    np.testing.assert_allclose(means2[0], samples.mean(0), atol=0.03)
    np.testing.assert_allclose(covs2[0], np.cov(samples.T), rtol=0.03, atol=0.03)
    with pytest.raises(ValueError, match="means, covariances"):
        latent_maps.project_gaussians(mean[None], cov, center, axes)


def test_mixture_vs_normal_samples_match_the_models_own_samplers():
    torch.manual_seed(0)
    model = ae_gmm.Model(ae_gmm.Config(hidden_sizes=(8,), n_components=3), input_dim=12)
    model.fit_mixture(torch.randn(200, 2) * 3)
    model.train()
    out = generation.mixture_vs_normal_samples(model, 7, seed=5)
    assert model.training  # the mode is restored
    assert out["mixture_codes"].shape == (7, 2) and out["normal_codes"].shape == (7, 2)
    with torch.no_grad():
        expected_mix = model.sample(7, generator=torch.Generator().manual_seed(5))
        expected_normal = model.sample_standard_normal(7, generator=torch.Generator().manual_seed(5))
        np.testing.assert_allclose(out["mixture_images"], expected_mix.numpy(), rtol=1e-6)
        np.testing.assert_allclose(out["normal_images"], expected_normal.numpy(), rtol=1e-6)
        np.testing.assert_allclose(out["normal_images"], model.decode(torch.as_tensor(out["normal_codes"])).numpy(),
                                   rtol=1e-6)
    np.testing.assert_array_equal(out["normal_codes"],
                                  torch.randn(7, 2, generator=torch.Generator().manual_seed(5)).numpy())
    with pytest.raises(ValueError, match="ae-gmm"):
        generation.mixture_vs_normal_samples(binary_vae.Model(binary_vae.Config(hidden_sizes=(4,)), 12), 3)


def test_recent_mean_averages_the_last_rows_of_a_kind():
    history = [{"kind": "train", "x": 1.0}, {"kind": "test", "x": 10.0}, {"kind": "train", "x": 3.0},
               {"kind": "train", "y": 2.0}, {"kind": "train", "x": float("nan")}, {"kind": "train", "x": 5.0}]
    assert history_rows.recent_mean(history, "x", n_rows=2) == pytest.approx(4.0)
    assert history_rows.recent_mean(history, "x", n_rows=10) == pytest.approx(3.0)
    assert history_rows.recent_mean(history, "x", n_rows=1, kind="test") == 10.0
    assert history_rows.recent_mean(history, "missing") is None
    with pytest.raises(ValueError, match="n_rows"):
        history_rows.recent_mean(history, "x", n_rows=0)


def test_train_curves_draw_train_rows_only_and_skip_nonpositive_values_on_a_log_axis():
    history = [{"kind": "train", "epoch": 0.5, "a": 4.0, "b": 0.0}, {"kind": "test", "epoch": 1.0, "a": 9.0},
               {"kind": "train", "epoch": 1.0, "a": 2.0, "b": 1.5}]
    fig = plots.train_curves(history, {"a": "first", "b": "second"}, log_y=True, y_title="v")
    first, second = fig.data
    assert first.name == "first" and list(first.x) == [0.5, 1.0] and list(first.y) == [4.0, 2.0]
    assert list(second.x) == [1.0] and list(second.y) == [1.5]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "v"
    assert list(plots.train_curves(history, {"b": "b"}).data[0].y) == [0.0, 1.5]  # linear axis keeps 0


def test_add_points_overlays_one_trace():
    fig = plots.latent_scatter(np.zeros((3, 2)), [0, 1, 1])
    plots.add_points(fig, np.array([[1.0, 2.0], [3.0, 4.0]]), "drawn", color="red")
    trace = fig.data[-1]
    assert len(fig.data) == 3 and trace.name == "drawn" and list(trace.x) == [1.0, 3.0] and list(trace.y) == [2.0, 4.0]
    with pytest.raises(ValueError, match="points"):
        plots.add_points(fig, np.zeros((2, 3)), "bad")


def test_diagnostic_terms_stay_out_of_the_loss_curves():
    history = [{"kind": "train", "step": 1, "epoch": 0.1, "reconstruction": 200.0, "kl": 3.0, "total": 203.0,
                "grad_variance": 1e4, "grad_variance_no_baseline": 1e6}]
    assert curve_terms(history, exclude=binary_vae.Model.diagnostic_terms) == ["reconstruction", "kl", "total"]
    assert "grad_variance" in curve_terms(history)  # only a model's own list removes them
    assert ae_gmm.Model.diagnostic_terms == ()


def test_same_size_gaussian_vae_copies_the_size_and_training_settings():
    config = binary_vae.Config(hidden_sizes=(64, 32), latent_dim=12, activation="tanh", n_samples=2, lr=2e-3,
                               batch_size=50, epochs=3, binarize="static")
    gauss = companions.same_size_gaussian_vae(config)
    assert (gauss.hidden_sizes, gauss.latent_dim, gauss.activation, gauss.n_samples) == ((64, 32), 12, "tanh", 2)
    assert (gauss.lr, gauss.batch_size, gauss.epochs, gauss.binarize) == (2e-3, 50, 3, "static")
    assert gauss.decoder == "bernoulli" and gauss.beta == 1.0
    assert companions.same_size(gauss, config) and not companions.same_size(gauss.replace(latent_dim=2), config)
    assert companions.size_summary(config) == "hidden 64, 32, latent 12"


def test_train_gaussian_vae_reports_progress_and_lowers_the_test_loss():
    data = _tiny_data()
    config = companions.same_size_gaussian_vae(binary_vae.Config(hidden_sizes=(32,), latent_dim=4, epochs=2))
    before = Trainer("vae", config, data, seed=0).evaluate("test")["total"]
    seen = []
    companion = companions.train_gaussian_vae(config, data, seed=0, on_progress=lambda t: seen.append(t.progress))
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert not companion.model.training and companion.source == "trained here (2 epochs)"
    after = history_rows.recent_mean(companion.history, "total", n_rows=1, kind="test")
    assert after < before and math.isfinite(after)


def test_load_gaussian_vae_checks_variant_and_image_size(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(tmp_path))
    data = _tiny_data()
    vae_trainer = Trainer("vae", companions.same_size_gaussian_vae(binary_vae.Config(hidden_sizes=(8,))), data)
    vae_trainer.advance(max_steps=1)
    path = save_trainer(vae_trainer, "small")
    companion = companions.load_gaussian_vae(path, data.input_dim)
    x = data.test.images[:3]
    with torch.no_grad():
        vae_trainer.model.eval()
        torch.testing.assert_close(companion.model.reconstruct(x), vae_trainer.model.reconstruct(x))
    with pytest.raises(CheckpointError, match="pixels"):
        companions.load_gaussian_vae(path, 64)
    other = Trainer("binary-vae", binary_vae.Config(hidden_sizes=(8,)), data)
    with pytest.raises(CheckpointError):
        companions.load_gaussian_vae(save_trainer(other, "bits"), data.input_dim)
