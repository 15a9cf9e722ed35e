"""The denoising, sparse, k-sparse and contractive pages (AppTest on mnist-5k), and the vaelab functions they call
(checked against direct computations: brute-force top-k, hand-computed history ratios, the corruption itself).

A run trains in its worker process while the test waits for it (tests/helpers.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn

from tests.helpers import (
    chart_specs,
    chart_title,
    image_captions,
    no_exception,
    open_page,
    plotly_array,
    run_until_stopped,
    session_of,
    set_form,
    stop_reset,
    stream_args,
    subset,
)
from vaelab.analysis import history_rows, inference, robustness, sparsity
from vaelab.baselines import reference_run
from vaelab.config import ConfigError
from vaelab.data import load_data
from vaelab.losses import kl_bernoulli
from vaelab.training import Trainer
from vaelab.variants import build_model, get_variant
from vaelab.variants.ae import Config as AeConfig
from vaelab.variants.denoising import corrupt

REFERENCE = "same net without the penalty (λ = 0)"  # pages/contractive.py's reference curve
EPS_VALUES, N_DIRECTIONS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0), 4  # its sensitivity chart's


# -- helpers (more in tests/helpers.py) ----------------------------------------------------------------------------
def _page(variant: str, module: str, **form: object) -> AppTest:
    """The app on a variant's page with form fields set (text for tuples, numbers for numbers)."""
    at = open_page(f"pages/{module}.py")
    assert any("Press **Start**" in i.value for i in at.info)  # no model yet: the page still renders
    return set_form(at, variant, {"epochs": 1, "batch_size": 100, **form})


def _figure(at: AppTest, title_start: str) -> dict:
    found = [f for f in chart_specs(at) if chart_title(f).startswith(title_start)]
    assert len(found) == 1, [chart_title(f) for f in chart_specs(at)]
    return found[0]


def _trace(fig: dict, name: str) -> dict:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, [t.get("name") for t in fig["data"]]
    return found[0]


# -- vaelab.analysis additions -----------------------------------------------------------------------------------
def test_spaced_indices_spread_evenly_and_reach_every_class_of_a_sorted_set():
    labels = torch.arange(10).repeat_interleave(100)  # sorted by label, like mnist-5k's test split
    idx = inference.spaced_indices(len(labels), 20)
    assert idx.tolist() == [i * 50 for i in range(20)]
    assert set(labels[idx].tolist()) == set(range(10))
    assert inference.spaced_indices(5, 9).tolist() == [0, 1, 2, 3, 4]  # never more than there are
    assert inference.spaced_indices(0, 3).numel() == 0
    with pytest.raises(ValueError, match="total, n"):
        inference.spaced_indices(-1, 3)


class _Identity(nn.Module):
    """A 'model' that returns its input: its corruption sweep is the error of the noisy input itself."""

    uses_labels = False

    def reconstruct(self, x, y=None):
        return x


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "masking", "salt-and-pepper"])
def test_corruption_baseline_is_the_noisy_inputs_error_with_the_sweeps_noise(kind):
    x = torch.rand(30, 12, generator=torch.Generator().manual_seed(1))
    levels = [0.0, 0.2, 0.7]
    base = robustness.corruption_baseline(x, kind, levels, corrupt, seed=3)
    direct = [float(((corrupt(x, kind, a, torch.Generator().manual_seed(3)) - x) ** 2).sum(dim=1).mean())
              for a in levels]
    assert base == pytest.approx(direct, rel=1e-6)
    assert base[0] == 0.0 and base[2] > base[1] > 0.0
    assert robustness.corruption_sweep(_Identity(), x, kind, levels, corrupt, seed=3) == pytest.approx(base, rel=1e-6)


