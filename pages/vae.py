"""VAE page (layout only): beta, the live ELBO split, a clickable latent map, the manifold, the true posterior and the
ELBO gap (vaelab/ui/posterior_views.py), samples from the prior, interpolation and per-dimension latent traversals;
all redrawn live (the t-SNE map of a wider latent on request)."""

import numpy as np
import streamlit as st
import torch

from vaelab.analysis import generation, image_grids, inference
from vaelab.ui.config_form import default_prefix, widget_key
from vaelab.ui.estimator_view import estimator_variance_view
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_image_rows, show_picture
from vaelab.ui.latent_views import bump, elbo_split_view, live_code_map, tsne_section
from vaelab.ui.pages import require_app_frame
from vaelab.ui.posterior_views import posterior_views
from vaelab.ui.session import TrainingSession, get_session
from vaelab.ui.training_panel import training_panel
from vaelab.variants import get_variant

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

VARIANT = "vae"
MAX_TRAVERSAL_DIMS = 10
BETA_MAX = 10.0
BETA_KEY = widget_key(default_prefix(VARIANT), "beta")  # the form's own key: loading a checkpoint fills it
PICKED_KEY = "vae.picked"  # test index of the image picked on a latent map
SAMPLE_SEED_KEY = "vae.sample_seed"
TRAVERSAL_RESET_KEY = "vae.traversal_reset"


def beta_slider(session: TrainingSession) -> float:
    """The beta-VAE weight, drawn big above the panel; the form leaves ``beta`` to it."""
    if BETA_KEY not in st.session_state:
        st.session_state[BETA_KEY] = float(get_variant(VARIANT).config_cls().beta)  # the config's default
    current = float(st.session_state[BETA_KEY])
    left, right = st.columns([2, 3], vertical_alignment="center")
    beta = left.slider("β, the weight of the KL term (β-VAE)", 0.0, max(BETA_MAX, current), step=0.1,
                       key=BETA_KEY, disabled=session.trainer is not None, persist_state="session",
                       help="1: the ELBO. Above 1: a β-VAE (smoother latent space, blurrier images). "
                            "0: an autoencoder with noisy codes. Stop / Reset to change it.")
    right.caption("β = 1 trains the ELBO; β > 1 pushes q(z|x) towards the prior (watch the kl curve fall and the "
                  "reconstructions blur); β = 0 drops the KL term, so the codes stop looking like samples of "
                  "N(0, I) and the prior samples below stop looking like digits.")
    return beta


# ---------------------------------------------------------------- live views (redrawn while training)
def live_views(session: TrainingSession) -> None:
    elbo_split_view(session, float(session.config.beta))
    if session.data is None:  # a view-only checkpoint whose data cannot be loaded: its curves only
        return
    if session.model.code_dim != 2:
        st.caption(f"The latent has {session.model.code_dim} dimensions: draw its t-SNE map below; the manifold "
                   "grid needs a 2-D latent.")
    else:
        map_col, manifold_col = st.columns([3, 2])
        with map_col:
            live_code_map(session, "vae", PICKED_KEY, "Posterior means of")
        with manifold_col:
            n = st.slider("Manifold grid size n", 5, 25, 15, key="vae.manifold_n",
                          help="Decodes z = Φ⁻¹(p) on an n x n grid of p in [0.05, 0.95]² (Φ: the N(0,1) CDF).")
            grid = generation.manifold_grid(session.model, n, session.data.image_shape)  # (n*H, n*W)
            show_picture(grid, scale=max(1, round(360 / grid.shape[0])), name="VAE manifold",
                         caption="Manifold: each tile decodes one z on a grid through the inverse Gaussian CDF, so "
                                 f"the tiles are equally likely under the prior (step {session.step:,}).")
    samples_section(session)  # noise turning into digits: near the top, where a class watches
    summaries = st.container()  # filled last: the pictures of the weights below are drawn first, so a redraw
    interpolation_section(session)  # that works out a summary does not hold them back
    traversal_section(session)
    with summaries:
        posterior_views(session, PICKED_KEY)  # the true posterior of the picked image, the gap, KL per dimension
        st.subheader("Two estimators of the encoder's gradient")
        estimator_variance_view(session)


