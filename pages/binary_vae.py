"""Binary-latent VAE page (layout only): score-function gradients with and without a baseline, a binary code,
samples as Bernoulli means and as binary images, and the same-size Gaussian VAE beside it."""

import math

import streamlit as st
import torch

from vaelab import companions, plots
from vaelab.analysis import history_rows, inference, latent_maps
from vaelab.checkpoints import CheckpointError, list_checkpoints
from vaelab.data import binarize
from vaelab.live_frames import fixed_test_indices, run_model
from vaelab.ui.charts import show_chart
from vaelab.ui.checkpoint_panel import checkpoint_label
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_image_rows
from vaelab.ui.latent_views import test_sample
from vaelab.ui.layout import side_by_side, train_under_progress_bar
from vaelab.ui.pages import require_app_frame
from vaelab.ui.session import TrainingSession, model_cached
from vaelab.ui.sidebar import current_settings
from vaelab.ui.training_panel import training_panel

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

MAX_LIVE_CODES = 1000  # test images on the live code map
N_SAMPLES = 10
PRIOR_ROWS = 3  # rows of N_SAMPLES prior samples: enough draws for the variety of 2^d codes to show
COMPANION_KEY = "binary_vae.companion"  # st.session_state: the Gaussian VAE shown beside (companions.Companion)
VARIANCE_SERIES = {"grad_variance": "with the baseline b", "grad_variance_no_baseline": "without (b = 0)"}


def variance_view(session: TrainingSession) -> None:
    history = session.history
    if history_rows.recent_mean(history, "grad_variance_no_baseline") is None:
        st.caption("The gradient-variance curves appear after the first training steps.")
        return
    fig = plots.train_curves(history, VARIANCE_SERIES, log_y=True, y_title="variance (log scale)",
                             title="Score-function gradient variance")
    show_chart(fig, key="binary.variance", name="Score-function gradient variance", live=session.running)
    with_b = history_rows.recent_mean(history, "grad_variance")
    without_b = history_rows.recent_mean(history, "grad_variance_no_baseline")
    trains_with = "with the baseline" if session.config.baseline else "without a baseline (b = 0)"
    ratio = f"{without_b / with_b:,.0f}x" if with_b else "—"
    st.caption(f"Both curves are measured on the same batches and the same sampled bits; the model trains "
               f"{trains_with}. Recently, subtracting b cuts the variance {ratio}: same mean gradient, far less "
               "noise.")
    st.caption("A Gaussian latent needs no score function: the VAE page draws its variance beside the "
               "reparameterisation trick's.")
    st.page_link("pages/vae.py", icon=":material/compare_arrows:", label="Variational autoencoder")


def code_map(session: TrainingSession) -> None:
    x, y, _ = test_sample(session, MAX_LIVE_CODES)

    def compute():
        codes = inference.encode_dataset(session.model, x)  # (n, d) Bernoulli means
        return latent_maps.latent_map(codes, y.numpy(), method="pca")[0]  # (n, 2)

    points = model_cached(session, "pca_map", compute)
    fig = plots.latent_scatter(points, y.numpy(), axis_titles=("PC 1", "PC 2"),
                               title=f"PCA of the bit probabilities μ<br><sup>{len(points):,} test images, "
                                     f"step {session.step:,}</sup>")
    show_chart(fig, key="binary.map", name="Binary VAE code map", live=session.running)


def sample_rows(session: TrainingSession) -> None:
    seed = current_settings().seed
    model = session.model
    n = PRIOR_ROWS * N_SAMPLES
    means = run_model(model, model.sample, n, None, torch.Generator().manual_seed(seed))  # (n, D)
    binary = binarize(means[:N_SAMPLES], "dynamic", generator=torch.Generator().manual_seed(seed))  # in {0, 1}
    rows = [*means.split(N_SAMPLES), binary]
    show_image_rows(rows, session.data.image_shape,
                    row_names=[f"{PRIOR_ROWS} rows of Bernoulli means p(x|z)",
                               "binary images x ~ Bernoulli(means) of the first row"],
                    caption=f"{n} draws z ~ Bernoulli(½)^{model.code_dim}, the same draws at every step (seed {seed}) "
                            f"· step {session.step:,}", name="Binary VAE prior samples")


