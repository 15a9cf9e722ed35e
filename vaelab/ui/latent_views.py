"""Views of the codes that the autoencoder and VAE pages share: evenly spaced test samples and their cached codes, a
clickable latent map that remembers the picked test image, the picked image beside its decoding, the ELBO split
table, and the t-SNE map drawn on request.

    map_col, side_col = st.columns([3, 2])
    with map_col:
        live_code_map(session, "vae", PICKED_KEY, "Posterior means of")   # map + picked image, redrawn live
    ...
    tsne_section(session, "vae", picked_key=PICKED_KEY)   # codes wider than 2: t-SNE on request

Conditional models (``model.uses_labels``) are encoded and decoded with the test images' own labels.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st
import torch

from vaelab import plots
from vaelab.analysis import history_rows, inference, latent_maps
from vaelab.live_frames import run_model
from vaelab.ui.charts import live_key, show_chart
from vaelab.ui.images import show_image_rows
from vaelab.ui.session import TrainingSession, latest_cached, model_cached
from vaelab.ui.sidebar import current_settings

MAX_LIVE_CODES = 2000  # test images encoded for the live latent map
TSNE_SIZES = (500, 1000, 2000)
MEAN_AXES = ("z₁ (mean)", "z₂ (mean)")
TSNE_AXES = ("t-SNE 1", "t-SNE 2")
TERM_NAMES = {"reconstruction": "reconstruction", "kl": "kl", "weighted_kl": "β · kl",
              "total": "total = reconstruction + β · kl", "elbo": "ELBO = −(reconstruction + kl)"}
PICK_HINT = "Click a point on the map to pick another image; hover to see its digit and index."


# ---------------------------------------------------------------- data and small helpers
def test_sample(session: TrainingSession, n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """n evenly spaced test images (n, D), their labels (n,) and their indices in the test split (n,)."""
    test = session.data.test
    idx = inference.spaced_indices(len(test), n)  # (n,)
    return test.images[idx], test.labels[idx], idx.numpy()


def test_codes(session: TrainingSession, n: int = MAX_LIVE_CODES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of n evenly spaced test images (n, code_dim), cached per model state; their labels and indices (n,)."""
    x, y, idx = test_sample(session, n)
    codes = model_cached(session, "test_codes", lambda: inference.encode_dataset(session.model, x, y))  # (n, d)
    return codes, y.numpy(), idx


def bump(key: str) -> None:
    """on_click callback: count the presses under ``key`` (a fresh seed or a reset counter)."""
    st.session_state[key] = st.session_state.get(key, 0) + 1


def stale_caption(session: TrainingSession, step: int) -> None:
    if step != session.step:
        st.caption(f"Drawn at step {step:,}; the model is at step {session.step:,} now. Draw again to update.")


# ---------------------------------------------------------------- the clickable map and the picked image
def pick_point(picked_key: str, chart_key: str, test_indices: np.ndarray) -> None:
    """on_select callback of a latent map: remember the test index of the first picked point (a selection event of
    the still chart, or the clicked point of the live one: see :func:`vaelab.ui.charts.show_chart`)."""
    live = st.session_state.get(live_key(chart_key))
    if isinstance(live, dict) and "point" in live:
        picked = plots.selected_indices({"selection": {"points": [{"customdata": live["point"]}]}})
    else:
        picked = plots.selected_indices(st.session_state.get(chart_key))
    if picked and 0 <= picked[0] < len(test_indices):
        st.session_state[picked_key] = int(test_indices[picked[0]])


def clickable_map(points: np.ndarray, labels: np.ndarray, test_indices: np.ndarray, key: str, title: str,
                  picked_key: str, axis_titles: tuple[str, str] = MEAN_AXES, live: bool = False) -> None:
    """A latent scatter whose clicked point becomes the picked test image (stored under ``picked_key``); ``live``
    while a run trains (see :func:`vaelab.ui.charts.show_chart`)."""
    fig = plots.latent_scatter(points, labels, title=title, axis_titles=axis_titles)
    fig.update_layout(clickmode="event+select")
    show_chart(fig, key=key, name=f"{key} latent map", on_select=partial(pick_point, picked_key, key, test_indices),
               selection_mode="points", live=live)