def samples_section(session: TrainingSession) -> None:
    st.subheader("Samples from the prior")
    temp_col, n_col, button_col = st.columns([2, 2, 1], vertical_alignment="bottom")
    temperature = temp_col.slider("Temperature τ", 0.0, 2.0, 1.0, 0.1, key="vae.temperature",
                                  help="z = τ · ε with ε ~ N(0, I): below 1 the samples are cleaner and more alike.")
    n = n_col.select_slider("Samples", (16, 32, 64, 100), value=32, key="vae.n_samples")
    button_col.button("Regenerate", key="vae.regenerate", icon=":material/refresh:", on_click=bump,
                      args=(SAMPLE_SEED_KEY,))
    seed = st.session_state.get(SAMPLE_SEED_KEY, 0)
    images = generation.prior_samples(session.model, n, temperature, seed=seed)  # (n, D)
    show_picture(image_grids.image_grid(images, session.data.image_shape, ncols=16 if n > 64 else 8), scale=2,
                 name="VAE prior samples",
                 caption=f"Decoded z = τ · ε, ε ~ N(0, I), τ = {temperature:g} (draw #{seed}, step {session.step:,})")


def first_index(labels: torch.Tensor, digit: int, fallback: int) -> int:
    found = torch.nonzero(labels == digit)
    return int(found[0]) if len(found) else fallback


def interpolation_section(session: TrainingSession) -> None:
    st.subheader("Interpolation between two test images")
    test = session.data.test
    last = len(test) - 1
    a_col, b_col, steps_col = st.columns(3)
    a = a_col.number_input("Test image A (index)", 0, last, first_index(test.labels, 1, 0), key="vae.interp_a")
    b = b_col.number_input("Test image B (index)", 0, last, first_index(test.labels, 7, last), key="vae.interp_b")
    steps = steps_col.slider("Steps", 3, 15, 10, key="vae.interp_steps")
    frames = generation.interpolate(session.model, test.images[a], test.images[b], steps)  # (steps, D)
    row = torch.cat([test.images[a][None], torch.from_numpy(frames), test.images[b][None]])  # (steps + 2, D)
    show_image_rows([row], session.data.image_shape, name="VAE interpolation",
                    caption=f"Left: test image A (#{a}, a {int(test.labels[a])}); then decodings of "
                            f"(1 − t) μ_A + t μ_B for t = 0 … 1; right: test image B (#{b}, a {int(test.labels[b])}) "
                            f"· step {session.step:,}")


def follow_code(key: str, code: float) -> None:
    """Set the traversal slider ``key`` to ``code`` (the image's code under the weights drawn now) unless the user
    has moved it since it was last set here: while training runs, an untouched slider follows the code and a moved
    one keeps its value ("Back to the image's code" starts them all again at the code)."""
    state, last_set = st.session_state, f"{key}.set"
    if key not in state or state.get(last_set) == state[key]:
        state[key] = state[last_set] = code


def traversal_section(session: TrainingSession) -> None:
    st.subheader("Latent traversal")
    model, test = session.model, session.data.test
    index = st.number_input("Start from test image (index)", 0, len(test) - 1, 0, key="vae.trav_index")
    x = test.images[index]  # (D,)
    z0 = inference.encode_dataset(model, x[None])[0]  # (d,)
    dims = min(model.code_dim, MAX_TRAVERSAL_DIMS)
    reset = st.session_state.get(TRAVERSAL_RESET_KEY, 0)
    slider_col, image_col = st.columns([3, 2])
    z = z0.copy()
    with slider_col:
        columns = st.columns(2)
        for k in range(dims):
            key = f"vae.trav.{session.version}.{index}.{reset}.{k}"
            follow_code(key, float(np.clip(z0[k], -4.0, 4.0)))
            z[k] = columns[k % 2].slider(f"z{k + 1}", -4.0, 4.0, step=0.05, key=key)
        if model.code_dim > dims:
            st.caption(f"Sliders for the first {dims} of {model.code_dim} dimensions; the others stay at the "
                       "image's code.")
    with image_col:
        decoded = inference.decode_latents(model, z[None])  # (1, D)
        show_image_rows([np.stack([x.numpy(), decoded[0]])], session.data.image_shape, scale=4,
                        name="VAE decoding of the sliders",
                        caption=f"Left: test image #{index} (a {int(test.labels[index])}); right: the decoding of "
                                f"the sliders' z = ({', '.join(f'{v:.2f}' for v in z[:dims])}"
                                f"{', …' if model.code_dim > dims else ''}) · step {session.step:,}")
        st.button("Back to the image's code", key="vae.trav_reset", icon=":material/undo:", on_click=bump,
                  args=(TRAVERSAL_RESET_KEY,))
    with slider_col:
        values = np.linspace(-3.0, 3.0, 9)
        rows = [generation.latent_traversal(model, x, k, values) for k in range(dims)]  # each (9, D)
        show_image_rows(rows, session.data.image_shape, scale=2, name="VAE latent traversal",
                        caption=f"Row k sweeps z_k through {', '.join(f'{v:g}' for v in values)} with the other "
                                f"dimensions at the image's code (rows z1 … z{dims}, top to bottom) · "
                                f"step {session.step:,}")


