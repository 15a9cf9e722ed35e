"""Sparse autoencoder page (layout only): the filter grid, the units' mean activations against rho, the KL-Bernoulli
curve with the units on it, and the penalty's share of the loss; all redrawn live."""

import streamlit as st

from vaelab import plots
from vaelab.analysis import history_rows, image_grids, inference, sparsity
from vaelab.ui.charts import show_chart
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.images import show_picture
from vaelab.ui.pages import require_app_frame
from vaelab.ui.session import TrainingSession, model_cached
from vaelab.ui.training_panel import training_panel

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

VARIANT = "sparse"
ACTIVATION_IMAGES = 1000  # test images over which rho_hat_j is measured
CLASSIC_RHO = 0.25  # the classic plot of KL(rho || rho_hat), a target to compare with
SHARE = "sparsity / total"


def filter_section(session: TrainingSession) -> None:
    weights = image_grids.first_layer_weights(session.model)  # (units, D)
    hidden = session.config.hidden_sizes
    what = "code unit" if not hidden else "first hidden unit"
    show_picture(image_grids.filter_grid(weights, session.data.image_shape), scale=2,
                 caption=f"Each {what}'s encoder weights as a {session.data.image_shape[0]}x"
                         f"{session.data.image_shape[1]} image ({len(weights)} units, each tile scaled to its own "
                         f"min..max) · step {session.step:,}", name="Sparse autoencoder filters")


def mean_activations(session: TrainingSession):
    """rho_hat_j: each code unit's mean activation over test images. -> (units,)"""
    test = session.data.test
    x = test.images[inference.spaced_indices(len(test), ACTIVATION_IMAGES)]
    codes = model_cached(session, "codes", lambda: inference.encode_dataset(session.model, x))  # (n, units)
    return sparsity.code_statistics(codes)["mean"], len(x)


def sparse_views(session: TrainingSession) -> None:
    """Live: filters | activation histogram, then KL curve | penalty share."""
    config = session.config
    rho_hat, n_images = mean_activations(session)
    filters, histogram = st.columns(2)
    with filters:
        filter_section(session)
    with histogram:
        fig = plots.activation_histogram(rho_hat, rho=config.rho,
                                         title=f"Mean activation ρ̂ⱼ of the {len(rho_hat)} units, step {session.step:,}")
        show_chart(fig, key="sparse.hist", name="Sparse mean activations", live=session.running)
    curve, share = st.columns(2)
    with curve:
        other = st.slider("Compare with another target ρ′", 0.01, 0.99, float(config.rho), step=0.01,
                          key=f"sparse.compare_rho.{session.version}",
                          help=f"Draws KL(ρ′ ‖ ρ̂) as a lighter curve; the model trains with ρ = {config.rho:g} "
                               f"(the form's rho). {CLASSIC_RHO} gives the classic picture.")
        fig = plots.kl_bernoulli_figure(config.rho, *sparsity.kl_bernoulli_curve(config.rho), unit_rho_hats=rho_hat,
                                        compare=(other, *sparsity.kl_bernoulli_curve(other)),
                                        title=f"KL(ρ ‖ ρ̂), training ρ = {config.rho:g}, step {session.step:,}")
        show_chart(fig, key="sparse.kl", name="Sparse KL-Bernoulli curve", live=session.running)
        st.caption(f"Markers: the units at their current ρ̂ⱼ ({n_images:,} test images) on the curve of the training "
                   f"ρ = {config.rho:g}. During training each unit pays its height on this curve at its batch mean "
                   f"ρ̂ⱼ, times β = {config.beta:g} (summed over units: `sparsity`). Move ρ′ off ρ for a second, "
                   "lighter curve; double-click the chart to see all of ρ̂ in (0, 1).")
    with share:
        rows = history_rows.term_share_history(session.history, "sparsity", name=SHARE)
        if not rows:
            st.caption("The penalty's share of the loss appears after the first steps.")
            return
        st.markdown("**The sparsity penalty's share of the loss** (`sparsity` / `total`)")
        fig = plots.loss_curves(rows, terms=[SHARE])
        fig.update_layout(yaxis_title="sparsity / total", margin={**plots.MARGIN, "t": 10})
        show_chart(fig, key="sparse.share", name="Sparsity penalty share", live=session.running)


st.title("Sparse autoencoder")
what_you_are_seeing(
    "One layer of sigmoid code units $h = \\sigma(Wx + b)$ (`code_size` = 144 by default, a 12x12 grid of filters). "
    "Besides reconstructing $x$, each unit's mean activation over the batch, $\\hat\\rho_j$, is pulled towards the "
    "target $\\rho$ (`rho`) by a KL-Bernoulli penalty weighted by $\\beta$ (`beta`): most units stay near 0 for any "
    "one image, and each filter (a row of $W$ drawn as an image) shows the pattern its unit detects. "
    "`weight_decay` ($\\lambda_w$) adds $\\lambda_w W$ to the gradient of every weight matrix in each Adam step "
    "(the gradient of $\\tfrac{\\lambda_w}{2}\\lVert W \\rVert^2$; biases are not decayed), so weights that "
    "no image uses, such as those to the always-blank border pixels, fade to 0. With `reconstruction` = "
    "`mse-mean` the reconstruction is averaged over the $D$ pixels (PyTorch's `nn.MSELoss()`, the lecture's code). "
    "Below the curves: the filters, "
    "the histogram of $\\hat\\rho_j$ with $\\rho$ marked, the curve $\\mathrm{KL}(\\rho \\| \\hat\\rho)$ with the "
    "units on it, and the penalty's share of the loss (`sparsity` / `total`).",
    [r"\hat\rho_j = \frac{1}{B} \sum_{b=1}^{B} h_j(x_b), \qquad "
     r"\mathrm{KL}(\rho \,\|\, \hat\rho_j) = \rho \log\frac{\rho}{\hat\rho_j}"
     r" + (1-\rho)\log\frac{1-\rho}{1-\hat\rho_j}",
     r"\mathcal{L} = \underbrace{\frac{1}{B}\sum_{b=1}^{B} \mathcal{L}_{\text{rec}}(x_b, \hat x_b)}"
     r"_{\texttt{reconstruction}} + \underbrace{\beta \sum_{j=1}^{H} \mathrm{KL}(\rho \,\|\, \hat\rho_j)}"
     r"_{\texttt{sparsity}}, \qquad \texttt{mse-mean}:\ \mathcal{L}_{\text{rec}} = \frac{1}{D}"
     r"\sum_{i=1}^{D} (\hat x_i - x_i)^2",
     r"\text{Adam step on } W \text{ with the gradient } \nabla_W \mathcal{L} + \lambda_w W"],
)
training_panel(VARIANT, extra_views=sparse_views)