def test_term_history_and_term_share_against_hand_computed_rows():
    history = [
        {"kind": "train", "step": 10, "epoch": 0.5, "time": 1.0, "reconstruction": 90.0, "sparsity": 10.0,
         "total": 100.0},
        {"kind": "train", "step": 20, "epoch": 1.0, "time": 2.0, "reconstruction": 60.0},  # no penalty, no total
        {"kind": "test", "step": 20, "epoch": 1.0, "time": 2.0, "sparsity": 0.0, "total": 0.0},  # zero total
        {"kind": "test", "step": 40, "epoch": 2.0, "time": 3.0, "sparsity": 5.0, "total": 80.0},
    ]
    scaled = history_rows.term_history(history, "sparsity", scale=0.5, name="half")
    assert scaled == [{"kind": "train", "step": 10, "epoch": 0.5, "half": 5.0},
                      {"kind": "test", "step": 20, "epoch": 1.0, "half": 0.0},
                      {"kind": "test", "step": 40, "epoch": 2.0, "half": 2.5}]
    share = history_rows.term_share_history(history, "sparsity")
    assert [(r["kind"], r["step"], r["sparsity / total"]) for r in share] == [("train", 10, 0.1), ("test", 40, 0.0625)]


def _ksparse(code_size: int = 9, k: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return build_model("ksparse", get_variant("ksparse").config_cls(hidden_sizes=(), code_size=code_size, k=k),
                       input_dim=12)


def test_top_k_units_and_reconstructions_at_k_match_a_brute_force_top_k():
    model = _ksparse(code_size=9, k=3)
    image = torch.rand(12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = model.encoder(image[None])[0].numpy()  # (9,)
    for k in (1, 4, 9):
        units, values = sparsity.top_k_units(model, image, k)
        order = np.argsort(-h)[:k]  # brute force: sort all units, strongest first
        assert units.tolist() == order.tolist()
        np.testing.assert_allclose(values, h[order], rtol=1e-6)
    ks = [1, 4, 9]
    recon = sparsity.reconstructions_at_k(model, image, ks)
    assert recon.shape == (3, 12)
    for row, k in zip(recon, ks, strict=True):
        code = np.where(np.isin(np.arange(9), np.argsort(-h)[:k]), h, 0.0)  # zero all but the k largest
        with torch.no_grad():
            expected = torch.sigmoid(model.decoder(torch.tensor(code, dtype=torch.float32)[None]))[0].numpy()
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # all units kept: the plain autoencoder's reconstruction
        full = torch.sigmoid(model.decoder(model.encoder(image[None])))[0].numpy()
    np.testing.assert_allclose(recon[2], full, rtol=1e-5, atol=1e-6)


def test_top_k_helpers_name_a_bad_k_and_refuse_models_without_a_top_k():
    model, image = _ksparse(code_size=9), torch.rand(12)
    with pytest.raises(ConfigError, match=r"k: .*\[1, 9\]"):
        sparsity.top_k_units(model, image, 10)
    with pytest.raises(ConfigError, match="k: "):
        sparsity.reconstructions_at_k(model, image, [0])
    with pytest.raises(ValueError, match="one image"):
        sparsity.top_k_units(model, torch.rand(2, 12), 2)
    plain = build_model("ae", AeConfig(hidden_sizes=(), code_size=4), input_dim=12)
    with pytest.raises(ValueError, match="k-sparse autoencoders only"):
        sparsity.top_k_units(plain, image, 2)


# -- vaelab.baselines --------------------------------------------------------------------------------------------
def _digits_subset():
    return subset(load_data("digits"), 400, slice(None))  # 8x8 images: trains in a blink; a new bundle


def test_reference_run_follows_a_step_in_bounded_chunks_and_records_each_epoch():
    data = _digits_subset()  # 400 images, 8 steps per epoch
    config = get_variant("contractive").config_cls(hidden_sizes=(), code_size=16, lam=0.5, batch_size=50, epochs=3)
    measured = []

    def measure(model):
        measured.append(model)
        return float(model.jacobian_norm_sq(data.test.images[:20]).mean())

    run = reference_run("contractive", config, data, measure, seed=5, lam=0.0)
    assert run.trainer.config.lam == 0.0 and run.trainer.config.code_size == 16 and run.trainer.seed == 5
    assert run.points == [(0.0, pytest.approx(measure(run.trainer.model)))]
    assert run.extend_to(12, max_seconds=10.0)  # 1.5 epochs: stops at the epoch end, then at step 12
    assert run.trainer.step == 12 and [e for e, _ in run.points] == [0.0, 1.0, 1.5]
    assert run.extend_to(12, max_seconds=10.0) and run.trainer.step == 12  # never past the step it follows
    assert not run.extend_to(24, max_seconds=1e-9)  # a tiny budget: one step, not caught up
    assert run.trainer.step == 13 and not run.caught_up(24)
    assert run.extend_to(1000, max_seconds=10.0) and run.trainer.done  # capped at its own run's end
    assert [e for e, _ in run.points] == [0.0, 1.0, 1.5, 1.625, 2.0, 3.0]  # each epoch end and each chunk's end
    assert len(measured) == len(run.points) + 1  # measured once per point (and once by this test)
    assert run.seconds > 0


# -- pages -------------------------------------------------------------------------------------------------------
def test_denoising_page_trains_with_its_own_corruption_widgets_and_draws_rows_and_sweep():
    at = _page("denoising", "denoising", hidden_sizes="16", code_size=8)
    kind, level = at.selectbox(key="cfg.denoising.corruption"), at.slider(key="cfg.denoising.noise_level")
    assert (kind.value, level.value) == ("uniform", 0.5)  # the config's defaults
    at.selectbox(key="cfg.denoising._preset").set_value("salt-and-pepper").run()  # a preset moves them too
    assert at.selectbox(key="cfg.denoising.corruption").value == "salt-and-pepper"
    assert at.slider(key="cfg.denoising.noise_level").value == pytest.approx(0.2)
    at.selectbox(key="cfg.denoising.corruption").set_value("masking")
    at.slider(key="cfg.denoising.noise_level").set_value(0.3)
    at.text_input(key="cfg.denoising.hidden_sizes").set_value("16")  # the preset reset the form's fields
    at.number_input(key="cfg.denoising.code_size").set_value(8)
    at.number_input(key="cfg.denoising.epochs").set_value(1)
    at.run()

    at.button(key="panel.denoising.start").click().run()
    no_exception(at)
    session = session_of(at, "denoising")
    assert (session.config.corruption, session.config.noise_level) == ("masking", 0.3)
    assert session.config.hidden_sizes == (16,) and session.config.code_size == 8
    assert at.selectbox(key="cfg.denoising.corruption").disabled and at.slider(key="cfg.denoising.noise_level").disabled
    run_until_stopped(at, "denoising")
    no_exception(at)
    assert session.status == "finished" and session.history
    assert any(c.startswith("Top to bottom: test images, corrupted (masking, a = 0.3), denoised")
               for c in image_captions(at))

    sweep = _figure(at, "Error against noise level (masking")
    noisy = plotly_array(_trace(sweep, "corrupted input (no model)")["y"])
    denoised = plotly_array(_trace(sweep, "denoised by this model")["y"])
    assert len(noisy) == len(denoised) == 11 and noisy[0] == 0.0 and (np.diff(noisy) > 0).all()
    at.selectbox(key=f"denoising.sweep_kind.{session.version}").set_value("gaussian").run()
    no_exception(at)
    assert chart_title(_figure(at, "Error against noise level")).startswith("Error against noise level (gaussian")


def test_denoising_page_widgets_show_a_loaded_models_corruption():
    at = _page("denoising", "denoising", hidden_sizes="16", code_size=8)
    at.selectbox(key="cfg.denoising.corruption").set_value("masking")
    at.slider(key="cfg.denoising.noise_level").set_value(0.3)
    at.run()
    at.button(key="panel.denoising.start").click().run()
    at.button(key="panel.denoising.pause").click().run()
    session = session_of(at, "denoising")
    at.text_input(key="panel.denoising.save_name").set_value("masked").run()
    at.button(key="panel.denoising.save").click().run()
    assert "Saved `masked`" in at.success[0].value

    stop_reset(at, "denoising")
    at.selectbox(key="cfg.denoising.corruption").set_value("gaussian")  # the next run would use other noise
    at.slider(key="cfg.denoising.noise_level").set_value(0.1)
    at.run()
    at.button(key="panel.denoising.load").click().run()
    no_exception(at)
    assert (session.config.corruption, session.config.noise_level) == ("masking", 0.3)
    assert at.selectbox(key="cfg.denoising.corruption").value == "masking"  # the page's widgets follow the model
    assert at.slider(key="cfg.denoising.noise_level").value == pytest.approx(0.3)
    assert any("corrupted (masking, a = 0.3)" in c for c in image_captions(at))


def test_sparse_page_grows_the_history_and_draws_filters_activations_kl_curve_and_share_live():
    at = _page("sparse", "sparse")
    at.button(key="panel.sparse.start").click().run()
    session = session_of(at, "sparse")
    assert {r["view"] for r in stream_args(at)[-1]["regions"]} == {"filters", "activations"}  # streamed meanwhile
    run_until_stopped(at, "sparse")
    no_exception(at)
    assert session.status == "finished" and session.history
    assert any(c.startswith("Each code unit's encoder weights as a 28x28 image (144 units") for c in image_captions(at))

    histogram = _figure(at, "Mean activation")
    assert histogram["layout"]["shapes"][0]["x0"] == pytest.approx(session.config.rho)  # the training rho
    test = session.data.test
    expected = inference.encode_dataset(session.model, test.images[inference.spaced_indices(len(test), 1000)]).mean(0)
    np.testing.assert_allclose(plotly_array(histogram["data"][0]["x"]), expected, rtol=1e-5)

    rho = session.config.rho  # the training rho, whatever the defaults say
    kl = _figure(at, f"KL(ρ ‖ ρ̂), training ρ = {rho:g}")  # the curve the model is trained with
    assert [t["name"] for t in kl["data"]] == [f"KL(ρ = {rho:g} ‖ ρ̂), training ρ", "units (ρ̂ⱼ, training ρ)"]
    curve = kl["data"][0]
    np.testing.assert_allclose(plotly_array(curve["y"]),
                               kl_bernoulli(rho, torch.tensor(plotly_array(curve["x"]))).numpy(), atol=1e-12)
    units = _trace(kl, "units (ρ̂ⱼ, training ρ)")
    np.testing.assert_allclose(plotly_array(units["x"]), expected, rtol=1e-5)
    expected_kl = kl_bernoulli(rho, torch.tensor(expected, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(plotly_array(units["y"]), expected_kl, rtol=1e-5, atol=1e-9)
    slider = at.slider(key=f"sparse.compare_rho.{session.version}")
    assert slider.value == pytest.approx(rho)  # starts at the training rho: no second curve
    other = 0.25 if not np.isclose(rho, 0.25) else 0.5
    slider.set_value(other).run()
    kl = _figure(at, f"KL(ρ ‖ ρ̂), training ρ = {rho:g}")
    assert [t["name"] for t in kl["data"]] == [f"KL(ρ = {rho:g} ‖ ρ̂), training ρ",
                                               f"KL(ρ′ = {other:g} ‖ ρ̂), for comparison", "units (ρ̂ⱼ, training ρ)"]
    np.testing.assert_allclose(plotly_array(_trace(kl, "units (ρ̂ⱼ, training ρ)")["y"]), expected_kl, rtol=1e-5,
                               atol=1e-9)  # the units stay on the training curve

    share = _trace(next(f for f in chart_specs(at) if any(t.get("name") == "train · sparsity / total"
                                                        for t in f["data"])), "train · sparsity / total")
    train = [r for r in session.history if r["kind"] == "train"]
    np.testing.assert_allclose(plotly_array(share["y"]), [r["sparsity"] / r["total"] for r in train], rtol=1e-6)


def test_ksparse_page_shows_the_units_that_fire_their_filters_and_reconstructions_at_several_k():
    at = _page("ksparse", "ksparse", code_size=30, k=10)
    at.button(key="panel.ksparse.start").click().run()
    at.button(key="panel.ksparse.pause").click().run()
    session = session_of(at, "ksparse")
    assert session.status == "paused" and session.config.k == 10
    assert at.slider(key=f"ksparse.k.{session.version}").value == 10  # starts at the trained k

    at.number_input(key="ksparse.image").set_value(7)
    at.slider(key=f"ksparse.k.{session.version}").set_value(5)
    at.run()
    no_exception(at)
    fired = _figure(at, "The 5 units that fire for test image 7")
    with torch.no_grad():
        h = session.model.encoder(session.data.test.images[7:8])[0].numpy()
    strongest = np.argsort(-h)[:5]
    assert fired["data"][0]["x"] == [f"#{u}" for u in strongest]
    np.testing.assert_allclose(plotly_array(fired["data"][0]["y"]), h[strongest], rtol=1e-5)
    captions = image_captions(at)
    assert any(c.startswith("Their filters, strongest first (units " + ", ".join(map(str, strongest)))
               for c in captions)
    assert any("k = 5, 10, 20, 30 (trained with k = 10)" in c for c in captions)
    assert any("(30 units" in c for c in captions)  # the whole filter grid


def _reference_caught_up(at: AppTest, session, max_runs: int = 20):
    """The contractive page's reference run, after the reruns it takes to catch up with the model."""
    for _ in range(max_runs):
        reference = at.session_state["vaelab.reference.contractive"]["run"]
        if reference.caught_up(session.step):
            return reference
        at.run()
    raise AssertionError("the reference net did not catch up")


def _sensitivity_lines(at: AppTest) -> list[str]:
    fig = next(f for f in chart_specs(at) if f["layout"].get("xaxis", {}).get("title", {}).get("text", "")
               .startswith("perturbation size"))
    return [t["name"] for t in fig["data"]]


def test_contractive_page_draws_the_jacobian_norm_beside_the_same_net_without_the_penalty_by_default():
    at = _page("contractive", "contractive")
    at.button(key="panel.contractive.start").click().run()
    session = session_of(at, "contractive")
    model_line = f"contractive (λ = {session.config.lam:g})"
    run_until_stopped(at, "contractive")
    no_exception(at)
    assert session.status == "finished"
    reference = _reference_caught_up(at, session)
    no_exception(at)
    assert reference.trainer.variant == "contractive" and reference.trainer.config == session.config.replace(lam=0.0)
    assert reference.trainer.step == session.step and reference.trainer.seed == session.trainer.seed
    assert reference.trainer.data is session.data and reference.trainer.error is None

    jacobian = next(f for f in chart_specs(at) if any("J<sub>f</sub>" in (t.get("name") or "") for t in f["data"]))
    train = [r for r in session.history if r["kind"] == "train"]
    line = next(t for t in jacobian["data"] if t["name"].startswith("train"))
    np.testing.assert_allclose(plotly_array(line["y"]), [r["contractive"] / session.config.lam for r in train],
                               rtol=1e-6)
    drawn = _trace(jacobian, REFERENCE)  # the second curve, drawn without pressing anything
    epochs, norms = plotly_array(drawn["x"]), plotly_array(drawn["y"])
    assert epochs[0] == 0.0 and epochs[-1] == 1.0 and (np.diff(epochs) > 0).all()
    x = session.data.test.images[inference.spaced_indices(len(session.data.test), 100)]
    assert norms[-1] == pytest.approx(float(reference.trainer.model.jacobian_norm_sq(x).mean()), rel=1e-5)
    fresh = Trainer("contractive", session.config, session.data, seed=session.trainer.seed).model
    assert norms[0] == pytest.approx(float(fresh.jacobian_norm_sq(x).mean()), rel=1e-5)  # same starting weights
    assert any("trained alongside in" in c and "catching up" not in c for c in (c.value for c in at.caption))

    assert _sensitivity_lines(at) == [model_line, REFERENCE]
    sensitivity = next(f for f in chart_specs(at) if [t["name"] for t in f["data"]] == _sensitivity_lines(at))
    expected = robustness.sensitivity_curve(reference.trainer.model, x, EPS_VALUES, N_DIRECTIONS)
    np.testing.assert_allclose(plotly_array(sensitivity["data"][1]["y"]), expected, rtol=1e-5)

    loss = next(f for f in chart_specs(at) if any(t.get("name") == "train · contractive" for t in f["data"]))
    panel = {t["name"]: t.get("yaxis", "y") for t in loss["data"]}
    assert panel["train · contractive"] == "y2" and panel["train · reconstruction"] == "y"  # readable on its own

    # trained once: a new run of the same setting finds the same reference, already trained
    stop_reset(at, "contractive")
    at.button(key="panel.contractive.start").click().run()
    run_until_stopped(at, "contractive")
    no_exception(at)
    assert at.session_state["vaelab.reference.contractive"]["run"] is reference
    assert reference.trainer.step == session.step and len(reference.points) == len(epochs)
