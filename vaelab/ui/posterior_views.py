"""The ELBO gap made visible on a Gaussian-latent VAE page: the exact posterior p(z|x) of the picked test image under
the encoder's q(z|x), log p(x) = ELBO + gap with the importance-weighted bound closing in on log p(x), the mean gap
over fixed test images (a curve against the step while training runs), the KL of each latent dimension with the
active units marked, and the aggregate posterior beside the prior.

    posterior_views(session, PICKED_KEY)   # in the page's live views, below the latent map

The exact figures come from :mod:`vaelab.posterior` (quadrature on a grid: latents of 1 or 2 dimensions); the KL
bars apply to any latent size. Results are cached per model state and picked image (``model_cached``), so a redraw
that finds the model unchanged only draws. The small computations here take tensors and return arrays (no Streamlit).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
import torch

from vaelab import evaluate, plots, posterior
from vaelab.analysis import inference
from vaelab.ui.charts import show_chart
from vaelab.ui.session import (
    TrainingSession,
    latest_cached,
    model_cached,
    run_view_state,
)

GAP_IMAGES = 30  # fixed, evenly spaced test images whose mean gap is shown (about 0.1 s of quadrature each)
SUMMARY_IMAGES = 1000  # test images of the aggregate posterior and the KL bars
AGGREGATE_LIMIT = 4.0  # the aggregate posterior's grid covers [-4, 4]^2
AGGREGATE_CELLS = 80  # cells per axis
IS_REPEATS = {1: 20, 10: 20, 100: 10, 1000: 3}  # K -> draws of the importance-weighted bound
# While training runs these views are drawn on demand ("Explore the model now"). A drawing does one piece of work
# at most: the picked image's view again (about 0.3 s) when it is stale (``picked_is_stale``), else about
# GAP_BUDGET_SECONDS of the mean gap (image by image, one at least), so a click answers at once.
PICKED_REFRESH_SECONDS = 8.0
GAP_BUDGET_SECONDS = 0.25


# ---------------------------------------------------------------- computations (tensors in, numbers out)
def model_test_inputs(session: TrainingSession) -> torch.Tensor:
    """The test images as the model sees them: binarised as its training binarised them (``binarize``).  (N, D)"""
    images, mode = session.data.test.images, getattr(session.config, "binarize", "none")
    if mode == "none":
        return images
    if session.trainer is not None:
        seed = session.trainer.seed
    else:
        seed = int((getattr(session.checkpoint, "trainer_state", None) or {}).get("seed", 0))
    return evaluate.model_inputs(images, mode, seed)  # the trainer's own test draw for ``dynamic``


def _labels(model, y: torch.Tensor | int | None, device: torch.device) -> torch.Tensor | None:
    """The labels a conditional model needs (as a tensor on its device); None for a model that takes none."""
    if y is None or not getattr(model, "uses_labels", False):
        return None
    return torch.as_tensor(y, device=device).reshape(-1)


def encoder_posteriors(model, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z|x) = N(mu, diag exp(logvar)) of each image, in float64 on the CPU.   x: (N, D) -> mu, logvar: (N, d)"""
    with inference.evaluating(model):
        mu, logvar = model.posterior(x.to(model.device), _labels(model, y, model.device))
    return mu.double().cpu(), logvar.double().cpu()


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> np.ndarray:
    """Mean over the images of KL(q(z_j|x) || N(0, 1)) = 1/2 (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1).
    mu, logvar: (N, d) -> (d,)"""
    mu, logvar = mu.double(), logvar.double()
    return (0.5 * (mu ** 2 + logvar.exp() - logvar - 1.0)).mean(dim=0).numpy()


def cell_centres(limit: float = AGGREGATE_LIMIT, cells: int = AGGREGATE_CELLS) -> np.ndarray:
    """Centres of ``cells`` equal cells over [-limit, limit].   -> (cells,)"""
    return (-limit + (np.arange(cells) + 0.5) * 2.0 * limit / cells).astype(np.float64)


