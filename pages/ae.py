"""Autoencoder page (layout only): train live; reconstructions, code values, and a map of the codes."""

import plotly.graph_objects as go
import streamlit as st

from vaelab import plots
from vaelab.analysis import sparsity
from vaelab.ui.charts import show_chart
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.latent_views import test_codes, tsne_section
from vaelab.ui.pages import require_app_frame
from vaelab.ui.session import TrainingSession
from vaelab.ui.training_panel import training_panel

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py


def code_views(session: TrainingSession) -> None:
    """Live: histogram of code values and, for a 2-unit code, the code map coloured by digit."""
    codes, labels, _ = test_codes(session)  # (n, code), (n,)
    stats = sparsity.code_statistics(codes)
    two_d = codes.shape[1] == 2
    left, right = st.columns(2) if two_d else (st.container(), None)
    with left:
        hist = go.Figure(go.Histogram(x=stats["values"], nbinsx=60, marker_color=plots.TERM_COLORS[0]))
        hist.update_layout(title=f"Code values ({codes.shape[1]} units x {len(codes):,} test images), "
                                 f"step {session.step:,}",
                           xaxis_title="code value", yaxis_title="count", margin=plots.MARGIN, bargap=0.02)
        show_chart(hist, key="ae.hist", name="Autoencoder code values", live=session.running)
        st.caption(f"Units never active: {stats['dead_units']} · active units per image: "
                   f"{stats['active_per_example']:.1f} (active: |value| > 1e-6)")
    if right is not None:
        with right:
            fig = plots.latent_scatter(codes, labels,
                                       title=f"Code of each test image, coloured by digit (step {session.step:,})")
            show_chart(fig, key="ae.map", name="Autoencoder code map", live=session.running)


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
    tsne_section(session, "ae", f"The code has {session.config.code_size} units: t-SNE places similar codes near "
                 "each other in 2-D. Press the button to draw it.")
