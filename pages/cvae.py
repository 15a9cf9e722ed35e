"""Conditional VAE page (layout only): the label says which digit, z keeps the style. A digit x style grid, samples
of a chosen digit, its style manifold, and the latent map of the codes given the true labels."""

import streamlit as st

from vaelab.analysis import generation, image_grids
from vaelab.ui.config_form import default_prefix, widget_key
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_picture
from vaelab.ui.latent_views import bump, elbo_split_view, live_code_map, tsne_section
from vaelab.ui.pages import require_app_frame
from vaelab.ui.session import TrainingSession, get_session
from vaelab.ui.training_panel import training_panel

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

VARIANT = "cvae"
PICKED_KEY = "cvae.picked"  # test index of the image picked on a latent map
STYLE_SEED_KEY = "cvae.style_seed"
SAMPLE_SEED_KEY = "cvae.sample_seed"


# ---------------------------------------------------------------- live views (redrawn while training)
def style_grid_view(session: TrainingSession, width: str = "content") -> None:
    st.markdown("**Digit x style**")
    slider_col, button_col = st.columns([3, 2], vertical_alignment="bottom")
    n_styles = slider_col.slider("Styles (columns)", 4, 12, 8, key="cvae.n_styles")
    button_col.button("New styles", key="cvae.new_styles", icon=":material/refresh:", on_click=bump,
                      args=(STYLE_SEED_KEY,))
    seed = st.session_state.get(STYLE_SEED_KEY, 0)
    images = generation.digit_style_grid(session.model, n_styles, seed=seed)  # (10 * n_styles, D)
    show_picture(image_grids.image_grid(images, session.data.image_shape, ncols=n_styles), scale=2, width=width,
                 name="CVAE digit x style",
                 caption=f"Digit x style: each column holds one z ~ N(0, I) fixed, row k decodes it with y = k "
                         f"(styles #{seed}, step {session.step:,}).")


def live_views(session: TrainingSession) -> None:
    elbo_split_view(session, float(session.config.beta))
    if session.data is None:  # a view-only checkpoint whose data cannot be loaded: its curves only
        return
    if session.model.code_dim != 2:
        st.caption(f"The latent has {session.model.code_dim} dimensions: draw its t-SNE map below.")
        style_grid_view(session)
    else:
        map_col, grid_col = st.columns([3, 2])
        with map_col:
            live_code_map(session, "cvae", PICKED_KEY, "Posterior means given the true labels,<br>")
        with grid_col:
            style_grid_view(session, width="stretch")
    one_digit_section(session)


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
        images = generation.prior_samples(model, n, temperature, seed=seed, y=int(digit))  # (n, D)
        show_picture(image_grids.image_grid(images, session.data.image_shape, ncols=8), scale=2,
                     name="CVAE samples of one digit",
                     caption=f"{n} samples of the digit {digit}: decoded (z, y = {digit}), z = τ · ε, "
                             f"τ = {temperature:g} (draw #{seed}, step {session.step:,})")
    if manifold_col is not None:
        with manifold_col:
            size = st.slider("Manifold grid size n", 5, 20, 12, key="cvae.manifold_n")
            grid = generation.manifold_grid(model, size, session.data.image_shape, y=int(digit))  # (n*H, n*W)
            show_picture(grid, scale=max(1, round(360 / grid.shape[0])), name="CVAE style manifold",
                         caption=f"The style manifold of the digit {digit}: z on a grid through the inverse "
                                 f"Gaussian CDF, decoded with the same label (step {session.step:,}).")


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
session = training_panel(VARIANT, extra_views=live_views)
if session.has_model and session.data is not None and session.model.code_dim != 2:
    tsne_section(session, "cvae", codes_name="test codes given their labels", picked_key=PICKED_KEY)
