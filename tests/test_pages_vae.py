"""The VAE and conditional-VAE pages (AppTest on mnist-5k) and the pure functions they call, each checked against a
direct computation with the model (decode of the same seeded draws, the inverse Gaussian CDF, the model's ELBO).

Each ``at.run()`` executes the whole page, the live fragment included, so one run trains one chunk (see
tests/test_app.py). Models are tiny (16 hidden units, one epoch) so the whole file stays well under a minute.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import ndtri
from streamlit.elements.plotly_chart import PlotlyChartSelectionSerde
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from tests.helpers import (
    chart_spec,
    chart_title,
    fill_form,
    image_captions,
    no_exception,
    open_page,
    plotly_array,
    run_until_stopped,
    session_of,
    stop_reset,
    train_to_the_end,
    wait_for,
)
from vaelab import plots
from vaelab.analysis import generation, history_rows, image_grids, inference
from vaelab.variants import build_model, get_variant

D = 12  # tiny images for the unit tests


# ---------------------------------------------------------------- helpers
def tiny_model(key: str, input_dim: int = D, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = get_variant(key).config_cls(**{"hidden_sizes": (8,), "latent_dim": 2, **overrides})
    return build_model(key, config, input_dim=input_dim).eval()


def seeded_draws(n: int, d: int, temperature: float, seed: int) -> torch.Tensor:
    return temperature * torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _page(variant: str, latent_dim: int = 2) -> AppTest:
    """The app on the variant's page with a tiny one-epoch model (40 steps of 100 images) typed into the form."""
    at = open_page(f"pages/{variant}.py")
    fill_form(at, variant, {"hidden_sizes": "16", "latent_dim": latent_dim, "epochs": 1, "batch_size": 100})
    return at


def _chart(at: AppTest, title_part: str):
    found = [c for c in at.get("plotly_chart") if title_part in chart_title(chart_spec(c))]
    assert found, f"no chart titled with {title_part!r}"
    return found[-1]


def _customdata(chart) -> np.ndarray:
    """The customdata (test-sample row) of every point on a latent map, over all its traces."""
    return np.concatenate([plotly_array(trace["customdata"], dtype=None) for trace in chart_spec(chart)["data"]])


def _click_point(at: AppTest, chart, point: int) -> None:
    """Send the selection the browser sends when a point is clicked (AppTest has no API for chart selections)."""
    states = at._tree.get_widget_states()
    event = {"selection": {"points": [{"curve_number": 0, "point_number": 0, "point_index": 0, "customdata": point}],
                           "point_indices": [0], "box": [], "lasso": []}}
    states.widgets.append(WidgetState(id=chart.proto.id, string_value=json.dumps(event)))
    at._run(states)


# ---------------------------------------------------------------- pure functions
def test_prior_samples_decode_the_same_seeded_draws_scaled_by_the_temperature():
    model = tiny_model("vae", latent_dim=3)
    for temperature in (1.0, 0.4):
        expected = model.decode(seeded_draws(6, 3, temperature, seed=5)).detach().numpy()
        np.testing.assert_allclose(generation.prior_samples(model, 6, temperature, seed=5), expected, atol=1e-6)
    cold = generation.prior_samples(model, 4, 0.0, seed=1)
    np.testing.assert_allclose(cold, np.repeat(model.decode(torch.zeros(1, 3)).detach().numpy(), 4, axis=0),
                               atol=1e-6)
    assert not np.allclose(generation.prior_samples(model, 4, seed=1), generation.prior_samples(model, 4, seed=2))
    with pytest.raises(ValueError, match="temperature"):
        generation.prior_samples(model, 4, -0.5)
    with pytest.raises(ValueError, match="n: "):
        generation.prior_samples(model, 0)


def test_prior_samples_of_a_cvae_follow_the_given_label():
    model = tiny_model("cvae")
    z = seeded_draws(5, 2, 1.0, seed=3)
    for digit in (2, 7):
        expected = model.decode(z, digit).detach().numpy()
        np.testing.assert_allclose(generation.prior_samples(model, 5, seed=3, y=digit), expected, atol=1e-6)
    with pytest.raises(ValueError, match="y: "):
        generation.prior_samples(model, 5)


