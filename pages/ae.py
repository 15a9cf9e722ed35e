"""Autoencoder page (layout only): train live; reconstructions, code values, and a map of the codes."""

import plotly.graph_objects as go
import streamlit as st
import torch

from vaelab import analysis, plots
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.session import TrainingSession, latest_cached, model_cached
from vaelab.ui.sidebar import current_settings
from vaelab.ui.training_panel import training_panel

MAX_LIVE_CODES = 2000  # test images encoded for the live views
TSNE_SIZES = (500, 1000, 2000)


def test_sample(session: TrainingSession, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n evenly spaced test images (n, D) and labels (n,)."""
    test = session.data.test
    n = min(n, len(test))
    idx = torch.arange(n) * len(test) // n
    return test.images[idx], test.labels[idx]


def code_views(session: TrainingSession) -> None:
    """Live: histogram of code values and, for a 2-unit code, the code map coloured by digit."""
    x, y = test_sample(session, MAX_LIVE_CODES)
    codes = model_cached(session, "test_codes", lambda: analysis.encode_dataset(session.model, x, y))  # (n, code)
    stats = analysis.code_statistics(codes)
    two_d = codes.shape[1] == 2
    left, right = st.columns(2) if two_d else (st.container(), None)
    with left:
        hist = go.Figure(go.Histogram(x=stats["values"], nbinsx=60, marker_color=plots.TERM_COLORS[0]))
        hist.update_layout(title=f"Code values ({codes.shape[1]} units x {len(codes):,} test images)",
                           xaxis_title="code value", yaxis_title="count", margin=plots.MARGIN, bargap=0.02)
        st.plotly_chart(hist, key=f"ae.hist.{session.redraws}")
        st.caption(f"Units never active: {stats['dead_units']} · active units per image: "
                   f"{stats['active_per_example']:.1f} (active: |value| > 1e-6)")
    if right is not None:
        with right:
            fig = plots.latent_scatter(codes, y.numpy(), title="Code of each test image, coloured by digit")
            st.plotly_chart(fig, key=f"ae.map.{session.redraws}")


def tsne_section(session: TrainingSession) -> None:
    """Codes wider than 2 units: a t-SNE map on request (seconds of work), cached per model state and size."""
    st.subheader("t-SNE map of the codes")
    n = st.select_slider("Test images in the map", TSNE_SIZES, value=1000, key="ae.tsne_n")
    seed = current_settings().seed

    def compute():
        x, y = test_sample(session, n)
        points, _ = analysis.latent_map(analysis.encode_dataset(session.model, x, y), y.numpy(), method="tsne",
                                        seed=seed)
        return points, y.numpy()

    if st.button("Draw t-SNE map", key="ae.tsne_draw", icon=":material/scatter_plot:", disabled=session.running,
                 help="Pause training first." if session.running else "Takes a few seconds."):
        with st.spinner(f"t-SNE on {n:,} codes…"):
            model_cached(session, "tsne", compute, n, seed)
    found = latest_cached(session, "tsne", n, seed)
    if found is None:
        st.caption(f"The code has {session.config.code_size} units: t-SNE places similar codes near each other "
                   "in 2-D. Press the button to draw it.")
        return
    step, (points, labels) = found
    st.plotly_chart(plots.latent_scatter(points, labels, axis_titles=("t-SNE 1", "t-SNE 2"),
                                         title=f"t-SNE of {len(points):,} test codes (step {step:,})"),
                    key=f"ae.tsne.{session.version}.{step}.{n}")
    if step != session.step:
        st.caption(f"Drawn at step {step:,}; the model is at step {session.step:,} now. Draw again to update.")


st.title("Autoencoder")
what_you_are_seeing(
    "An encoder $f$ squeezes each image $x \\in [0,1]^D$ into a short code $z = f(x)$ (`code_size` units); "
    "a decoder $g$ maps it back to pixel means $\\hat x = \\sigma(g(z))$. Training lowers the reconstruction "
    "loss averaged over a batch, summed over the $D$ pixels (`reconstruction`). Below the curves: test images "
    "over their reconstructions, the distribution of code values, and a 2-D map of the codes (the code itself "
    "when it has 2 units, else t-SNE).",
    [r"\texttt{bce}:\quad \mathcal{L}(x) = -\sum_{i=1}^{D} \big[x_i \log \hat x_i + (1-x_i)\log(1-\hat x_i)\big]",
     r"\texttt{mse}:\quad \mathcal{L}(x) = \sum_{i=1}^{D} (x_i - \hat x_i)^2,"
     r"\qquad \hat x = \sigma\big(g(f(x))\big)"],
)
session = training_panel("ae", extra_views=code_views)
if session.has_model and session.config.code_size != 2:
    tsne_section(session)