def live_views(session: TrainingSession) -> None:
    if session.data is None:
        variance_view(session)
        return
    side_by_side(session, variance_view, code_map)
    st.markdown("**Samples from the prior**")
    sample_rows(session)


def kl_section(session: TrainingSession) -> None:
    st.subheader("The KL term, in closed form")
    st.latex(r"\mathrm{KL}\big(q(z\mid x)\,\|\,\mathrm{Bernoulli}(\tfrac12)^{d}\big) = \sum_{j=1}^{d}"
             r"\Big[\mu_j \log \mu_j + (1-\mu_j)\log(1-\mu_j) + \log 2\Big]"
             r"\;\in\;[0,\; d\log 2]")
    d = session.config.latent_dim if session.config is not None else None
    if d is not None:
        st.caption(f"With d = {d} bits the code can carry at most d log 2 = {d * math.log(2):.2f} nats "
                   "per image: that is the largest the KL term can get.")


def companion_controls(session: TrainingSession) -> None:
    """Train the same-size Gaussian VAE here, or load a saved one."""
    config, data, settings = session.config, session.data, current_settings()
    train_col, load_col = st.columns(2, gap="large")
    with train_col:
        epochs = st.number_input("Epochs", min_value=1, max_value=1000, value=min(config.epochs, 1000),
                                 key="binary_vae.companion_epochs",
                                 help="Epochs for the Gaussian VAE (starts at the binary VAE's setting).")
        target = companions.same_size_gaussian_vae(config, epochs=int(epochs))
        if st.button("Train the Gaussian VAE", key="binary_vae.companion_train", icon=":material/model_training:",
                     disabled=session.running, help="Pause training first." if session.running else
                     f"A VAE with {companions.size_summary(target)}; same data, seed and training settings."):
            try:
                companion = train_under_progress_bar(
                    lambda on_progress: companions.train_gaussian_vae(
                        target, data, seed=settings.seed, device=settings.device, on_progress=on_progress),
                    "Training the Gaussian VAE…")
            except (RuntimeError, ValueError) as error:
                st.error(f"Gaussian VAE not trained: {error}")
            else:
                st.session_state[COMPANION_KEY] = companion
    with load_col:
        infos = [i for i in list_checkpoints(variant="vae") if i.error is None]
        choice = st.selectbox("Saved VAE", infos, format_func=checkpoint_label, key="binary_vae.companion_choice",
                              placeholder="no saved VAE yet", index=0 if infos else None)
        if st.button("Load", key="binary_vae.companion_load", icon=":material/upload_file:", disabled=choice is None):
            try:
                st.session_state[COMPANION_KEY] = companions.load_gaussian_vae(choice.path, data.input_dim)
            except CheckpointError as error:
                st.error(f"Not loaded: {error}")