def test_digit_style_grid_holds_z_down_each_column_and_the_label_along_each_row():
    model = tiny_model("cvae", seed=1)
    n_styles, temperature = 4, 0.8
    grid = generation.digit_style_grid(model, n_styles, temperature, seed=9)
    assert grid.shape == (10 * n_styles, D)
    z = seeded_draws(n_styles, 2, temperature, seed=9)  # the styles, one per column
    rows = grid.reshape(10, n_styles, D)
    for k in range(10):
        np.testing.assert_allclose(rows[k], model.decode(z, k).detach().numpy(), atol=1e-6)
        other = model.decode(z, (k + 1) % 10).detach().numpy()
        assert np.abs(rows[k] - other).max() > 1e-3  # the row is the decoding with its own label, not another's
    subset = generation.digit_style_grid(model, n_styles, temperature, seed=9, labels=[7, 3])
    np.testing.assert_allclose(subset, np.concatenate([rows[7], rows[3]]), atol=1e-6)
    tiles = image_grids.image_grid(grid, (3, 4), ncols=n_styles, sep=1)
    assert tiles.shape == (10 * 3 + 9, n_styles * 4 + n_styles - 1)
    with pytest.raises(ValueError, match="not conditioned on labels"):
        generation.digit_style_grid(tiny_model("vae"), 3)
    with pytest.raises(ValueError, match="labels must be in"):
        generation.digit_style_grid(model, 3, labels=[10])


def test_manifold_grid_is_n28_square_and_tiles_decode_inverse_cdf_points():
    model = tiny_model("vae", input_dim=28 * 28)
    n = 4
    grid = generation.manifold_grid(model, n, (28, 28))
    assert grid.shape == (n * 28, n * 28)
    q = ndtri(np.linspace(0.05, 0.95, n))  # the inverse Gaussian CDF, computed by scipy
    for r, c in [(0, 0), (0, 3), (2, 1), (3, 3)]:
        z = torch.tensor([[q[c], q[n - 1 - r]]], dtype=torch.float32)  # z2 largest at the top row
        tile = model.decode(z).detach().numpy().reshape(28, 28)
        np.testing.assert_allclose(grid[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28], tile, atol=1e-5)


