"""vaelab.plots: figures carry the expected traces, names, styles and data."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import distributions as dist

from vaelab import plots

HISTORY = [
    {"kind": "train", "step": 10, "epoch": 0.5, "time": 1.0, "samples_per_s": 900.0,
     "reconstruction": 200.0, "kl": 5.0, "total": 205.0},
    {"kind": "train", "step": 20, "epoch": 1.0, "time": 2.0, "samples_per_s": 950.0,
     "reconstruction": 150.0, "total": 150.0},  # no kl in this row
    {"kind": "test", "step": 20, "epoch": 1.0, "time": 2.1, "reconstruction": 160.0, "kl": 6.0, "total": 166.0},
    {"kind": "train", "step": 30, "epoch": 1.5, "time": 3.0, "samples_per_s": 940.0,
     "reconstruction": 120.0, "kl": float("nan"), "total": 127.0},
]


def by_name(fig: go.Figure) -> dict[str, go.BaseTraceType]:
    return {t.name: t for t in fig.data}


# ---------------------------------------------------------------- loss curves
def test_loss_curves_one_line_per_term_and_split():
    fig = plots.loss_curves(HISTORY)
    traces = by_name(fig)
    assert set(traces) == {"train · reconstruction", "test · reconstruction", "train · kl", "test · kl",
                           "train · total", "test · total"}
    assert list(traces["train · reconstruction"].x) == [0.5, 1.0, 1.5]
    assert list(traces["train · reconstruction"].y) == [200.0, 150.0, 120.0]
    assert list(traces["train · kl"].x) == [0.5]  # the row without kl and the NaN are skipped
    assert traces["test · kl"].line.dash == "dash" and "markers" in traces["test · kl"].mode
    assert traces["train · kl"].line.dash is None and traces["train · kl"].mode == "lines"
    assert traces["train · kl"].line.color == traces["test · kl"].line.color
    assert [traces[f"train · {t}"].line.color for t in ("reconstruction", "kl", "total")] == list(plots.PALETTE[:3])
    bottom = fig.layout.xaxis2  # kl (~5) is 30x smaller than the total (~150): a second panel below
    assert bottom.title.text == "epoch" and fig.layout.yaxis.type == "linear"


def test_loss_curves_give_a_term_much_smaller_than_the_total_its_own_panel():
    history = [{"kind": kind, "epoch": e, "reconstruction": 100.0 - e, "contractive": 1.0 + 0.1 * e,
                "total": 101.0 - 0.9 * e} for e in range(1, 6) for kind in ("train", "test")]
    fig = plots.loss_curves(history, log_y=True)
    panel = {t.name: t.yaxis for t in fig.data}
    assert panel["train · reconstruction"] == panel["test · total"] == "y"  # within 10x: one panel
    assert panel["train · contractive"] == panel["test · contractive"] == "y2"  # ~100x smaller: its own
    assert fig.layout.yaxis.title.text == "loss per image" and fig.layout.yaxis2.title.text == "contractive"
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"  # one shared epoch axis
    assert fig.layout.yaxis.type == fig.layout.yaxis2.type == "log"  # the log toggle reaches every panel
    assert fig.layout.yaxis.domain[0] > fig.layout.yaxis2.domain[1]  # the total's panel on top
    assert fig.layout.height > plots.LOSS_HEIGHT
    contractive = np.asarray(by_name(fig)["train · contractive"].y)
    lo, hi = contractive.min(), contractive.max()
    assert (hi - lo) / hi > 0.2  # drawn on its own range, the term's change is visible


def test_term_panels_group_terms_within_ten_times_and_keep_empty_terms_with_the_total():
    history = [{"kind": "train", "epoch": 1, "reconstruction": 80.0, "kl": 25.0, "sparsity": 2.0, "tiny": 0.01,
                "zero": 0.0, "total": 107.0}]
    assert plots.term_panels(history, ["reconstruction", "kl", "sparsity", "tiny", "zero", "missing", "total"]) == [
        ["reconstruction", "kl", "zero", "missing", "total"], ["sparsity"], ["tiny"]]
    assert plots.term_panels([], ["total"]) == [["total"]] and plots.term_panels([], []) == [[]]
    assert plots.term_scale(history, "kl") == 25.0 and plots.term_scale(history, "missing") == 0.0


def test_loss_curves_selected_terms_and_log_axis():
    fig = plots.loss_curves(HISTORY, terms=["kl"], log_y=True)
    assert [t.name for t in fig.data] == ["train · kl", "test · kl"]
    assert fig.layout.yaxis.type == "log"


def test_loss_curves_of_an_empty_history_is_a_valid_empty_figure():
    fig = plots.loss_curves([])
    assert len(fig.data) == 0
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.yaxis.title.text
    assert json.loads(fig.to_json())["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert list(fig.layout.xaxis.range) == [0, 1] and list(fig.layout.yaxis.range) == [0, 1]  # no negative loss
    one_row = plots.loss_curves([{"kind": "train", "epoch": 0.5, "step": 1, "total": 300.0}])
    assert one_row.layout.xaxis.range is None and one_row.layout.yaxis.range is None  # the data sets the axes


def test_loss_curves_smoothing_is_a_debiased_moving_average():
    values = [10.0, 4.0, 7.0, 1.0]
    history = [{"kind": "train", "epoch": i, "total": v} for i, v in enumerate(values)]
    w = 0.6
    y = plots.loss_curves(history, smooth=w).data[0].y
    for t in range(len(values)):  # sum_i w^(t-i) v_i / sum_i w^(t-i)
        weights = np.array([w ** (t - i) for i in range(t + 1)])
        assert y[t] == pytest.approx(float(weights @ values[:t + 1] / weights.sum()))
    assert list(plots.loss_curves(history).data[0].y) == values
    with pytest.raises(ValueError, match="smooth"):
        plots.loss_curves(history, smooth=1.0)


# ---------------------------------------------------------------- images
def test_image_row_grid_draws_rows_with_titles():
    rng = np.random.default_rng(0)
    rows = [rng.random((4, 6)), rng.random((4, 6)), rng.random((3, 6))]  # 2x3 images
    fig = plots.image_row_grid(rows, ["original", "corrupted", "reconstruction"], (2, 3))
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    z = np.asarray(fig.data[0].z)
    sep = 2
    assert z.shape == (3 * 2 + 2 * sep, 4 * 3 + 3 * sep)
    np.testing.assert_array_equal(z[2 + sep:4 + sep, 3 + sep:6 + sep],
                                  np.rint(rows[1][1].reshape(2, 3) * 255))  # row 1, column 1
    assert list(fig.layout.yaxis.ticktext) == ["original", "corrupted", "reconstruction"]
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.xaxis.visible is False
    with pytest.raises(ValueError, match="row_titles"):
        plots.image_row_grid(rows, ["a", "b"], (2, 3))
    with pytest.raises(ValueError, match="rows"):
        plots.image_row_grid([rng.random((2, 5))], ["a"], (2, 3))


def test_image_figure_is_one_grey_heatmap_of_the_array():
    a = np.linspace(0, 1, 12).reshape(3, 4)
    fig = plots.image_figure(a, title="filters")
    (trace,) = fig.data
    np.testing.assert_array_equal(np.asarray(trace.z), np.rint(a * 255))
    assert trace.zmin == 0 and trace.zmax == 255 and trace.showscale is False
    ends = [c.replace(" ", "") for _, c in (trace.colorscale[0], trace.colorscale[-1])]
    assert ends == ["rgb(0,0,0)", "rgb(255,255,255)"]  # black to white
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.title.text == "filters"
    with pytest.raises(ValueError, match="2-D"):
        plots.image_figure(np.zeros((2, 2, 2)))


# ---------------------------------------------------------------- latent maps
def test_latent_scatter_one_trace_per_digit_with_indices():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(50, 2))
    labels = np.arange(50) % 10
    fig = plots.latent_scatter(points, labels, title="codes", axis_titles=("t-SNE 1", "t-SNE 2"))
    assert [t.name for t in fig.data] == [str(d) for d in range(10)]
    assert len({t.marker.color for t in fig.data}) == 10
    for trace in fig.data:
        idx = np.asarray(trace.customdata)
        assert (labels[idx] == int(trace.name)).all()
        np.testing.assert_allclose(np.c_[trace.x, trace.y], points[idx], rtol=1e-6)
    assert sorted(np.concatenate([np.asarray(t.customdata) for t in fig.data]).tolist()) == list(range(50))
    assert fig.layout.xaxis.title.text == "t-SNE 1"
    named = plots.latent_scatter(points, labels, label_names=[f"class {d}" for d in range(10)])
    assert named.data[3].name == "class 3"
    assert len(plots.latent_scatter(points).data) == 1


def test_add_ellipses_adds_one_trace_each_with_one_legend_entry():
    fig = plots.latent_scatter(np.zeros((4, 2)), [0, 1, 0, 1])
    outlines = [np.c_[np.cos(np.linspace(0, 6.3, 20)), np.sin(np.linspace(0, 6.3, 20))] + k for k in range(3)]
    plots.add_ellipses(fig, outlines)
    assert len(fig.data) == 2 + 3
    assert [t.showlegend for t in fig.data[2:]] == [True, False, False]
    np.testing.assert_allclose(fig.data[4].x, outlines[2][:, 0])


# ---------------------------------------------------------------- sparse autoencoder
def test_activation_histogram_marks_rho():
    fig = plots.activation_histogram(np.array([0.1, 0.2, 0.05]), rho=0.25)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Histogram)
    assert [s.x0 for s in fig.layout.shapes] == [0.25]
    assert fig.layout.xaxis.rangemode == "tozero"  # the axis starts at 0, so rho's line and label stand clear of it
    assert len(plots.activation_histogram(np.array([0.1])).layout.shapes) == 0


def _kl_curve(rho: float, x: np.ndarray) -> np.ndarray:
    return dist.kl_divergence(dist.Bernoulli(probs=torch.full(x.shape, rho, dtype=torch.float64)),
                              dist.Bernoulli(probs=torch.from_numpy(x))).numpy()


def test_kl_bernoulli_figure_puts_units_on_the_curve():
    rho = 0.25
    curve_x = np.linspace(0.01, 0.99, 50)
    units = np.array([0.05, 0.25, 0.6])
    fig = plots.kl_bernoulli_figure(rho, curve_x, _kl_curve(rho, curve_x), unit_rho_hats=units)
    assert len(fig.data) == 2
    np.testing.assert_allclose(fig.data[1].y, _kl_curve(rho, units), rtol=1e-9, atol=1e-12)
    assert len(plots.kl_bernoulli_figure(rho, curve_x, _kl_curve(rho, curve_x)).data) == 1


def test_kl_bernoulli_figure_draws_the_training_rho_first_and_a_compared_rho_lighter():
    rho, other = 0.05, 0.25
    curve_x = np.linspace(0.005, 0.995, 199)
    units = np.array([0.03, 0.05, 0.08, 0.12])
    fig = plots.kl_bernoulli_figure(rho, curve_x, _kl_curve(rho, curve_x), unit_rho_hats=units,
                                    compare=(other, curve_x, _kl_curve(other, curve_x)))
    first, second, markers = fig.data
    assert "0.05" in first.name and "training" in first.name and fig.layout.title.text.endswith("ρ = 0.05")
    np.testing.assert_allclose(first.y, _kl_curve(rho, curve_x))
    assert "0.25" in second.name and second.line.dash == "dot" and second.line.width < first.line.width
    np.testing.assert_allclose(markers.y, _kl_curve(rho, units), rtol=1e-9, atol=1e-12)  # on the training curve
    assert [s.x0 for s in fig.layout.shapes] == [rho]
    # the view opens on the small rho's valley (and the compared rho), not the whole of (0, 1)
    x_max = fig.layout.xaxis.range[1]
    assert 1.25 * other <= x_max < 0.5
    visible = np.r_[_kl_curve(rho, curve_x), _kl_curve(other, curve_x)][np.r_[curve_x, curve_x] <= x_max]
    assert fig.layout.yaxis.range[1] == pytest.approx(1.08 * visible.max())
    same = plots.kl_bernoulli_figure(rho, curve_x, _kl_curve(rho, curve_x), compare=(rho, curve_x, curve_x))
    assert len(same.data) == 1  # comparing rho with itself adds nothing


# ---------------------------------------------------------------- generic charts
def test_bar_and_line_charts():
    bar = plots.bar_chart(["reconstruction", "sparsity"], [80.0, 4.0], title="share")
    assert list(bar.data[0].x) == ["reconstruction", "sparsity"] and list(bar.data[0].y) == [80.0, 4.0]
    line = plots.line_chart([0.1, 0.2, 0.3], {"contractive": [1, 2, 3], "plain": [2, 4, 6]}, x_title="eps",
                            log_y=True)
    assert [t.name for t in line.data] == ["contractive", "plain"]
    assert list(line.data[1].y) == [2, 4, 6] and line.layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="plain"):
        plots.line_chart([0.1, 0.2], {"plain": [1.0]})
    with pytest.raises(ValueError, match="values"):
        plots.bar_chart(["a"], [1.0, 2.0])


# ---------------------------------------------------------------- one colour-blind-safe palette
def test_one_colour_blind_safe_palette_colours_digits_and_lines():
    from plotly.colors import qualitative

    assert sorted(plots.PALETTE) == sorted(qualitative.Safe) and len(set(plots.PALETTE)) == 11
    digits = plots.latent_scatter(np.zeros((10, 2)), np.arange(10))
    assert [t.marker.color for t in digits.data] == list(plots.PALETTE[:10]) == list(plots.CLASS_COLORS)
    lines = plots.line_chart([0, 1], {"a": [1, 2], "b": [2, 3], "c": [3, 4]})
    assert [t.line.color for t in lines.data] == list(plots.PALETTE[:3])
    history = [{"kind": "train", "epoch": 1, "a": 1.0, "b": 2.0}]
    assert [t.line.color for t in plots.train_curves(history, {"a": "A", "b": "B"}).data] == list(plots.PALETTE[:2])
    compared = plots.compare_loss_curves({"m1": history, "m2": history}, "a", kinds=("train",))
    assert [t.line.color for t in compared.data] == list(plots.PALETTE[:2])
    bars = plots.bar_chart(["x", "y"], [1.0, 2.0])
    assert list(bars.data[0].marker.color) == list(plots.PALETTE[:2])


def test_drawn_codes_differ_from_the_digit_dots_in_shape_and_colour():
    fig = plots.latent_scatter(np.zeros((10, 2)), np.arange(10))
    plots.add_points(fig, np.ones((3, 2)), "mixture", **plots.MIXTURE_DRAWS)
    plots.add_points(fig, np.ones((3, 2)), "normal", **plots.NORMAL_DRAWS)
    digits, mixture, normal = fig.data[:10], fig.data[10], fig.data[11]
    symbols = {digits[0].marker.symbol or "circle", mixture.marker.symbol, normal.marker.symbol}
    assert len(symbols) == 3  # three shapes: dots, diamonds, crosses
    assert {t.marker.symbol for t in digits} == {digits[0].marker.symbol}
    for drawn in (mixture, normal):
        assert drawn.marker.color not in plots.CLASS_COLORS and drawn.marker.size > digits[0].marker.size
        assert drawn.marker.line.color != drawn.marker.color  # an outline that shows over the dots
    assert mixture.marker.color != normal.marker.color


# ---------------------------------------------------------------- the true posterior and the ELBO gap
def _log_gaussian_grid(z1: np.ndarray, z2: np.ndarray, mean: tuple[float, float], std: tuple[float, float]):
    """log N(z; mean, diag std^2) on the grid, [i, j] at (z1[i], z2[j]), by torch.distributions."""
    points = torch.cartesian_prod(torch.as_tensor(z1), torch.as_tensor(z2))
    normal = dist.Independent(dist.Normal(torch.tensor(mean, dtype=torch.float64),
                                          torch.tensor(std, dtype=torch.float64)), 1)
    return normal.log_prob(points).reshape(len(z1), len(z2)).numpy()


def test_axis_ellipse_is_the_k_sd_contour_of_a_diagonal_gaussian():
    e = plots.axis_ellipse([1.0, -2.0], [0.5, 2.0], 2.0)
    assert e.shape == (120, 2)
    np.testing.assert_allclose(((e[:, 0] - 1.0) / 0.5) ** 2 + ((e[:, 1] + 2.0) / 2.0) ** 2, 4.0)
    np.testing.assert_allclose(e[0], e[-1])  # closed
    assert e[:, 0].max() == pytest.approx(2.0) and e[:, 1].min() == pytest.approx(-6.0, abs=1e-3)


def test_posterior_heatmap_draws_the_clipped_log_posterior_with_z1_across_and_qs_ellipses():
    z1, z2 = np.linspace(-3, 3, 30), np.linspace(-2, 4, 20)  # unequal axes: a transpose would show
    lp = _log_gaussian_grid(z1, z2, (0.5, 1.0), (0.4, 0.9))
    fig = plots.posterior_heatmap([z1, z2], lp, [0.3, 1.2], [0.2, 0.5], title="t")
    heat = fig.data[0]
    assert isinstance(heat, go.Heatmap) and heat.colorscale[0][1] == go.Heatmap(colorscale="Viridis").colorscale[0][1]
    np.testing.assert_allclose(heat.x, z1)
    np.testing.assert_allclose(heat.y, z2)
    top = lp.max()
    np.testing.assert_allclose(np.asarray(heat.z), np.maximum(lp, top - plots.POSTERIOR_LOG_RANGE).T)
    assert heat.zmax == pytest.approx(top) and heat.zmin == pytest.approx(top - 10.0)
    traces = by_name(fig)
    for k in (1, 2):
        e = traces[f"q(z|x): μ ± {k}σ"]
        np.testing.assert_allclose(((np.asarray(e.x) - 0.3) / 0.2) ** 2 + ((np.asarray(e.y) - 1.2) / 0.5) ** 2, k * k)
    assert traces["q(z|x): μ ± 2σ"].line.dash == "dash"
    assert list(traces["μ of q(z|x)"].x) == [0.3] and list(traces["μ of q(z|x)"].y) == [1.2]
    assert list(fig.layout.xaxis.range) == pytest.approx([z1[0] - 3 / 29, z1[-1] + 3 / 29])  # whole cells
    with pytest.raises(ValueError, match="axis 0 = z1"):
        plots.posterior_heatmap([z1, z2], lp.T, [0, 0], [1, 1])


def test_posterior_curve_draws_the_posterior_density_beside_q():
    z = np.linspace(-5, 5, 401)
    lp = dist.Normal(torch.tensor(1.0, dtype=torch.float64), 0.5).log_prob(torch.as_tensor(z)).numpy()
    fig = plots.posterior_curve(z, lp, -0.5, 0.8)
    traces = by_name(fig)
    np.testing.assert_allclose(traces["p(z|x), exact"].y, np.exp(lp))
    q = dist.Normal(torch.tensor(-0.5, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64))
    expected_q = q.log_prob(torch.as_tensor(z)).exp().numpy()
    np.testing.assert_allclose(traces["q(z|x), the encoder"].y, expected_q, rtol=1e-12)


def test_importance_bound_figure_draws_means_with_standard_errors_below_the_exact_line():
    draws = {1: [-105.0, -103.0, -104.0, -108.0], 10: [-101.5, -101.0, -101.3], 1000: [-100.2, -100.1]}
    fig = plots.importance_bound_figure(draws, -100.0, title="bound")
    traces = by_name(fig)
    mean = traces["mean ± 1 s.e."]
    assert list(mean.x) == [1, 10, 1000]
    np.testing.assert_allclose(mean.y, [np.mean(draws[k]) for k in (1, 10, 1000)])
    np.testing.assert_allclose(mean.error_y.array, [np.std(draws[k], ddof=1) / np.sqrt(len(draws[k]))
                                                    for k in (1, 10, 1000)])
    assert sorted(traces["one draw"].y) == sorted(v for d in draws.values() for v in d)
    assert list(traces["exact log p(x)"].y) == [-100.0, -100.0]
    assert fig.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="at least one K"):
        plots.importance_bound_figure({}, 0.0)


def test_gap_curve_and_kl_per_dimension_figures():
    fig = plots.gap_curve([10, 20, 40], [3.0, 2.0, 1.5], title="gap")
    assert list(fig.data[0].x) == [10, 20, 40] and list(fig.data[0].y) == [3.0, 2.0, 1.5]
    with pytest.raises(ValueError, match="one per step"):
        plots.gap_curve([1, 2], [1.0])
    fig = plots.kl_per_dimension([2.0, 0.001, 1.0], [0.5, 0.0001, 0.02], 0.01)
    active, inactive = fig.data
    assert list(active.x) == ["z1", "z3"] and list(active.y) == [2.0, 1.0]
    assert list(inactive.x) == ["z2"] and list(inactive.y) == [0.001]
    assert active.marker.color == plots.ACTIVE_COLOR and inactive.marker.color == plots.INACTIVE_COLOR
    assert list(fig.layout.xaxis.categoryarray) == ["z1", "z2", "z3"]  # bars stay in dimension order
    with pytest.raises(ValueError, match="one per dimension"):
        plots.kl_per_dimension([1.0], [1.0, 2.0], 0.01)


def test_density_pair_shares_one_colour_scale_and_draws_z1_across():
    axis = np.linspace(-1, 1, 5)
    left = np.outer(np.arange(5), np.ones(5))  # grows along z1 (axis 0)
    right = np.full((5, 5), 0.5)
    fig = plots.density_pair(axis, left, right)
    a, b = fig.data
    assert a.coloraxis == b.coloraxis == "coloraxis"
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 4.0
    np.testing.assert_allclose(np.asarray(a.z), left.T)  # rows are z2: values grow across
    assert a.xaxis == "x" and b.xaxis == "x2"
    assert plots.density_pair(axis, left, right, zmax=1.0).layout.coloraxis.cmax == 1.0
    with pytest.raises(ValueError, match="right: expected shape"):
        plots.density_pair(axis, left, right[:4])
