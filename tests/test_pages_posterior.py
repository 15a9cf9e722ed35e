"""The ELBO gap on the VAE page (vaelab/ui/posterior_views.py): the picked image's exact posterior, log p(x) = ELBO +
gap, the importance-weighted bound against K, the mean gap, the KL per dimension and the aggregate posterior, each
checked against an independent computation (vaelab.posterior run again, torch.distributions, Monte-Carlo draws).

One tiny VAE is trained on scikit-learn's 8x8 digits through the page's panel and shared by the page tests (a
module fixture); the pure computations are checked on small untrained models.
"""

from __future__ import annotations

import math
import re
import runpy

import numpy as np
import pytest
import torch
from streamlit.runtime.scriptrunner import script_runner
from torch import distributions as dist

from tests.helpers import (
    all_captions,
    chart_spec,
    chart_specs,
    chart_title,
    click_point,
    fill_form,
    no_exception,
    open_page,
    plotly_array,
    plotly_grid,
    session_of,
    stop_reset,
    train_to_the_end,
)
from vaelab import posterior
from vaelab.analysis import inference
from vaelab.ui import posterior_views as pv
from vaelab.variants import build_model, get_variant

PICKED = 37  # the test image clicked on the latent map
EQUATION = re.compile(r"log p\(x\) = ELBO \+ gap:\s+(-?\d+\.\d\d) = (-?\d+\.\d\d) \+ (-?\d+\.\d\d) nats "
                      r"\(exact by quadrature on a (\d+) × \d+ grid, error < 0\.01 nat\)")


# ---------------------------------------------------------------- helpers
def _page(latent_dim: int, epochs: int):
    """The VAE page on the digits with a tiny model typed into the form, trained to the end."""
    at = open_page("pages/vae.py")
    at.selectbox(key="vaelab.dataset").set_value("digits").run()
    fill_form(at, "vae", {"hidden_sizes": "32", "latent_dim": latent_dim, "epochs": epochs, "batch_size": 50})
    at.run()
    train_to_the_end(at, "vae")
    no_exception(at)
    return at


def _spec(at, title_part: str) -> dict:
    found = [s for s in chart_specs(at) if title_part in chart_title(s)]
    assert found, f"no chart titled with {title_part!r}: {[chart_title(s) for s in chart_specs(at)]}"
    return found[-1]


def _traces(spec: dict) -> dict[str, dict]:
    return {t.get("name"): t for t in spec["data"]}


def _model_and_inputs(at):
    session = session_of(at, "vae")
    return session, session.model, pv.model_test_inputs(session)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The page after training a 2-D VAE (3 epochs, chunks of 10 steps, so the views redraw while it trains) and a
    click on test image #37. The function-scoped patches of conftest do not reach a module fixture: set them here."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(script_runner, "_mpa_v1", lambda main_script_path: runpy.run_path(
            main_script_path, run_name="__main__"))
        mp.setenv("VAELAB_CHECKPOINT_DIR", str(tmp_path_factory.mktemp("checkpoints")))
        at = _page(latent_dim=2, epochs=3)
        chart = next(c for c in at.get("plotly_chart") if "Posterior means" in chart_title(chart_spec(c)))
        click_point(at, chart, PICKED)
        no_exception(at)
        yield at


# ---------------------------------------------------------------- the picked image
def test_the_picked_images_line_reads_log_px_equals_elbo_plus_gap_as_computed_by_quadrature(trained):
    _, model, inputs = _model_and_inputs(trained)
    assert any(h.value.startswith(f"The true posterior of test image #{PICKED} ") for h in trained.subheader)
    lines = [m.value for m in trained.markdown if "ELBO + gap:" in m.value]
    assert len(lines) == 1
    log_px, elbo, gap, points = EQUATION.search(lines[0]).groups()
    log_px, elbo, gap = float(log_px), float(elbo), float(gap)
    assert log_px == pytest.approx(elbo + gap, abs=1e-9)  # the line adds up as printed
    exact = posterior.model_posterior(model, inputs[PICKED])
    assert log_px == pytest.approx(exact.log_px, abs=0.005) and elbo == pytest.approx(exact.elbo, abs=0.005)
    assert gap == pytest.approx(exact.gap, abs=0.011) and gap >= -0.01  # KL(q || p(z|x)) >= 0
    assert int(points) == exact.points