def mixture_density(mu: torch.Tensor, logvar: torch.Tensor, limit: float = AGGREGATE_LIMIT,
                    cells: int = AGGREGATE_CELLS) -> np.ndarray:
    """The mixture (1/N) sum_i N(mu_i, diag exp(logvar_i)) of 2-D Gaussians averaged over each cell of a
    cells x cells grid on [-limit, limit]^2: the cell's probability, a product of normal-CDF differences per axis
    (exact however narrow a component), over the cell's area. ``[a, b]`` is the cell at (centre a on z1, b on z2).
    mu, logvar: (N, 2) -> (cells, cells)"""
    if mu.ndim != 2 or mu.shape[1] != 2 or logvar.shape != mu.shape:
        raise ValueError(f"mu, logvar: expected two (N, 2) tensors, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    edges = torch.linspace(-limit, limit, cells + 1, dtype=torch.float64)  # (cells + 1,)
    mu, std = mu.double(), (0.5 * logvar.double()).exp()  # (N, 2)

    def per_axis(j: int) -> torch.Tensor:  # P(z_j in cell a) for each component: (N, cells)
        cdf = torch.special.ndtr((edges[None, :] - mu[:, j:j + 1]) / std[:, j:j + 1])  # (N, cells + 1)
        return cdf[:, 1:] - cdf[:, :-1]

    mass = per_axis(0).T @ per_axis(1) / len(mu)  # (cells, N) @ (N, cells) -> (cells, cells)
    return (mass / (2.0 * limit / cells) ** 2).numpy()


def prior_density(limit: float = AGGREGATE_LIMIT, cells: int = AGGREGATE_CELLS) -> np.ndarray:
    """N(0, I) averaged over each cell of the same grid.   -> (cells, cells)"""
    zero = torch.zeros(1, 2, dtype=torch.float64)
    return mixture_density(zero, zero, limit, cells)


def importance_draws(model, x: torch.Tensor, y: int | None = None, repeats: dict[int, int] | None = None,
                     seed: int = evaluate.IS_SEED) -> dict[int, np.ndarray]:
    """Independent draws of the importance-weighted bound log (1/K) sum_k w_k for one image x (D,): K -> (draws,).
    Seeded per K, so a model state always gives the same figure."""
    device, out = model.device, {}
    with inference.evaluating(model):
        for k, n in (repeats or IS_REPEATS).items():
            xb = x.reshape(1, -1).to(device).expand(n, -1)  # (n, D): n draws of the bound
            yb = None if y is None else torch.full((n,), int(y), device=device)
            generator = torch.Generator(device=device).manual_seed(seed + k)
            out[k] = evaluate.importance_sampled_log_likelihood(model, xb, k, y=yb, generator=generator).numpy()
    return out


def image_gap(model, x: torch.Tensor, y: int | None = None) -> float:
    """log p(x) - ELBO of one image x (D,) by quadrature, as ``posterior.model_posterior`` computes it (without the
    picture of the posterior, which only the picked image needs)."""
    with inference.evaluating(model):
        mu, logvar = model.posterior(x.reshape(1, -1).to(model.device), _labels(model, y, model.device))
        result = posterior.grid_posterior(posterior.model_log_likelihood(model, x, y), mu[0].cpu(), logvar[0].cpu(),
                                          display_points=1)
    return result.gap


@dataclass
class PickedPosterior:
    """What the picked image's view draws: the exact posterior on its grid, q(z|x) and the bound's draws."""

    grid: posterior.GridPosterior
    q_mean: np.ndarray  # (d,)
    q_std: np.ndarray  # (d,)
    draws: dict[int, np.ndarray]  # K -> draws of the importance-weighted bound
    computed_at: float = field(default_factory=time.monotonic)


def picked_posterior(model, x: torch.Tensor, y: int | None = None) -> PickedPosterior:
    with inference.evaluating(model):
        grid = posterior.model_posterior(model, x, y)
    mu, logvar = encoder_posteriors(model, x.reshape(1, -1), None if y is None else torch.tensor([int(y)]))
    return PickedPosterior(grid, mu[0].numpy(), (0.5 * logvar[0]).exp().numpy(), importance_draws(model, x, y))


@dataclass
class GapCurve:
    """The mean gap against the training step for one model version (kept with the run: ``run_view_state``). While
    training runs, a copy of the weights at ``job_step`` is worked on a few images per redraw; its point is added
    when done."""

    version: int
    points: dict[int, float] = field(default_factory=dict)  # step -> mean gap (nats)
    job_step: int | None = None
    job_model: torch.nn.Module | None = field(default=None, repr=False)
    job_gaps: list[float] = field(default_factory=list)

    def advance(self, model, step: int, x: torch.Tensor, y: torch.Tensor | None, budget: float) -> None:
        """Work on the mean gap at ``step`` for about ``budget`` seconds, one image at least (a frozen copy of
        ``model`` is taken when a new point begins, so training on meanwhile does not mix steps)."""
        if self.job_model is None:
            if step in self.points:
                return
            self.job_step, self.job_model, self.job_gaps = step, copy.deepcopy(model).eval(), []
        start = time.perf_counter()
        while len(self.job_gaps) < len(x):  # at least one image per call, then while the budget lasts
            i = len(self.job_gaps)
            self.job_gaps.append(image_gap(self.job_model, x[i], None if y is None else int(y[i])))
            if time.perf_counter() - start >= budget:
                break
        if len(self.job_gaps) == len(x):
            self.points[self.job_step] = float(np.mean(self.job_gaps))
            self.drop_job()

    def drop_job(self) -> None:
        self.job_step, self.job_model, self.job_gaps = None, None, []


# ---------------------------------------------------------------- layout
def _picked(session: TrainingSession, picked_key: str) -> tuple[int, torch.Tensor, int | None]:
    """The picked test index, its image as the model sees it (D,) and its label for a conditional model."""
    test = session.data.test
    index = min(max(int(st.session_state.get(picked_key, 0)), 0), len(test) - 1)
    y = int(test.labels[index]) if session.model.uses_labels else None
    return index, model_test_inputs(session)[index], y


def equation_line(grid: posterior.GridPosterior) -> str:
    """'log p(x) = ELBO + gap: -171.54 = -172.68 + 1.14 nats (exact by quadrature on a 32 x 32 grid, error < 0.01
    nat)'. The gap shown is the difference of the two rounded figures, so the line adds up as printed."""
    log_px, elbo = round(grid.log_px, 2), round(grid.elbo, 2)
    d = grid.log_posterior.dim()
    size = f"a {grid.points} × {grid.points} grid" if d == 2 else f"a grid of {grid.points:,} points"
    tolerance = posterior.TOLERANCE
    error = (f"error < {tolerance:g} nat" if grid.quadrature_error < tolerance
             else f"its last refinement moved it by {grid.quadrature_error:.2g} nat")
    return (f"log p(x) = ELBO + gap:  {log_px:.2f} = {elbo:.2f} + {log_px - elbo:.2f} nats "
            f"(exact by quadrature on {size}, {error})")


def _picked_result(session: TrainingSession, index: int, x: torch.Tensor, y: int | None, may_work: bool
                   ) -> tuple[int, PickedPosterior, bool]:
    """(step, result, whether it was worked out now) for the picked image: at the model's step, except while
    training runs, when a result for this image is drawn again unless it is stale (``picked_is_stale``) and the views
    ``may_work`` (a newly picked image is worked out at once)."""
    found = latest_cached(session, "picked_posterior", index)
    if session.running and found is not None and (not may_work or not picked_is_stale(
            found[0], session.step, time.monotonic() - found[1].computed_at)):
        return (*found, False)
    result = model_cached(session, "picked_posterior", lambda: picked_posterior(session.model, x, y), index)
    return session.step, result, found is None or found[1] is not result


def picked_is_stale(shown_step: int, step: int, age_seconds: float) -> bool:
    """While training runs: whether the picked image's posterior, worked out at ``shown_step`` ``age_seconds`` ago,
    is due again at ``step``: once ``PICKED_REFRESH_SECONDS`` old, or sooner while the run is young, as soon as the
    run has doubled its steps since (the posterior moves most in the first hundreds of steps; a fixed 8 s kept the
    picture of step 1 on screen for the first 8 s of every run)."""
    return age_seconds >= PICKED_REFRESH_SECONDS or step >= 2 * max(shown_step, 1)


def picked_posterior_view(session: TrainingSession, picked_key: str, may_work: bool = True) -> bool:
    """The picked image's exact posterior, the bound against K and log p(x) = ELBO + gap. True when its figures
    were worked out in this redraw (not drawn again from the cache)."""
    index, x, y = _picked(session, picked_key)
    label = int(session.data.test.labels[index])
    st.subheader(f"The true posterior of test image #{index} (a {label})")
    step, result, worked = _picked_result(session, index, x, y, may_work)
    grid, d = result.grid, result.grid.log_posterior.dim()
    heat_col, bound_col = st.columns([3, 2])
    with heat_col:
        title = f"p(z|x) and q(z|x), step {step:,}"
        if d == 2:
            fig = plots.posterior_heatmap([a.numpy() for a in grid.axes], grid.log_posterior.numpy(), result.q_mean,
                                          result.q_std, title=title)
            caption = (f"Colour: log p(z|x) = log p(x|z) + log N(z; 0, I) − log p(x) at the centres of a "
                       f"{len(grid.axes[0])} × {len(grid.axes[1])} grid (Viridis, the top "
                       f"{plots.POSTERIOR_LOG_RANGE:g} nats; lower values share the darkest colour). White: the "
                       "encoder's q(z|x) = N(μ, diag σ²), its ellipses μ ± 1σ (solid) and μ ± 2σ (dashed), "
                       "axis-aligned as q is diagonal. Where they part from the colour, q misses the posterior.")
        else:
            fig = plots.posterior_curve(grid.axes[0].numpy(), grid.log_posterior.numpy(), float(result.q_mean[0]),
                                        float(result.q_std[0]), title=title)
            caption = (f"Solid: p(z|x) = exp(log p(x|z) + log N(z; 0, 1) − log p(x)) on {len(grid.axes[0])} grid "
                       "points; dashed: the encoder's q(z|x) = N(μ, σ²). The heat map is drawn for a 2-D latent.")
        show_chart(fig, key=f"{picked_key}.posterior", name="True posterior and q(z|x)", live=session.running)
        st.caption(caption)
    with bound_col:
        fig = plots.importance_bound_figure(result.draws, grid.log_px, title="Importance-weighted bound<br>against K")
        show_chart(fig, key=f"{picked_key}.bound", name="Importance-weighted bound against K", live=session.running)
        repeats = ", ".join(f"{n} at K = {k:,}" for k, n in IS_REPEATS.items())
        st.caption("log (1/K) Σₖ p(x|zₖ) p(zₖ) / q(zₖ|x) with zₖ ~ q(z|x), drawn again and again with fresh zₖ "
                   f"({repeats}): dots are draws, the line their mean ± 1 standard error. Its expected value is at "
                   "most log p(x) (dashed) for every K and rises to it as K grows; K = 1 is a one-sample ELBO. A "
                   "mean of a few draws can still land above the line: (1/K) Σₖ wₖ estimates p(x) without bias, "
                   "and where q misses part of the posterior a rare large weight lifts a draw above log p(x).")
    st.markdown(f"**{equation_line(grid)}**")
    st.caption("log p(x) = log ∫ p(x|z) N(z; 0, I) dz by the midpoint rule on a grid that zooms into the posterior "
               "and doubles its points until log p(x) moves by less than 0.01 nat; ELBO = E_q[log p(x|z) + "
               "log p(z) − log q(z|x)] by the same rule over q's ± 6σ (no sampling); gap = log p(x) − ELBO = "
               "KL(q(z|x) ‖ p(z|x)) ≥ 0.")
    return worked


def gap_view(session: TrainingSession, prefix: str, work: bool = True) -> bool:
    """The mean gap over ``GAP_IMAGES`` fixed test images: a number for the current model and, while training runs,
    a curve against the step (a point each time a copy of the weights has been done, a few images per redraw that
    may ``work``). True when it worked on a point while training runs."""
    model, test = session.model, session.data.test
    idx = inference.spaced_indices(len(test), min(GAP_IMAGES, len(test)))  # (n,)
    x, y = model_test_inputs(session)[idx], test.labels[idx] if model.uses_labels else None
    curve = run_view_state(session, f"{prefix}.gap_curve", lambda: GapCurve(session.version))

    def mean_gap() -> float:
        return float(np.mean([image_gap(model, x[i], None if y is None else int(y[i])) for i in range(len(x))]))

    worked = session.running and work
    if worked:
        curve.advance(model, session.step, x, y, GAP_BUDGET_SECONDS)
    elif not session.running:
        if curve.job_model is not None:  # the run stopped during a point: finish it (its weights are frozen)
            with st.spinner(f"Finishing the point of step {curve.job_step:,}…"):
                curve.advance(model, session.step, x, y, float("inf"))
        found = latest_cached(session, "mean_gap")
        if found is None or found[0] != session.step:
            with st.spinner(f"log p(x) and the ELBO of {len(x)} test images by quadrature…"):
                model_cached(session, "mean_gap", mean_gap)
        curve.points[session.step] = model_cached(session, "mean_gap", mean_gap)
    if curve.points:
        step = max(curve.points)
        st.metric(f"Mean gap over {len(x)} test images, step {step:,}", f"{curve.points[step]:.2f} nats")
    else:
        st.metric(f"Mean gap over {len(x)} test images", "—")
    st.caption(f"The mean of log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)) over {len(x)} evenly spaced test images, each "
               "exact by quadrature as above: what the encoder's Gaussian misses of the true posterior. It falls as "
               "the encoder learns to fit each image's posterior, and can rise while the decoder makes p(z|x) harder "
               "for a diagonal Gaussian to fit (curved, or wider in one direction).")
    if curve.job_model is not None:
        st.caption(f"Next point, the weights of step {curve.job_step:,}: {len(curve.job_gaps)} of {len(x)} "
                   "images done.")
    if len(curve.points) > 1:
        steps = sorted(curve.points)
        show_chart(plots.gap_curve(steps, [curve.points[s] for s in steps], title="Mean gap against the step"),
                   key=f"{prefix}.gap_chart", name="Mean ELBO gap against the step", live=session.running)
        st.caption(f"While training runs, a point each time the {len(x)} images are done for a copy of the "
                   "weights, a few at each drawing of the page; and one when it stops.")
    return worked


def _posterior_summary(session: TrainingSession) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of q(z|x) for SUMMARY_IMAGES spaced test images, at the model's step (once per step: the KL bars
    and the aggregate posterior share them when both are worked out at one step)."""
    model, test = session.model, session.data.test
    idx = inference.spaced_indices(len(test), min(SUMMARY_IMAGES, len(test)))
    return model_cached(session, "encoder_posteriors", lambda: encoder_posteriors(
        model, model_test_inputs(session)[idx], test.labels[idx]))


def kl_view(session: TrainingSession, prefix: str) -> None:
    def figure() -> tuple[Any, dict, int]:
        mu, logvar = _posterior_summary(session)
        kl = kl_per_dimension(mu, logvar)
        active = evaluate.count_active_units(mu)
        title = (f"KL per dimension: {active['active']} of {active['units']} active, "
                 f"total {kl.sum():.2f} nats<br>step {session.step:,}")  # one line was cut in its column at 1280 px
        return plots.kl_per_dimension(kl, active["variances"], active["threshold"], title=title), active, len(mu)

    fig, active, n = model_cached(session, "kl_view", figure)
    show_chart(fig, key=f"{prefix}.kl_dims", name="KL per latent dimension", live=session.running)
    st.caption(f"Bar j: the mean over {n:,} test images of KL(q(z_j|x) ‖ N(0, 1)) = ½(μ_j² + σ_j² − "
               "log σ_j² − 1); the bars add up to the kl term. Coloured: an active unit, whose posterior mean "
               f"varies over the images (Var_x(μ_j) > {active['threshold']:g}); grey: inactive, q(z_j|x) ≈ N(0, 1) "
               "whatever x, so z_j tells the decoder nothing (posterior collapse, e.g. under a large β).")


def aggregate_view(session: TrainingSession, prefix: str) -> None:
    def figure() -> tuple[Any, float, int]:
        mu, logvar = _posterior_summary(session)
        q, p = mixture_density(mu, logvar), prior_density()
        area = (2 * AGGREGATE_LIMIT / AGGREGATE_CELLS) ** 2
        fig = plots.density_pair(cell_centres(), q, p, titles=(
            f"aggregate posterior q(z), {len(mu):,} test images, step {session.step:,}", "prior p(z) = N(0, I)"))
        return fig, float(q.sum() * area), len(mu)

    fig, inside, n = model_cached(session, "aggregate_view", figure)
    show_chart(fig, key=f"{prefix}.aggregate", name="Aggregate posterior and prior", live=session.running)
    st.caption(f"Left: q(z) = (1/N) Σᵢ N(z; μᵢ, diag σᵢ²), the mixture of the encoder's Gaussians over N = "
               f"{n:,} test images; right: the prior. Each of the {AGGREGATE_CELLS} × {AGGREGATE_CELLS} cells "
               f"over [−{AGGREGATE_LIMIT:g}, {AGGREGATE_LIMIT:g}]² shows the density's mean over the cell (its "
               "probability by the normal CDF, over its area), on one colour scale. q(z) keeps "
               f"{inside:.1%} of its mass in the square. Where the prior is bright and q(z) dark (holes), samples "
               "from the prior decode to images the encoder never produces.")


def posterior_views(session: TrainingSession, picked_key: str, prefix: str = "vae") -> None:
    """Every view of this module for the session's model: the picked image's exact posterior and bound (1-2-D
    Gaussian latents), the mean gap and the KL per dimension, the aggregate posterior (2-D)."""
    model = session.model
    gridded = posterior.can_grid(model)
    worked = picked_posterior_view(session, picked_key, True) if gridded else False
    st.subheader("Across the test set")
    if gridded:
        gap_col, kl_col = st.columns(2)
        with gap_col:
            gap_view(session, prefix, work=not worked)  # one piece of work at most
    else:
        kl_col = st.container()
        st.caption(f"The exact posterior, log p(x) and the gap need a latent of 1 or 2 dimensions (this one has "
                   f"{model.code_dim}): a grid over more is too large.")
    with kl_col:
        kl_view(session, prefix)
    if model.code_dim == 2:
        aggregate_view(session, prefix)
