"""Conditional VAE page (layout only): the label says which digit, z keeps the style. A digit x style grid, samples
of a chosen digit, its style manifold, and the latent map of the codes given the true labels."""

from functools import partial

import numpy as np
import streamlit as st
import torch

from vaelab import analysis, plots
from vaelab.ui.config_form import default_prefix, widget_key
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_image_rows, show_picture
from vaelab.ui.session import TrainingSession, get_session, latest_cached, model_cached, run_model
from vaelab.ui.sidebar import current_settings
from vaelab.ui.training_panel import training_panel

VARIANT = "cvae"
MAX_LIVE_CODES = 2000  # test images encoded for the live latent map
TSNE_SIZES = (500, 1000, 2000)
PICKED_KEY = "cvae.picked"  # test index of the image picked on a latent map
STYLE_SEED_KEY = "cvae.style_seed"
SAMPLE_SEED_KEY = "cvae.sample_seed"
TERM_NAMES = {"reconstruction": "reconstruction", "kl": "kl", "weighted_kl": "β · kl",
              "total": "total = reconstruction + β · kl", "elbo": "ELBO = −(reconstruction + kl)"}


# ---------------------------------------------------------------- small layout helpers
def test_sample(session: TrainingSession, n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """n evenly spaced test images (n, D), their labels (n,) and their indices in the test split (n,)."""
    test = session.data.test
    n = min(n, len(test))
    idx = torch.arange(n) * len(test) // n
    return test.images[idx], test.labels[idx], idx.numpy()


def bump(key: str) -> None:
    st.session_state[key] = st.session_state.get(key, 0) + 1


def pick_point(chart_key: str, test_indices: np.ndarray) -> None:
    """on_select callback of a latent map: remember the test index of the first picked point."""
    picked = plots.selected_indices(st.session_state.get(chart_key))
    if picked and 0 <= picked[0] < len(test_indices):
        st.session_state[PICKED_KEY] = int(test_indices[picked[0]])


def clickable_map(points: np.ndarray, labels: np.ndarray, test_indices: np.ndarray, key: str, title: str,
                  axis_titles: tuple[str, str] = ("z₁ (mean)", "z₂ (mean)")) -> None:
    fig = plots.latent_scatter(points, labels, title=title, axis_titles=axis_titles)
    fig.update_layout(clickmode="event+select")
    st.plotly_chart(fig, key=key, on_select=partial(pick_point, key, test_indices), selection_mode="points")


def picked_view(session: TrainingSession) -> None:
    """The picked test image, its decoding from the posterior mean given its label, and with the other labels."""
    model, test = session.model, session.data.test
    index = min(int(st.session_state.get(PICKED_KEY, 0)), len(test) - 1)
    x, y = test.images[index], test.labels[index : index + 1]  # (D,), (1,)
    mu = run_model(model, model.encode, x[None], y)  # (1, d)
    decoded = run_model(model, model.decode, mu, y)  # (1, D)
    show_image_rows([torch.stack([x, decoded[0]])], session.data.image_shape, scale=3,
                    caption=f"Picked: test image #{index} (a {int(y)}) · its decoding from μ given y = {int(y)}")
    labels = torch.arange(model.n_classes)
    same_style = run_model(model, model.decode, mu.expand(model.n_classes, -1), labels)  # (C, D)
    show_image_rows([same_style], session.data.image_shape, scale=2,
                    caption="The same μ decoded with each label 0 … 9: the style stays, the digit follows y.")
    st.caption("Click a point on the map to pick another image; hover to see its digit and index.")


def elbo_split_view(session: TrainingSession, beta: float) -> None:
    """Caption naming the curves' terms, and the newest train / test split as a small table."""
    st.caption(f"The curves split the objective: **total = reconstruction + β · kl** (β = {beta:g}), which is "
               "**−ELBO when β = 1**. Solid: train (averaged over recent steps); dashed: test, at each epoch end.")
    split = analysis.latest_elbo_split(session.history, beta)
    if not split:
        return
    lines = ["| | " + " | ".join(TERM_NAMES.values()) + " |", "|---" * (len(TERM_NAMES) + 1) + "|"]
    for kind, values in split.items():
        lines.append(f"| {kind} | " + " | ".join(f"{values[name]:.2f}" for name in TERM_NAMES) + " |")
    st.markdown("\n".join(lines))


# ---------------------------------------------------------------- live views (redrawn while training)
def style_grid_view(session: TrainingSession, width: str = "content") -> None:
    st.markdown("**Digit x style**")
    slider_col, button_col = st.columns([3, 2], vertical_alignment="bottom")
    n_styles = slider_col.slider("Styles (columns)", 4, 12, 8, key="cvae.n_styles")
    button_col.button("New styles", key="cvae.new_styles", icon=":material/refresh:", on_click=bump,
                      args=(STYLE_SEED_KEY,))
    seed = st.session_state.get(STYLE_SEED_KEY, 0)
    images = analysis.digit_style_grid(session.model, n_styles, seed=seed)  # (10 * n_styles, D)
    show_picture(analysis.image_grid(images, session.data.image_shape, ncols=n_styles), scale=2, width=width,
                 caption=f"Digit x style: each column holds one z ~ N(0, I) fixed, row k decodes it with y = k "
                         f"(styles #{seed}, step {session.step:,}).")


def live_views(session: TrainingSession) -> None:
    elbo_split_view(session, float(session.config.beta))
    if session.data is None:  # a view-only checkpoint whose data cannot be loaded: its curves only
        return
    if session.model.code_dim != 2:
        st.caption(f"The latent has {session.model.code_dim} dimensions: draw its t-SNE map below.")
        style_grid_view(session)
        return
    x, y, idx = test_sample(session, MAX_LIVE_CODES)
    codes = model_cached(session, "test_codes", lambda: analysis.encode_dataset(session.model, x, y))  # (n, 2)
    map_col, grid_col = st.columns([3, 2])
    with map_col:
        clickable_map(codes, y.numpy(), idx, key=f"cvae.map.{session.redraws}",
                      title=f"Posterior means given the true labels, {len(codes):,} test images "
                            f"(step {session.step:,})")
        picked_view(session)
    with grid_col:
        style_grid_view(session, width="stretch")


# ---------------------------------------------------------------- views that need not be live
def one_digit_section(session: TrainingSession) -> None:
    st.subheader("One digit, many styles")
    model = session.model
    digit = st.segmented_control("Digit y", list(range(model.n_classes)), default=0, required=True,
                                 key="cvae.digit", persist_state="session")
    temp_col, n_col, button_col = st.columns([2, 2, 1], vertical_alignment="bottom")
    temperature = temp_col.slider("Temperature τ", 0.0, 2.0, 1.0, 0.1, key="cvae.temperature",
                                  help="z = τ · ε with ε ~ N(0, I): below 1 the samples are cleaner and more alike.")
    n = n_col.select_slider("Samples", (16, 32, 64), value=32, key="cvae.n_samples")
    button_col.button("Regenerate", key="cvae.regenerate", icon=":material/refresh:", on_click=bump,
                      args=(SAMPLE_SEED_KEY,))
    seed = st.session_state.get(SAMPLE_SEED_KEY, 0)
    samples_col, manifold_col = st.columns(2) if model.code_dim == 2 else (st.container(), None)
    with samples_col:
        images = analysis.prior_samples(model, n, temperature, seed=seed, y=int(digit))  # (n, D)
        show_picture(analysis.image_grid(images, session.data.image_shape, ncols=8), scale=2,
                     caption=f"{n} samples of the digit {digit}: decoded (z, y = {digit}), z = τ · ε, "
                             f"τ = {temperature:g} (draw #{seed})")
    if manifold_col is not None:
        with manifold_col:
            size = st.slider("Manifold grid size n", 5, 20, 12, key="cvae.manifold_n")
            grid = analysis.manifold_grid(model, size, session.data.image_shape, y=int(digit))  # (n*H, n*W)
            show_picture(grid, scale=max(1, round(360 / grid.shape[0])),
                         caption=f"The style manifold of the digit {digit}: z on a grid through the inverse "
                                 "Gaussian CDF, decoded with the same label.")


def tsne_section(session: TrainingSession) -> None:
    st.subheader("t-SNE map of the codes")
    n = st.select_slider("Test images in the map", TSNE_SIZES, value=1000, key="cvae.tsne_n")
    seed = current_settings().seed

    def compute():
        x, y, idx = test_sample(session, n)
        points, _ = analysis.latent_map(analysis.encode_dataset(session.model, x, y), y.numpy(), method="tsne",
                                        seed=seed)
        return points, y.numpy(), idx

    if st.button("Draw t-SNE map", key="cvae.tsne_draw", icon=":material/scatter_plot:", disabled=session.running,
                 help="Pause training first." if session.running else "Takes a few seconds."):
        with st.spinner(f"t-SNE on {n:,} codes…"):
            model_cached(session, "tsne", compute, n, seed)
    found = latest_cached(session, "tsne", n, seed)
    if found is None:
        st.caption(f"The latent has {session.model.code_dim} dimensions: t-SNE places similar posterior means "
                   "near each other in 2-D. Press the button to draw it.")
        return
    step, (points, labels, idx) = found
    map_col, picked_col = st.columns([3, 2])
    with map_col:
        clickable_map(points, labels, idx, key=f"cvae.tsne.{session.version}.{step}.{n}",
                      title=f"t-SNE of {len(points):,} test codes given their labels (step {step:,})",
                      axis_titles=("t-SNE 1", "t-SNE 2"))
        if step != session.step:
            st.caption(f"Drawn at step {step:,}; the model is at step {session.step:,} now. Draw again to update.")
    with picked_col:
        picked_view(session)


# ---------------------------------------------------------------- the page
st.title("Conditional VAE")
session = get_session(VARIANT)
shown_beta = float(session.config.beta) if session.config is not None else float(
    st.session_state.get(widget_key(default_prefix(VARIANT), "beta"), 1.0))
what_you_are_seeing(
    "The VAE again, with the digit's label $y$ (one-hot) appended to the encoder's input and to the decoder's "
    "$z$: $q(z\\mid x, y) = \\mathcal N(\\mu, \\operatorname{diag}\\sigma^2)$ with $[\\mu, \\log\\sigma^2]$ from "
    "$\\text{encoder}([x, \\text{onehot}(y)])$, and pixel means $\\hat x = \\operatorname{sigmoid}(\\text{decoder}"
    "([z, \\text{onehot}(y)]))$. The label already says which digit it is, so $z$ is free to keep the style: "
    "slant, thickness, width. Fix $z$ and change $y$ (the digit x style grid) and the same style writes every "
    "digit. The map shows the codes given the true labels: the digits are no longer in separate clusters.",
    [r"\mathrm{ELBO}(x, y) = \mathbb{E}_{q(z\mid x, y)}\big[\log p(x\mid z, y)\big]"
     r" - \mathrm{KL}\big(q(z\mid x, y)\,\|\,p(z)\big),\qquad p(z) = \mathcal N(0, I)",
     r"\texttt{total} = \underbrace{-\frac{1}{L}\sum_{l=1}^{L}\log p\big(x\mid z^{(l)}, y\big)}"
     r"_{\texttt{reconstruction}} + \beta\,\underbrace{\frac12\sum_{j=1}^{d}\big(\mu_j^2 + \sigma_j^2"
     r" - \log\sigma_j^2 - 1\big)}_{\texttt{kl}}"
     rf",\qquad \beta = {shown_beta:g}\quad(\beta = 1:\ \texttt{{total}} = -\mathrm{{ELBO}})",
     r"z^{(l)} = \mu + \sigma \odot \varepsilon^{(l)},\qquad \varepsilon^{(l)} \sim \mathcal N(0, I),\qquad"
     r" \sigma = \exp\big(\tfrac12 \log\sigma^2\big)"],
)
session = training_panel(VARIANT, extra_views=live_views, defaults={"epochs": 30})
if session.has_model and session.data is not None:
    if session.model.code_dim != 2:
        tsne_section(session)
    one_digit_section(session)