def test_the_heat_map_is_the_grid_posterior_with_qs_ellipses(trained):
    _, model, inputs = _model_and_inputs(trained)
    exact = posterior.model_posterior(model, inputs[PICKED])
    spec = _spec(trained, "p(z|x) and q(z|x)")
    heat = spec["data"][0]
    assert heat["type"] == "heatmap"
    np.testing.assert_allclose(plotly_array(heat["x"]), exact.axes[0].numpy())  # z1 across
    np.testing.assert_allclose(plotly_array(heat["y"]), exact.axes[1].numpy())  # z2 up
    lp = exact.log_posterior.numpy()
    np.testing.assert_allclose(plotly_grid(heat["z"]), np.maximum(lp, lp.max() - 10.0).T, atol=1e-9)
    with torch.no_grad():
        mu, logvar = model.posterior(inputs[PICKED][None])
    sigma = (0.5 * logvar).exp()[0].double().numpy()
    traces = _traces(spec)
    for k in (1, 2):
        e = traces[f"q(z|x): μ ± {k}σ"]
        x, y = plotly_array(e["x"]), plotly_array(e["y"])
        u, v = (x - float(mu[0, 0])) / sigma[0], (y - float(mu[0, 1])) / sigma[1]
        np.testing.assert_allclose(u ** 2 + v ** 2, k * k, rtol=1e-5)
    # the posterior's mass lies in the drawn grid: the density sums to 1 over its cells
    cell = float(exact.axes[0][1] - exact.axes[0][0]) * float(exact.axes[1][1] - exact.axes[1][0])
    assert float(np.exp(lp).sum() * cell) == pytest.approx(1.0, abs=0.02)


def test_the_importance_weighted_bound_stays_below_the_exact_line_within_monte_carlo_error(trained):
    _, model, inputs = _model_and_inputs(trained)
    exact = posterior.model_posterior(model, inputs[PICKED]).log_px
    traces = _traces(_spec(trained, "Importance-weighted bound"))
    assert list(plotly_array(traces["exact log p(x)"]["y"])) == pytest.approx([exact, exact], abs=1e-9)
    mean = traces["mean ± 1 s.e."]
    ks, means = plotly_array(mean["x"]), plotly_array(mean["y"])
    errors = plotly_array(mean["error_y"]["array"])
    assert list(ks) == [1, 10, 100, 1000]
    assert np.all(means <= exact + 3 * errors + posterior.TOLERANCE), (exact - means, errors)
    assert means[-1] > means[0] and exact - means[-1] < exact - means[0]  # closes in as K grows
    draws = pv.importance_draws(model, inputs[PICKED])  # the same seeded draws
    np.testing.assert_allclose(means, [draws[k].mean() for k in (1, 10, 100, 1000)])
    assert [len(draws[k]) for k in (1, 10, 100, 1000)] == list(pv.IS_REPEATS.values())


# ---------------------------------------------------------------- across the test set
def test_the_mean_gap_is_the_mean_of_exact_gaps_over_fixed_test_images(trained):
    session, model, inputs = _model_and_inputs(trained)
    idx = inference.spaced_indices(len(inputs), pv.GAP_IMAGES)
    expected = np.mean([posterior.model_posterior(model, inputs[i]).gap for i in idx])
    curve = session.run_views["vae.gap_curve"]
    assert curve.version == session.version and curve.job_model is None
    assert curve.points[session.step] == pytest.approx(expected, abs=1e-9)
    assert all(step <= session.step for step in curve.points)
    metric = next(m for m in trained.metric if m.label.startswith("Mean gap over"))
    assert metric.label == f"Mean gap over {pv.GAP_IMAGES} test images, step {session.step:,}"
    assert metric.value == f"{expected:.2f} nats"
    if len(curve.points) > 1:  # points came in while it trained: the curve is drawn from them
        line = _spec(trained, "Mean gap against the step")["data"][0]
        assert list(plotly_array(line["x"])) == sorted(curve.points)