def test_latest_elbo_split_matches_the_models_own_elbo_and_weights_the_kl_by_beta():
    beta = 3.0
    model = tiny_model("vae", beta=beta, n_samples=2)
    x = torch.rand(16, D, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(11)
    with torch.no_grad():
        terms = {k: float(v) for k, v in model.loss(x).items()}
    torch.manual_seed(11)  # the same reparameterised draws
    with torch.no_grad():
        elbo = float(model.elbo_per_example(x, n_samples=2).mean())
    old_test = {"kind": "test", "step": 1, "epoch": 1.0, "reconstruction": 99.0, "kl": 9.0, "total": 126.0}
    history = [old_test, {"kind": "train", "step": 2, "epoch": 1.5, **terms},
               {"kind": "test", "step": 2, "epoch": 2.0, **terms}, {"kind": "train", "step": 3, "epoch": 2.0}]
    split = history_rows.latest_elbo_split(history, beta)
    assert set(split) == {"train", "test"}
    test = split["test"]
    assert test["elbo"] == pytest.approx(elbo, rel=1e-5)
    assert test["weighted_kl"] == pytest.approx(beta * terms["kl"])
    assert test["total"] == pytest.approx(test["reconstruction"] + test["weighted_kl"], rel=1e-5)
    assert split["train"]["reconstruction"] == pytest.approx(terms["reconstruction"])  # newest row with the terms
    assert history_rows.latest_elbo_split(history[:1], 1.0)["test"]["elbo"] == -(99.0 + 9.0)
    assert history_rows.latest_elbo_split([], 1.0) == {}
    with pytest.raises(ValueError, match="beta"):
        history_rows.latest_elbo_split(history, -1.0)


def test_selected_indices_reads_the_customdata_of_a_streamlit_selection_event():
    serde = PlotlyChartSelectionSerde()
    event = serde.deserialize(json.dumps({"selection": {
        "points": [{"point_index": 3, "customdata": 42}, {"point_index": 0, "customdata": [7]},
                   {"point_index": 1}], "point_indices": [3, 0, 1], "box": [], "lasso": []}}))
    assert plots.selected_indices(event) == [42, 7]
    assert plots.selected_indices(serde.deserialize(None)) == []
    assert plots.selected_indices(None) == []
    fig = plots.latent_scatter(np.zeros((5, 2)), np.array([0, 1, 0, 1, 1]))
    assert sorted(int(i) for trace in fig.data for i in trace.customdata) == list(range(5))  # what a click returns


# ---------------------------------------------------------------- the VAE page
def test_vae_page_trains_with_the_beta_slider_and_draws_every_view():
    at = _page("vae")
    assert "cfg.vae.beta" not in {w.key for w in at.number_input}  # beta is the page's slider, not a form field
    at.slider(key="cfg.vae.beta").set_value(2.0).run()
    lengths = train_to_the_end(at, "vae")
    session = session_of(at, "vae")
    assert lengths[-1] > lengths[0]  # the history grew: the run trained in its worker
    assert session.trainer.config.beta == 2.0 and at.slider(key="cfg.vae.beta").disabled
    for row in session.history:
        assert row["total"] == pytest.approx(row["reconstruction"] + 2.0 * row["kl"], rel=1e-4)

    assert any("−ELBO when β = 1" in c.value and "β = 2" in c.value for c in at.caption)
    table = next(m.value for m in at.markdown if "ELBO = −(reconstruction + kl)" in m.value)
    assert "| train |" in table and "| test |" in table
    assert "(\\beta = 1:\\ \\texttt{total} = -\\mathrm{ELBO})" in " ".join(x.value for x in at.latex)
    assert any("z^{(l)} = \\mu + \\sigma \\odot \\varepsilon" in x.value for x in at.latex)

    chart = _chart(at, "Posterior means of 1,000 test images")
    assert len(chart_spec(chart)["data"]) == 10  # one trace per digit
    assert sorted(_customdata(chart)) == list(range(1000))  # every test image, each with its row index
    captions = image_captions(at)
    for start in ("Top to bottom: test images, reconstructions", "Picked: test image #0", "Manifold: each tile",
                  "Decoded z = τ · ε", "Left: test image A", "Left: test image #0", "Row k sweeps z_k"):
        assert any(c.startswith(start) for c in captions), start
    assert generation.manifold_grid(session.model, 6, session.data.image_shape).shape == (6 * 28, 6 * 28)

    traversal = [s for s in at.slider if s.key and s.key.startswith("vae.trav.")]
    assert len(traversal) == 2  # one slider per latent dimension
    traversal[0].set_value(2.5).run()
    no_exception(at)
    assert any("the sliders' z = (2.50, " in c for c in image_captions(at))
    at.slider(key="vae.temperature").set_value(0.5).run()
    at.button(key="vae.regenerate").click().run()
    assert any("τ = 0.5 (draw #1" in c for c in image_captions(at))

    _click_point(at, _chart(at, "Posterior means"), 37)  # a click on the map picks test image #37
    no_exception(at)
    label = int(session.data.test.labels[37])
    assert any(c.startswith(f"Picked: test image #37 (a {label})") for c in image_captions(at))

    at.button(key="panel.vae.save").click().run()  # beta travels with the checkpoint back into the slider
    stop_reset(at, "vae")
    at.slider(key="cfg.vae.beta").set_value(0.5).run()
    assert not at.slider(key="cfg.vae.beta").disabled
    at.button(key="panel.vae.load").click().run()
    no_exception(at)
    assert session.config.beta == 2.0 and at.slider(key="cfg.vae.beta").value == 2.0


def test_vae_page_draws_a_tsne_map_and_one_traversal_slider_per_dimension_for_a_wider_latent():
    at = _page("vae", latent_dim=3)
    at.run()
    train_to_the_end(at, "vae")
    session = session_of(at, "vae")
    assert not [c for c in at.get("plotly_chart") if "Posterior means" in c.proto.spec]  # no 2-D map for d = 3
    assert len([s for s in at.slider if s.key and s.key.startswith("vae.trav.")]) == 3
    at.select_slider(key="vae.tsne_n").set_value(500).run()
    at.button(key="vae.tsne_draw").click().run()
    no_exception(at)
    chart = _chart(at, f"t-SNE of 500 test codes (step {session.step})")
    assert sorted(_customdata(chart)) == list(range(500))
    _click_point(at, chart, 4)  # point 4 of 500 evenly spaced test images is test image #8
    assert any(c.startswith("Picked: test image #8 ") for c in image_captions(at))


def test_traversal_sliders_start_at_the_code_of_the_weights_drawn_now_and_the_estimator_chart_shows():
    """The sliders kept the code of their first drawing (an early step): a finished run decoded another digit."""
    at = _page("vae")
    fill_form(at, "vae", {"epochs": 20})
    at.run()
    at.button(key="panel.vae.start").click().run()
    wait_for(at, "vae", lambda s: s.step > 0, "the first steps")
    at.toggle(key="panel.vae.explore_live").set_value(True).run()  # the page's views, drawn at an early step
    early = [s.value for s in at.slider if s.key and s.key.startswith("vae.trav.")]
    assert early
    session = session_of(at, "vae")
    run_until_stopped(at, "vae")  # the page after the last step
    no_exception(at)
    x = session.data.test.images[0]
    code = inference.encode_dataset(session.model, x[None])[0]  # (2,) the finished model's mu
    sliders = [s for s in at.slider if s.key and s.key.startswith("vae.trav.")]
    assert [s.value for s in sliders] == pytest.approx([float(np.clip(c, -4, 4)) for c in code], abs=0.05)
    assert early != [s.value for s in sliders]
    chart = _chart(at, "Variance of a one-draw estimate of the encoder's gradient")
    names = [trace["name"] for trace in chart_spec(chart)["data"]]
    assert names == ["reparameterised", "score function", "score function + baseline"]
    assert any("the score function's is" in c.value for c in at.caption)


# ---------------------------------------------------------------- the conditional VAE page
def test_cvae_page_trains_and_draws_its_map_the_digit_style_grid_and_one_digits_samples():
    at = _page("cvae")
    at.run()
    lengths = train_to_the_end(at, "cvae")
    session = session_of(at, "cvae")
    assert lengths[-1] > lengths[0]  # the history grew: the run trained in its worker
    assert any("\\mathbb{E}_{q(z\\mid x, y)}" in x.value for x in at.latex)
    assert any("−ELBO when β = 1" in c.value for c in at.caption)

    chart = _chart(at, "Posterior means given the true labels")
    assert sorted(_customdata(chart)) == list(range(1000))
    captions = image_captions(at)
    for start in ("Picked: test image #0", "The same μ decoded with each label", "Digit x style",
                  "32 samples of the digit 0", "The style manifold of the digit 0"):
        assert any(c.startswith(start) for c in captions), start

    at.segmented_control(key="cvae.digit").set_value(7).run()
    at.slider(key="cvae.n_styles").set_value(5).run()
    no_exception(at)
    captions = image_captions(at)
    assert any(c.startswith("32 samples of the digit 7") for c in captions)
    assert any(c.startswith("The style manifold of the digit 7") for c in captions)
    grid = generation.digit_style_grid(session.model, 5)
    assert grid.shape == (10 * 5, 28 * 28)
    assert not np.allclose(grid[:5], grid[5:10])  # the trained decoder listens to the label

    _click_point(at, _chart(at, "given the true labels"), 12)
    label = int(session.data.test.labels[12])
    assert any(c.startswith(f"Picked: test image #12 (a {label}) · its decoding from μ given y = {label}")
               for c in image_captions(at))
