"""The VAE page's live chart of two gradient estimators' variance (vaelab.estimators), measured as training runs.

Each redraw at a new training step measures, on the same fixed test images and the same draws, the variance of a
one-draw estimate of the encoder's gradient of the reconstruction term by the reparameterisation trick and by the
score-function estimator (with and without a baseline), and appends it to a series kept with the run
(``run_view_state``); the chart draws the series on a log scale.
"""

from __future__ import annotations

import time

import streamlit as st
import torch

from vaelab import plots
from vaelab.analysis import inference
from vaelab.estimators import ESTIMATORS, encoder_gradient_estimates
from vaelab.ui.charts import show_chart
from vaelab.ui.session import TrainingSession, run_view_state

IMAGES = 64  # fixed test images the variances are measured on
DRAWS = 16  # one-draw estimates per image
SEED = 7  # the same draws at every measurement: the curves move with the model, not with the draw
MAX_POINTS = 400  # a long run keeps its latest points
MEASURE_EVERY_SECONDS = 2.0  # while training runs: one measurement (1,024 gradient estimates) at most this often
SERIES_KEY = "vae.estimator_series"  # run_view_state: {"rows": [(step, var, ...)], "at": time.monotonic()}


def measure(session: TrainingSession) -> tuple[float, ...]:
    """(variance of each estimator) for the current weights, in ESTIMATORS order."""
    model, test = session.model, session.data.test
    idx = inference.spaced_indices(len(test), IMAGES)
    x = test.images[idx].to(model.device)  # (n, D)
    y = test.labels[idx].to(model.device) if model.uses_labels else None
    estimates = encoder_gradient_estimates(model, x, DRAWS, y,
                                           generator=torch.Generator(device=model.device).manual_seed(SEED))
    return tuple(estimates.variance(name) for name in ESTIMATORS)


def series(session: TrainingSession) -> list[tuple[int, ...]]:
    """The run's measurements, one more when the model moved to a new step since the last one."""
    kept = run_view_state(session, SERIES_KEY, lambda: {"rows": []})
    rows = kept["rows"]
    due = not session.running or time.monotonic() - kept.get("at", 0.0) >= MEASURE_EVERY_SECONDS
    if not rows or (rows[-1][0] != session.step and due):
        rows.append((session.step, *measure(session)))
        kept["at"] = time.monotonic()
        del rows[:-MAX_POINTS]
    return rows


def estimator_variance_view(session: TrainingSession) -> None:
    """The chart and its caption (the ratio of the latest variances)."""
    rows = series(session)
    steps = [r[0] for r in rows]
    lines = {name: [r[i + 1] for r in rows] for i, name in enumerate(ESTIMATORS)}
    fig = plots.line_chart(steps, lines, x_title="training step", y_title="variance (log scale)", log_y=True,
                           markers=len(rows) < 30,
                           title="Variance of a one-draw estimate of the encoder's gradient")
    show_chart(fig, key="vae.estimators", name="Gradient estimator variance", live=session.running)
    rep, plain, base = rows[-1][1:]
    st.caption(f"The same {IMAGES} test images and {DRAWS} draws ε per image at every step; variance across draws "
               f"of d E_q[f] / d(μ, log σ²), f = −log p(x|z), averaged over images and coordinates. Now: the "
               f"score function's is **{plain / rep:,.0f}x** the reparameterised one's, **{base / rep:,.0f}x** with "
               "the baseline. Same mean gradient (checked against finite differences in the tests), far more "
               "noise: this is why the VAE samples z = μ + σ ε.")