def test_kl_bars_equal_the_closed_form_kl_per_dimension_averaged_over_the_images(trained):
    _, model, inputs = _model_and_inputs(trained)
    x = inputs[inference.spaced_indices(len(inputs), min(pv.SUMMARY_IMAGES, len(inputs)))]
    with torch.no_grad():
        mu, logvar = model.posterior(x)
    q = dist.Normal(mu.double(), (0.5 * logvar.double()).exp())
    expected = dist.kl_divergence(q, dist.Normal(0.0, 1.0)).mean(dim=0).numpy()  # (d,)
    variances = mu.double().var(dim=0, unbiased=True).numpy()
    spec = _spec(trained, "KL per dimension")
    drawn, active = {}, {}
    for trace in spec["data"]:
        for name, value in zip(trace["x"], plotly_array(trace["y"]), strict=True):
            drawn[name], active[name] = value, trace["name"].startswith("active")
    assert list(drawn) == sorted(drawn) and len(drawn) == 2
    np.testing.assert_allclose([drawn["z1"], drawn["z2"]], expected, rtol=1e-6)
    assert [active["z1"], active["z2"]] == list(variances > 0.01)
    n_active = int((variances > 0.01).sum())
    assert f"{n_active} of 2 active, total {expected.sum():.2f} nats" in chart_title(spec)


