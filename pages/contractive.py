"""Contractive autoencoder page (layout only): the Jacobian norm over training beside the same net's without the
penalty (trained alongside), and how much the code moves under input perturbations for both."""

from functools import partial

import streamlit as st

from vaelab import plots
from vaelab.analysis import history_rows, inference, robustness
from vaelab.baselines import ReferenceRun
from vaelab.live_frames import run_model
from vaelab.ui.charts import show_chart
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.layout import side_by_side
from vaelab.ui.pages import require_app_frame
from vaelab.ui.reference import reference_beside
from vaelab.ui.session import TrainingSession, model_cached
from vaelab.ui.training_panel import training_panel
from vaelab.variants.base import Variant

require_app_frame()  # a deep link as a fresh server's first request: run inside app.py

VARIANT = "contractive"
PROBE_IMAGES = 100  # test images the sensitivity and the current Jacobian norm are measured on (live: keep it cheap)
EPS_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)  # perturbation lengths ||delta|| (an image has length ~9)
N_DIRECTIONS = 4
JACOBIAN = "‖J<sub>f</sub>(x)‖<sub>F</sub><sup>2</sup>"  # Plotly's markup for ||J_f(x)||_F^2
REFERENCE = "same net without the penalty (λ = 0)"


def probe_images(session: TrainingSession):
    test = session.data.test
    return test.images[inference.spaced_indices(len(test), PROBE_IMAGES)]  # (n, D)


def mean_jacobian(model: Variant, x) -> float:
    """Mean ||J_f(x)||_F^2 over the rows of x."""
    return float(run_model(model, model.jacobian_norm_sq, x).mean())


def reference_net(session: TrainingSession) -> ReferenceRun | None:
    """The same config with lam = 0 (same data, seed and epochs), trained alongside up to this model's step; None
    when the model itself has lam = 0 or its data is not loaded."""
    if session.config.lam == 0 or session.data is None:
        return None
    x = probe_images(session)
    return reference_beside(session, VARIANT, partial(mean_jacobian, x=x), lam=0.0)


def reference_progress(session: TrainingSession, reference: ReferenceRun) -> str:
    """'trained alongside in 3.1 s' (and how far it is behind this model while it catches up)."""
    text = f"trained alongside in {reference.seconds:.1f} s"
    if not reference.caught_up(session.step):
        text += (f", catching up: epoch {reference.epoch:.1f} of this model's "
                 f"{session.step / reference.trainer.steps_per_epoch:.1f}")
    return text


def jacobian_section(session: TrainingSession, reference: ReferenceRun | None) -> None:
    lam = session.config.lam
    x = probe_images(session)
    now = model_cached(session, "jacobian", lambda: mean_jacobian(session.model, x))
    if lam == 0:
        st.info("λ = 0: the contractive term is not computed during training, so there is no curve. "
                f"Now: $\\lVert J_f(x) \\rVert_F^2$ = {now:.3g} on average over {len(x)} test images.",
                icon=":material/info:")
        return
    rows = history_rows.term_history(session.history, "contractive", scale=1.0 / lam, name=JACOBIAN)
    if not rows:
        st.caption("The Jacobian norm appears after the first steps.")
        return
    st.markdown(r"**$\lVert J_f(x) \rVert_F^2$ over training**"
                + (", with and without the penalty" if reference is not None else ""))
    fig = plots.loss_curves(rows, terms=[JACOBIAN])
    if reference is not None:
        plots.add_curve(fig, *zip(*reference.points, strict=True), name=REFERENCE)
    fig.update_layout(yaxis_title=f"{JACOBIAN} per image")
    show_chart(fig, key="contractive.jacobian", name="Contractive Jacobian norm", live=session.running)
    caption = (f"This model (λ = {lam:g}): the `contractive` term divided by λ, train rows averaging the batches, "
               f"test rows the test set at each epoch end; now {now:.3g} on {len(x)} test images.")
    if reference is not None:
        caption += (f" The {REFERENCE}: the same layers, data, seed and epochs, "
                    f"{reference_progress(session, reference)}; measured on the same {len(x)} test images after "
                    "each epoch.")
    st.caption(caption)


def sensitivity_section(session: TrainingSession, reference: ReferenceRun | None) -> None:
    x = probe_images(session)
    lines = {f"contractive (λ = {session.config.lam:g})": model_cached(
        session, "sensitivity", lambda: robustness.sensitivity_curve(session.model, x, EPS_VALUES, N_DIRECTIONS))}
    level = reference is not None and reference.trainer.step == session.step  # both nets as far trained
    if level:
        lines[REFERENCE] = model_cached(
            session, "reference_sensitivity",
            lambda: robustness.sensitivity_curve(reference.trainer.model, x, EPS_VALUES, N_DIRECTIONS))
    st.markdown(f"**Code change against input perturbation size** (step {session.step:,})")
    fig = plots.line_chart(EPS_VALUES, lines, x_title="perturbation size ε = ‖δ‖", y_title="‖f(x + δ) − f(x)‖")
    fig.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    show_chart(fig, key="contractive.sensitivity", name="Contractive code sensitivity", live=session.running)
    if reference is None:
        beside = "λ = 0: this model is the net without the penalty; set λ > 0 to compare."
    elif level:
        beside = f"Both nets after {reference.epoch:.1f} epochs."
    else:
        beside = (f"The {REFERENCE} joins this chart when both have trained as long "
                  f"({reference_progress(session, reference)}).")
    st.caption(f"Mean over {len(x)} test images and {N_DIRECTIONS} random directions δ of length ε (pixels not "
               f"clipped). {beside}")


def contractive_views(session: TrainingSession) -> bool:
    """Live: Jacobian norm over training | sensitivity, each beside the net without the penalty. True while that
    reference is still catching up with this model (the views keep redrawing)."""
    reference = reference_net(session)
    side_by_side(session, partial(jacobian_section, reference=reference),
                 partial(sensitivity_section, reference=reference))
    return reference is not None and not reference.caught_up(session.step)


st.title("Contractive autoencoder")
what_you_are_seeing(
    "Besides reconstructing $x$, the encoder $f$ pays $\\lambda$ (`lam`) times the squared Frobenius norm of its "
    "Jacobian $J_f(x) = \\partial f(x) / \\partial x$, so the code changes little when the input moves a little "
    "(except along directions the data needs). For the default encoder, one sigmoid layer of `code_size` units, "
    "the norm has a closed form; deeper encoders use autograd. Below the curves: $\\lVert J_f(x) \\rVert_F^2$ over "
    "training (the `contractive` term divided by $\\lambda$), and the code change $\\lVert f(x+\\delta) - "
    "f(x) \\rVert$ against the perturbation size $\\lVert \\delta \\rVert$, each beside the same net trained "
    "alongside without the penalty ($\\lambda = 0$: same layers, data, seed and epochs).",
    [r"\mathcal{L}(x) = \underbrace{\mathcal{L}_{\text{rec}}(x, \hat x)}_{\texttt{reconstruction}}"
     r" + \underbrace{\lambda\, \lVert J_f(x) \rVert_F^2}_{\texttt{contractive}}, \qquad "
     r"J_f(x) = \frac{\partial f(x)}{\partial x} \in \mathbb{R}^{H \times D}",
     r"f(x) = h = \sigma(Wx + b):\quad \lVert J_f(x) \rVert_F^2 = \sum_{j=1}^{H} \big(h_j (1 - h_j)\big)^2 "
     r"\sum_{i=1}^{D} W_{ji}^2"],
)
training_panel(VARIANT, extra_views=contractive_views)
