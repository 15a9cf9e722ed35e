"""Autoencoder + Gaussian mixture page (layout only): a 2-D code, the mixture fitted on the training codes, and
samples from the mixture beside samples from N(0, I) in the same code space."""

import streamlit as st

from vaelab import plots
from vaelab.analysis import generation, image_grids, inference, latent_maps
from vaelab.config import ConfigError
from vaelab.ui.charts import show_chart
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_picture
from vaelab.ui.pages import require_app_frame
from vaelab.ui.session import RunBusy, TrainingSession, change_model, get_session, model_cached
from vaelab.ui.sidebar import current_settings
from vaelab.ui.training_panel import training_panel
from vaelab.variants.ae_gmm import COVARIANCE_TYPES

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

MAX_MAP_CODES = 2000  # training codes on the map
N_SAMPLES = 24
SAMPLE_COLUMNS = 8
KEY = "ae_gmm"


def training_sample(session: TrainingSession, n: int):
    """n evenly spaced training images (n, D) and labels (n,): the codes the mixture is fitted on."""
    idx = inference.spaced_indices(len(session.data.train), n)
    return session.data.train.images[idx], session.data.train.labels[idx]


def mixture_map(session: TrainingSession, drawn) -> None:
    """Training codes coloured by digit, the mixture's 2-sd ellipses, and the two sets of sampled codes."""
    model = session.model
    x, y = training_sample(session, MAX_MAP_CODES)
    codes = model_cached(session, "train_codes", lambda: inference.encode_dataset(model, x))  # (n, d)
    center, axes, method = latent_maps.code_plane(codes)
    points = latent_maps.project_to_plane(codes, center, axes)  # (n, 2)
    pca = method == "pca"
    fig = plots.latent_scatter(points, y.numpy(), axis_titles=("PC 1", "PC 2") if pca else ("z₁", "z₂"),
                               title=(f"Codes of {len(points):,} training images"
                                      + (f" (PCA of {model.code_dim}-D codes)" if pca else "")
                                      + (f", mixture of {model.mixture_components} ({model.mixture_covariance})"
                                         if bool(model.mixture_fitted) else "") + f", step {session.step:,}"))
    if drawn is not None:
        means, covs = latent_maps.project_gaussians(model.mixture_means, model.mixture_covariances, center, axes)
        plots.add_ellipses(fig, latent_maps.mixture_ellipses(means, covs), name="mixture components (2 sd)")
        plots.add_points(fig, latent_maps.project_to_plane(drawn["mixture_codes"], center, axes),
                         "codes drawn from the mixture", **plots.MIXTURE_DRAWS)
        plots.add_points(fig, latent_maps.project_to_plane(drawn["normal_codes"], center, axes),
                         "codes drawn from N(0, I)", **plots.NORMAL_DRAWS)
    fig.update_layout(height=540)  # room for the legend: 10 digits, the ellipses and the two kinds of draws
    show_chart(fig, key=f"{KEY}.map", name="AE + GMM code map", live=session.running)


def sample_pictures(session: TrainingSession, drawn) -> None:
    shape = session.data.image_shape
    left, right = st.columns(2)
    with left:
        show_picture(image_grids.image_grid(drawn["mixture_images"], shape, ncols=SAMPLE_COLUMNS), scale=2,
                     caption=f"Decoded codes drawn from the Gaussian mixture fitted on the training codes "
                             f"(step {session.step:,}).", name="AE + GMM mixture samples")
    with right:
        show_picture(image_grids.image_grid(drawn["normal_images"], shape, ncols=SAMPLE_COLUMNS), scale=2,
                     caption=f"Decoded codes drawn from N(0, I) in the same code space (step {session.step:,}).",
                     name="AE + GMM samples from N(0, I)")
    st.caption("The autoencoder alone is not a generator: nothing in its loss says where in the code space real "
               "codes lie, so N(0, I) draws (black × on the map) mostly land where no training image was "
               "encoded and decode to blurs or shapes that are no digit. The mixture models where the codes are "
               "(white diamonds), and its draws decode to digits.")