def test_the_aggregate_posterior_integrates_to_about_one_beside_the_prior(trained):
    _, model, inputs = _model_and_inputs(trained)
    spec = next(s for s in chart_specs(trained) if str(s["data"][0].get("name", "")).startswith("aggregate"))
    q, p = (plotly_grid(t["z"]).T for t in spec["data"])  # back to [z1, z2]
    area = (2 * pv.AGGREGATE_LIMIT / pv.AGGREGATE_CELLS) ** 2
    assert q.shape == p.shape == (pv.AGGREGATE_CELLS, pv.AGGREGATE_CELLS)
    assert float(q.sum() * area) == pytest.approx(1.0, abs=0.02)
    assert float(p.sum() * area) == pytest.approx(math.erf(4 / math.sqrt(2)) ** 2, abs=1e-9)  # N(0, I) in [-4, 4]^2
    assert spec["layout"]["coloraxis"]["cmax"] == pytest.approx(max(q.max(), p.max()))  # one colour scale
    assert any(f"q(z) keeps {q.sum() * area:.1%} of its mass" in c for c in all_captions(trained))
    x = inputs[inference.spaced_indices(len(inputs), min(pv.SUMMARY_IMAGES, len(inputs)))]
    with torch.no_grad():
        mu, logvar = model.posterior(x)
    np.testing.assert_allclose(q, pv.mixture_density(mu, logvar), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("latent_dim", [1, 3])
def test_other_latent_sizes_draw_what_applies(latent_dim):
    at = _page(latent_dim=latent_dim, epochs=1)
    titles = [chart_title(s) for s in chart_specs(at)]
    kl = _spec(at, "KL per dimension")
    assert sum(len(t["x"]) for t in kl["data"]) == latent_dim  # a bar per dimension, any latent size
    assert not [s for s in chart_specs(at) if str(s["data"][0].get("name", "")).startswith("aggregate")]  # 2-D only
    if latent_dim == 1:  # the exact posterior as a curve, and its numbers
        spec = _spec(at, "p(z|x) and q(z|x)")
        assert [t["name"] for t in spec["data"]] == ["p(z|x), exact", "q(z|x), the encoder"]
        assert any("ELBO + gap:" in m.value and "on a grid of" in m.value for m in at.markdown)
    else:
        assert not any("p(z|x) and q(z|x)" in t for t in titles)
        assert any("need a latent of 1 or 2 dimensions (this one has 3)" in c.value for c in at.caption)


# ---------------------------------------------------------------- the computations
def _tiny_vae(latent_dim: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    config = get_variant("vae").config_cls(hidden_sizes=(8,), latent_dim=latent_dim)
    return build_model("vae", config, input_dim=12).eval()


def test_the_importance_weighted_estimate_of_p_x_is_unbiased_and_its_log_below_log_p_x_on_average():
    """What the bound's caption says: (1/K) sum w estimates p(x) without bias (so single draws of the bound can land
    above log p(x)), and its log is below log p(x) in expectation (Jensen); log p(x) by quadrature."""
    model = _tiny_vae(seed=4)
    x = torch.rand(12, generator=torch.Generator().manual_seed(5))
    log_px = posterior.model_posterior(model, x).log_px
    draws = pv.importance_draws(model, x, repeats={1: 4000, 10: 2000})
    for k, logs in draws.items():
        ratio = np.exp(logs.astype(np.float64) - log_px)  # p^ / p(x)
        assert abs(ratio.mean() - 1.0) < 4 * ratio.std() / math.sqrt(len(ratio)), (k, ratio.mean())
        assert logs.mean() < log_px
    assert draws[10].mean() > draws[1].mean()  # closer to log p(x) with more samples


def test_kl_per_dimension_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g)
    expected = dist.kl_divergence(dist.Normal(mu.double(), (0.5 * logvar.double()).exp()),
                                  dist.Normal(0.0, 1.0)).mean(dim=0).numpy()
    np.testing.assert_allclose(pv.kl_per_dimension(mu, logvar), expected, rtol=1e-12)


def test_mixture_density_matches_monte_carlo_draws_from_the_mixture():
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([[0.0, 0.0], [2.0, -1.0], [-3.9, 3.5]], dtype=torch.float64)
    std = torch.tensor([[1.0, 0.5], [0.05, 0.3], [0.4, 0.4]], dtype=torch.float64)  # one narrower than a cell
    density = pv.mixture_density(mu, 2 * std.log(), limit=4.0, cells=8)  # (8, 8), cells of 1 x 1
    n = 200_000
    component = torch.randint(0, 3, (n,), generator=g)
    draws = mu[component] + std[component] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    counts, _, _ = np.histogram2d(draws[:, 0].numpy(), draws[:, 1].numpy(), bins=8, range=[[-4, 4], [-4, 4]])
    share = counts / n  # [i, j]: z1 in cell i, z2 in cell j
    np.testing.assert_allclose(density * 1.0, share, atol=4 * np.sqrt(share.max() / n))  # area 1: mass = density
    prior = pv.prior_density(4.0, 8)
    np.testing.assert_allclose(prior, prior.T)
    np.testing.assert_allclose(prior, prior[::-1])
    assert prior.sum() == pytest.approx(math.erf(4 / math.sqrt(2)) ** 2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        pv.mixture_density(torch.zeros(3, 3), torch.zeros(3, 3))


def test_the_gap_curve_works_on_a_frozen_copy_a_little_at_a_time():
    model = _tiny_vae()
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(0))
    expected = np.mean([posterior.model_posterior(model, row).gap for row in x])
    curve = pv.GapCurve(version=1)
    curve.advance(model, 10, x, None, budget=0.0)  # one image per call at least
    assert curve.job_step == 10 and len(curve.job_gaps) == 1 and not curve.points
    with torch.no_grad():
        model.decoder[0].weight.add_(1.0)  # training moves on: the point stays the one of step 10
    for _ in range(3):
        curve.advance(model, 20, x, None, budget=0.0)
    assert curve.points == {10: pytest.approx(expected, abs=1e-9)} and curve.job_model is None
    curve.advance(model, 20, x, None, budget=float("inf"))  # a new point, at the new step
    assert set(curve.points) == {10, 20} and curve.points[20] != pytest.approx(expected)


def test_the_picked_posterior_follows_a_young_run_closely_and_an_old_one_every_8_s(monkeypatch):
    from types import SimpleNamespace

    from vaelab.ui.session import RUNNING, TrainingSession

    clock = [100.0]
    monkeypatch.setattr(pv.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pv, "picked_posterior", lambda model, x, y: SimpleNamespace(computed_at=clock[0]))
    session = TrainingSession("vae", trainer=SimpleNamespace(step=0, model=None), status=RUNNING)

    def shown(step: int, now: float) -> int:
        """The step of the picked posterior a redraw at ``step``, time ``now``, draws (the views may work)."""
        session.trainer.step, clock[0] = step, now
        return pv._picked_result(session, 0, None, None, may_work=True)[0]

    assert shown(1, 100.0) == 1
    assert shown(2, 101.0) == 2  # the run doubled its steps: again at once, though 1 s old
    assert shown(3, 102.0) == 2  # not yet doubled, not 8 s old: the same picture
    assert shown(40, 102.5) == 40
    assert shown(70, 110.4) == 40  # 7.9 s old
    assert shown(71, 110.5) == 71  # 8 s old
    assert pv._picked_result(session, 0, None, None, may_work=False)[0] == 71  # no work allowed: kept
    session.trainer.step = 500
    assert pv._picked_result(session, 0, None, None, may_work=False)[0] == 71


def test_image_gap_equals_the_gap_of_the_full_grid_posterior():
    model = _tiny_vae(latent_dim=1, seed=2)
    x = torch.rand(12, generator=torch.Generator().manual_seed(3))
    assert pv.image_gap(model, x) == pytest.approx(posterior.model_posterior(model, x).gap, abs=1e-12)


def test_the_views_use_the_test_images_as_the_model_saw_them_in_training():
    from types import SimpleNamespace

    from vaelab.data import binarize
    from vaelab.training import TEST_DRAW_SEED_OFFSET

    images = torch.rand(6, 12, generator=torch.Generator().manual_seed(0))
    test = SimpleNamespace(images=images)

    def session(mode: str):
        return SimpleNamespace(data=SimpleNamespace(test=test), config=SimpleNamespace(binarize=mode),
                               trainer=SimpleNamespace(seed=5), checkpoint=None)

    assert pv.model_test_inputs(session("none")) is images
    assert torch.equal(pv.model_test_inputs(session("static")), (images > 0.5).float())
    draw = binarize(images, "dynamic", generator=torch.Generator().manual_seed(5 + TEST_DRAW_SEED_OFFSET))
    assert torch.equal(pv.model_test_inputs(session("dynamic")), draw)  # the trainer's own test draw


def _modules_in(value, depth: int = 0) -> list[str]:
    """Where torch modules or gap curves are reachable from ``value`` (dicts, lists, objects' fields; 4 levels)."""
    if isinstance(value, torch.nn.Module | pv.GapCurve):
        return [type(value).__name__]
    if depth >= 4:
        return []
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list | tuple):
        children = list(value)
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("vaelab"):
        children = list(vars(value).values())
    else:
        return []
    return [found for child in children for found in _modules_in(child, depth + 1)]


def test_stop_reset_drops_what_the_runs_views_kept_the_gap_curves_copy_of_the_weights_included():
    """The mean gap works on a frozen copy of the weights; kept in the session state, it outlived the run (4 MB of a
    default VAE after every Stop / Reset)."""
    at = open_page("pages/vae.py")
    at.selectbox(key="vaelab.dataset").set_value("digits").run()
    fill_form(at, "vae", {"hidden_sizes": "32", "latent_dim": 2, "epochs": 50, "batch_size": 50})
    at.run()
    at.button(key="panel.vae.start").click().run()
    at.toggle(key="panel.vae.explore_live").set_value(True).run()  # the page's views, drawn while it trains
    for _ in range(2):
        at.run()
    session = session_of(at, "vae")
    assert session.running and "vae.gap_curve" in session.run_views  # the views kept their state while it trained
    stop_reset(at, "vae")
    no_exception(at)
    assert session.status == "idle" and session.run_views == {}
    state = at.session_state.to_dict()
    assert _modules_in(state) == []