def picked_view(session: TrainingSession, picked_key: str) -> None:
    """The picked test image beside its decoding from the posterior mean (given its label for a conditional
    model, which also decodes the same mean with every label)."""
    model, test = session.model, session.data.test
    index = min(int(st.session_state.get(picked_key, 0)), len(test) - 1)
    x, y = test.images[index], test.labels[index : index + 1]  # (D,), (1,)
    given = y if model.uses_labels else None
    mu = run_model(model, model.encode, x[None], given)  # (1, d)
    decoded = run_model(model, model.decode, mu, given)  # (1, D)
    if model.uses_labels:
        decoding = f"its decoding from μ given y = {int(y)}"
    else:
        mu_text = ", ".join(f"{v:.2f}" for v in mu[0, :4].tolist()) + (", …" if mu.shape[1] > 4 else "")
        decoding = f"its decoding from μ = ({mu_text})"
    show_image_rows([torch.stack([x, decoded[0]])], session.data.image_shape, scale=3, name="Picked test image",
                    caption=f"Picked: test image #{index} (a {int(y)}) · {decoding} · step {session.step:,}")
    if model.uses_labels:
        labels = torch.arange(model.n_classes)
        same_style = run_model(model, model.decode, mu.expand(model.n_classes, -1), labels)  # (C, D)
        show_image_rows([same_style], session.data.image_shape, scale=2, name="Same style with each label",
                        caption="The same μ decoded with each label 0 … 9: the style stays, the digit follows y "
                                f"(step {session.step:,}).")
    st.caption(PICK_HINT)


def live_code_map(session: TrainingSession, prefix: str, picked_key: str, title_start: str) -> None:
    """The live map of the posterior means of the test sample (2-D latent), and the picked image under it."""
    codes, labels, idx = test_codes(session)
    clickable_map(codes, labels, idx, key=f"{prefix}.map", picked_key=picked_key, live=session.running,
                  title=f"{title_start} {len(codes):,} test images (step {session.step:,})")
    picked_view(session, picked_key)


# ---------------------------------------------------------------- the ELBO split
def elbo_split_view(session: TrainingSession, beta: float) -> None:
    """Caption naming the curves' terms, and the newest train / test split as a small table."""
    st.caption(f"The curves split the objective: **total = reconstruction + β · kl** (β = {beta:g}), which is "
               "**−ELBO when β = 1**. Solid: train (averaged over recent steps); dashed: test, at each epoch end.")
    split = history_rows.latest_elbo_split(session.history, beta)
    if not split:
        return
    lines = ["| | " + " | ".join(TERM_NAMES.values()) + " |", "|---" * (len(TERM_NAMES) + 1) + "|"]
    for kind, values in split.items():
        lines.append(f"| {kind} | " + " | ".join(f"{values[name]:.2f}" for name in TERM_NAMES) + " |")
    st.markdown("\n".join(lines))


# ---------------------------------------------------------------- t-SNE on request
def tsne_section(session: TrainingSession, prefix: str, empty_caption: str | None = None,
                 codes_name: str = "test codes", picked_key: str | None = None) -> None:
    """Codes wider than 2: a t-SNE map drawn when the button is pressed (seconds of work), cached per model state,
    size and seed. ``empty_caption`` stands in for it until then (default: about posterior means); with
    ``picked_key`` the map is clickable and the picked image shows beside it. Widget keys: ``<prefix>.tsne_n``,
    ``<prefix>.tsne_draw``."""
    st.subheader("t-SNE map of the codes")
    n = st.select_slider("Test images in the map", TSNE_SIZES, value=1000, key=f"{prefix}.tsne_n")
    seed = current_settings().seed

    def compute() -> tuple[np.ndarray, np.ndarray]:
        x, y, _ = test_sample(session, n)
        points, _ = latent_maps.latent_map(inference.encode_dataset(session.model, x, y), y.numpy(), method="tsne",
                                        seed=seed)
        return points, y.numpy()  # (n, 2), (n,)

    if st.button("Draw t-SNE map", key=f"{prefix}.tsne_draw", icon=":material/scatter_plot:",
                 disabled=session.running, help="Pause training first." if session.running else "Takes a few seconds."):
        with st.spinner(f"t-SNE on {n:,} codes…"):
            model_cached(session, "tsne", compute, n, seed)
    found = latest_cached(session, "tsne", n, seed)
    if found is None:
        st.caption(empty_caption or f"The latent has {session.model.code_dim} dimensions: t-SNE places similar "
                   "posterior means near each other in 2-D. Press the button to draw it.")
        return
    step, (points, labels) = found
    key, title = f"{prefix}.tsne", f"t-SNE of {len(points):,} {codes_name} (step {step:,})"
    if picked_key is None:
        show_chart(plots.latent_scatter(points, labels, axis_titles=TSNE_AXES, title=title), key=key,
                   name=f"{prefix} t-SNE map")
        stale_caption(session, step)
        return
    map_col, picked_col = st.columns([3, 2])
    with map_col:
        clickable_map(points, labels, test_sample(session, n)[2], key=key, title=title, picked_key=picked_key,
                      axis_titles=TSNE_AXES)
        stale_caption(session, step)
    with picked_col:
        picked_view(session, picked_key)
