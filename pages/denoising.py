"""Denoising autoencoder page (layout only): corruption kind and level; original / corrupted / denoised rows of the
same test images, live; reconstruction error against noise level for this model and for the noisy input itself."""

import numpy as np
import streamlit as st
import torch

from vaelab import plots
from vaelab.analysis import inference, robustness
from vaelab.live_frames import fixed_test_indices, run_model
from vaelab.ui.charts import show_chart
from vaelab.ui.config_form import default_prefix, widget_key
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_image_rows
from vaelab.ui.pages import require_app_frame
from vaelab.ui.session import TrainingSession, get_session, model_cached
from vaelab.ui.training_panel import training_panel
from vaelab.variants.denoising import CORRUPTIONS, FRACTION_KINDS, Config, corrupt

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

VARIANT = "denoising"
N_ROW_IMAGES = 10
SWEEP_IMAGES = 200
SWEEP_LEVELS = tuple(float(a) for a in np.round(np.linspace(0.0, 1.0, 11), 2))
NOISE_SEED = 0  # the same noise draw on every redraw, so the rows change only as the model learns
CORRUPTION_LABELS = {"uniform": "uniform: add U(0, a)", "gaussian": "gaussian: add N(0, a²)",
                     "masking": "masking: zero a fraction a", "salt-and-pepper": "salt-and-pepper: a fraction a to 0/1"}


def corruption_widgets(locked: bool) -> dict:
    """The page's own corruption widgets; their values go to the config form as ``fixed`` fields.

    They live under the form's own keys, so loading a checkpoint shows its corruption here too."""
    prefix = default_prefix(VARIANT)
    kind_key, level_key = widget_key(prefix, "corruption"), widget_key(prefix, "noise_level")
    st.session_state.setdefault(kind_key, Config.corruption)
    st.session_state.setdefault(level_key, float(Config.noise_level))
    why = "Read-only while a run exists: Stop / Reset to change it." if locked else None
    left, right = st.columns(2)
    kind = left.selectbox("Corruption", CORRUPTIONS, key=kind_key, format_func=CORRUPTION_LABELS.get,
                          disabled=locked, persist_state="session",
                          help=why or "What the encoder sees during training: noise clamped to [0, 1], or a "
                                      "fraction of the pixels destroyed.")
    top = max(1.0, float(st.session_state[level_key]))  # a loaded model may use a stronger noise
    level = right.slider("Noise level a", 0.0, top, step=0.05, key=level_key, disabled=locked,
                         persist_state="session",
                         help=why or ("Fraction of the pixels hit." if kind in FRACTION_KINDS
                                      else "Noise scale (U(0, a) or standard deviation a)."))
    return {"corruption": kind, "noise_level": float(level)}


def noisy_rows(session: TrainingSession) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed test images (n, D), their corrupted copies under the model's corruption (n, D), and its output (n, D)."""
    data, model, config = session.data, session.model, session.config
    x = data.test.images[fixed_test_indices(data.test.labels, N_ROW_IMAGES)]
    noisy = corrupt(x, config.corruption, config.noise_level, generator=torch.Generator().manual_seed(NOISE_SEED))
    return x, noisy, run_model(model, model.reconstruct, noisy)


def sweep_figure(session: TrainingSession, kind: str):
    test = session.data.test
    x = test.images[inference.spaced_indices(len(test), SWEEP_IMAGES)]  # (n, D)

    def compute():
        return (robustness.corruption_sweep(session.model, x, kind, SWEEP_LEVELS, corrupt, seed=NOISE_SEED),
                robustness.corruption_baseline(x, kind, SWEEP_LEVELS, corrupt, seed=NOISE_SEED))

    denoised, noisy = model_cached(session, "sweep", compute, kind)
    fig = plots.line_chart(SWEEP_LEVELS, {"denoised by this model": denoised, "corrupted input (no model)": noisy},
                           title=f"Error against noise level ({kind})<br><sup>{len(x)} test images, "
                                 f"step {session.step:,}</sup>",
                           x_title="noise level a", y_title="Σᵢ (xᵢ − x̂ᵢ)² per image")
    # two title lines (charts.clear_of_toolbar makes room) and the legend below the plot fit a half-width column
    fig.update_layout(margin={**plots.MARGIN, "b": 90},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0})
    if kind == session.config.corruption:
        fig.add_vline(x=session.config.noise_level, line={"color": "grey", "dash": "dot"},
                      annotation_text="trained at")
    return fig


def denoising_views(session: TrainingSession) -> None:
    """Live: the three rows, and the error sweep (for the model's corruption kind or another)."""
    config = session.config
    rows, sweep = st.columns([5, 4])
    with rows:
        x, noisy, denoised = noisy_rows(session)
        show_image_rows([x, noisy, denoised], session.data.image_shape,
                        row_names=["test images", f"corrupted ({config.corruption}, a = {config.noise_level:g})",
                                   "denoised"], caption=f"step {session.step:,}", name="Denoising rows")
    with sweep:
        kind = st.selectbox("Noise in the sweep", CORRUPTIONS, index=CORRUPTIONS.index(config.corruption),
                            key=f"denoising.sweep_kind.{session.version}",
                            help="The model was trained on one kind of noise; try it on the others.")
        show_chart(sweep_figure(session, kind), key="denoising.sweep", name="Denoising error against noise level",
                   live=session.running)


st.title("Denoising autoencoder")
what_you_are_seeing(
    "The encoder $f$ sees a corrupted copy $\\tilde x$ of each image (`corruption`, level $a$ = `noise_level`); "
    "the loss compares the decoder's output with the *clean* $x$, so the network learns to undo the noise. "
    "uniform: $\\tilde x = \\mathrm{clamp}(x + a\\,u)$, $u \\sim U(0,1)$; gaussian: "
    "$\\tilde x = \\mathrm{clamp}(x + a\\,\\epsilon)$, $\\epsilon \\sim N(0,1)$; masking: each pixel set to 0 "
    "with probability $a$; salt-and-pepper: each pixel set to 0 or 1 with probability $a$. Fresh noise every "
    "step. Below the curves: test images, their corrupted copies and the model's output; then the error "
    "$\\sum_i (x_i - \\hat x_i)^2$ over noise levels, for the model and for the noisy input left as it is.",
    [r"\tilde x = \mathrm{corrupt}(x;\ \texttt{corruption}, a), \qquad \hat x = \sigma\big(g(f(\tilde x))\big)",
     r"\texttt{bce}:\ \mathcal{L}(x) = -\sum_{i=1}^{D} \big[x_i \log \hat x_i + (1-x_i)\log(1-\hat x_i)\big]"
     r"\qquad \texttt{mse}:\ \mathcal{L}(x) = \sum_{i=1}^{D} (x_i - \hat x_i)^2"],
)
fixed = corruption_widgets(locked=get_session(VARIANT).trainer is not None)
training_panel(VARIANT, extra_views=denoising_views, fixed=fixed, show_reconstructions=False)