def live_views(session: TrainingSession) -> None:
    model = session.model
    if session.data is None:
        st.caption("The data this model was trained on is not loaded here: no code map.")
        return
    drawn = None
    if bool(model.mixture_fitted):
        seed = current_settings().seed
        drawn = model_cached(session, "drawn", lambda: generation.mixture_vs_normal_samples(model, N_SAMPLES, seed),
                             seed, model.mixture_version)
    if model.code_dim < 2:
        st.caption("A 1-unit code has no 2-D map; choose a code size of 2 or more.")
    else:
        mixture_map(session, drawn)
    if drawn is None:
        st.info("The mixture is fitted on the training codes at the end of every epoch (or with **Refit the "
                "mixture** above); its samples appear then.", icon=":material/hourglass_top:")
        return
    sample_pictures(session, drawn)


def mixture_controls(session: TrainingSession) -> tuple[int, str]:
    """The mixture's settings (also the run's starting values) and the on-demand refit."""
    st.markdown("**Gaussian mixture over the codes**")
    k_col, cov_col, refit_col = st.columns([2, 1, 1], vertical_alignment="bottom")
    k = k_col.slider("Mixture components", 1, 30, 10, key=f"{KEY}.n_components",
                     help="Gaussians in the mixture fitted on the training codes.")
    cov = cov_col.selectbox("Covariance type", COVARIANCE_TYPES, key=f"{KEY}.covariance_type",
                            help="full: any ellipse; diag: axis-aligned; spherical: circles; tied: one shared shape.")
    refit_help = ("Fit a new mixture on the training codes with these values; the autoencoder is not retrained. "
                  "Later epochs keep these values.")
    if refit_col.button("Refit the mixture", key=f"{KEY}.refit", icon=":material/refresh:", help=refit_help,
                        disabled=not session.has_model or session.data is None):
        try:
            change_model(session, lambda model: model.refit_mixture(session.data.train.images, k, cov))
        except (ConfigError, ValueError, RunBusy) as error:
            st.error(f"Mixture not refit: {error}")
    model = session.model
    if model is not None and bool(model.mixture_fitted):
        st.caption(f"In the model now: {model.mixture_components} components, {model.mixture_covariance} "
                   "covariances, refit on the training codes after every epoch.")
    return k, cov


st.title("Autoencoder + Gaussian mixture")
what_you_are_seeing(
    "A plain autoencoder (encoder $f$, decoder $g$, no KL term) learns a `code_size`-unit code $z = f(x)$ by "
    "lowering the reconstruction loss (`reconstruction`, summed over the $D$ pixels, averaged over a batch). "
    "It says nothing about where codes lie, so after every epoch a Gaussian mixture with `n_components` "
    "components $(w_k, m_k, C_k)$ is fitted on the training codes (scikit-learn, `covariance_type`). To generate, "
    "draw a component, a code from it, and decode. The map shows the codes coloured by digit with each "
    "component's 2-standard-deviation ellipse (for codes wider than 2, their PCA plane); below, decoded draws "
    "from the mixture beside decoded draws from $N(0, I)$ in the same code space.",
    [r"\mathcal{L}(x) = -\sum_{i=1}^{D}\big[x_i\log\hat x_i + (1-x_i)\log(1-\hat x_i)\big],"
     r"\qquad \hat x = \sigma\big(g(f(x))\big)\qquad(\texttt{mse}: \textstyle\sum_i (x_i - \hat x_i)^2)",
     r"p(z) = \sum_{k=1}^{K} w_k\,\mathcal{N}(z;\, m_k, C_k)\quad\text{fitted by EM on } \{f(x_n)\}_{n=1}^{N}",
     r"k \sim \mathrm{Categorical}(w),\quad z \sim \mathcal{N}(m_k, C_k),\quad x = \sigma(g(z))"
     r"\qquad\text{versus}\qquad z \sim \mathcal{N}(0, I),\quad x = \sigma(g(z))"],
)
n_components, covariance_type = mixture_controls(get_session("ae-gmm"))
session = training_panel("ae-gmm", extra_views=live_views,
                         fixed={"n_components": n_components, "covariance_type": covariance_type})