# ---------------------------------------------------------------- the page
st.title("Variational autoencoder")
session = get_session(VARIANT)
shown_beta = float(session.config.beta) if session.config is not None else float(
    st.session_state.get(BETA_KEY, 1.0))
what_you_are_seeing(
    "The encoder maps an image $x$ to a Gaussian $q(z\\mid x) = \\mathcal N(\\mu, \\operatorname{diag}\\sigma^2)$ "
    "over a `latent_dim`-dimensional $z$ (heads `mean_head` → $\\mu$, `logvar_head` → $\\log\\sigma^2$); the "
    "decoder maps $z$ to pixel means $\\hat x = \\operatorname{sigmoid}(\\text{decoder}(z))$ of $p(x\\mid z)$ "
    "(`bernoulli`, or `gaussian` with variance $\\sigma_x^2$). Training maximises the ELBO, a lower bound on "
    "$\\log p(x)$, with $L$ = `n_samples` reparameterised draws per image. The loss curves show its two terms, "
    "`reconstruction` and `kl`, and `total`. Below: the posterior means of test images on a map (click one), the "
    "manifold of a 2-D latent, the exact posterior $p(z\\mid x)$ of the picked image beside $q(z\\mid x)$ with "
    "$\\log p(x) = \\mathrm{ELBO} + \\mathrm{KL}(q\\,\\|\\,p(z\\mid x))$, the KL of each latent "
    "dimension, the variance of the encoder's gradient by the reparameterisation trick beside the score-function "
    "estimator's (the same draws $\\varepsilon$; $f(z) = -\\log p(x\\mid z)$, gradients with respect to $\\mu$ "
    "and $\\log\\sigma^2$, $b$ = the mean of $f$ over independent draws), samples from the prior "
    "$p(z) = \\mathcal N(0, I)$, interpolations and traversals.",
    [r"\mathrm{ELBO}(x) = \mathbb{E}_{q(z\mid x)}\big[\log p(x\mid z)\big]"
     r" - \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)",
     r"\texttt{total} = \underbrace{-\frac{1}{L}\sum_{l=1}^{L}\log p\big(x\mid z^{(l)}\big)}_{\texttt{reconstruction}}"
     r" + \beta\,\underbrace{\frac12\sum_{j=1}^{d}\big(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\big)}_{\texttt{kl}}"
     rf",\qquad \beta = {shown_beta:g}\quad(\beta = 1:\ \texttt{{total}} = -\mathrm{{ELBO}})",
     r"z^{(l)} = \mu + \sigma \odot \varepsilon^{(l)},\qquad \varepsilon^{(l)} \sim \mathcal N(0, I),\qquad"
     r" \sigma = \exp\big(\tfrac12 \log\sigma^2\big)",
     r"\texttt{bernoulli}:\ \log p(x\mid z) = \sum_{i=1}^{D} x_i\log\hat x_i + (1 - x_i)\log(1 - \hat x_i)"
     r"\qquad \texttt{gaussian}:\ \log p(x\mid z) = -\frac12\sum_{i=1}^{D}"
     r"\Big[\frac{(x_i - \hat x_i)^2}{\sigma_x^2} + \log 2\pi\sigma_x^2\Big]",
     r"\text{reparameterised: } \frac{\partial f(\mu + \sigma\odot\varepsilon)}{\partial(\mu, \log\sigma^2)}"
     r"\qquad \text{score function: } \big(f(z) - b\big)\Big(\frac{z - \mu}{\sigma^2},\ "
     r"\frac12\Big(\frac{(z - \mu)^2}{\sigma^2} - 1\Big)\Big),\quad z = \mu + \sigma\odot\varepsilon,\ b \in "
     r"\{0,\ \bar f\}"],
)
beta = beta_slider(session)
session = training_panel(VARIANT, extra_views=live_views, fixed={"beta": beta})
if session.has_model and session.data is not None and session.model.code_dim != 2:
    tsne_section(session, "vae", picked_key=PICKED_KEY)