def companion_section(session: TrainingSession) -> None:
    st.subheader("Beside the same-size Gaussian VAE")
    st.markdown("Same hidden layers and the same number of latent units, but each unit a Gaussian "
                "(reparameterised gradients) instead of a bit (score-function gradients).")
    if session.data is None:
        st.caption("The data this model was trained on is not loaded here, so there is nothing to compare on.")
        return
    companion_controls(session)
    companion = st.session_state.get(COMPANION_KEY)
    if companion is None or companion.input_dim != session.data.input_dim:
        st.caption("Train a Gaussian VAE here or load a saved one to compare them on the same digits.")
        return
    size_note = ("same size" if companions.same_size(companion.config, session.config)
                 else f"not the same size as this binary VAE ({companions.size_summary(session.config)})")
    st.caption(f"Gaussian VAE: {companion.source}, {companions.size_summary(companion.config)} ({size_note}).")
    shape = session.data.image_shape
    idx = fixed_test_indices(session.data.test.labels, N_SAMPLES)
    x = session.data.test.images[idx]  # (n, D)
    binary_model = session.model
    rows = [x, run_model(binary_model, binary_model.reconstruct, x),
            run_model(companion.model, companion.model.reconstruct, x)]
    show_image_rows(rows, shape, row_names=["test images", "binary VAE", "Gaussian VAE"],
                    caption=f"Reconstructions of the same test images (binary VAE at step {session.step:,}).",
                    name="Binary and Gaussian VAE reconstructions")
    seed = current_settings().seed
    samples = [run_model(m, m.sample, N_SAMPLES, None, torch.Generator().manual_seed(seed))
               for m in (binary_model, companion.model)]
    show_image_rows(samples, shape, row_names=["binary VAE", "Gaussian VAE"],
                    caption=f"Samples from each prior, decoded to pixel means (binary VAE at step {session.step:,}).",
                    name="Binary and Gaussian VAE samples")
    binary_test = companions.test_negative_elbo(session.history)
    gaussian_test = companions.test_negative_elbo(companion.history)
    if binary_test is not None and gaussian_test is not None:
        st.caption(companions.negative_elbo_caption(binary_test, gaussian_test, companion.config))


st.title("Binary-latent VAE")
what_you_are_seeing(
    "The encoder gives logits $l$ and bit probabilities $\\mu = \\sigma(l)$ for $d$ latent bits (`latent_dim`); "
    "$z \\sim \\mathrm{Bernoulli}(\\mu)$ and the decoder turns $z$ into pixel probabilities. Training maximises "
    "the ELBO: `reconstruction` $= -\\mathbb{E}_q[\\log p(x\\mid z)]$ (sampled, `n_samples` draws) plus `kl` "
    "(exact). A sampled bit cannot be reparameterised, so the encoder's gradient of the reconstruction term is the "
    "score-function (REINFORCE) estimator below, with $f(z) = -\\log p(x\\mid z)$ and a running baseline $b$ "
    "(`baseline`, `baseline_decay`). Subtracting $b$ leaves the mean gradient unchanged, because "
    "$\\mathbb{E}_q[\\nabla \\log q] = 0$, and lowers its variance. The variance chart measures, on each batch, the "
    "variance across images of the per-image gradient $g$ with respect to the logits, averaged over the bits, "
    "with $b$ and with $b = 0$.",
    [r"\mathrm{ELBO}(x) = \mathbb{E}_{q(z\mid x)}\big[\log p(x\mid z)\big] - \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big),"
     r"\quad q(z\mid x) = \prod_{j=1}^{d}\mathrm{Bernoulli}(z_j;\mu_j),\quad p(z) = \mathrm{Bernoulli}(\tfrac12)^{d}",
     r"\nabla_{l}\,\mathbb{E}_{q}\big[f(z)\big] = \mathbb{E}_{q}\big[(f(z) - b)\,\nabla_{l}\log q(z\mid x)\big],"
     r"\quad \nabla_{l}\log q(z\mid x) = z - \mu,\quad b \leftarrow \texttt{decay}\cdot b + (1-\texttt{decay})"
     r"\cdot\overline{f}",
     r"g_i = \frac{1}{L}\sum_{s=1}^{L}\big(f(z^{(s)}_i) - b\big)\big(z^{(s)}_i - \mu_i\big),\qquad"
     r"\texttt{grad\_variance} = \frac{1}{d}\sum_{j=1}^{d}\mathrm{Var}_{i}\big[g_{ij}\big]"],
)
session = training_panel("binary-vae", extra_views=live_views)
kl_section(session)
if session.has_model:
    companion_section(session)
