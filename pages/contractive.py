"""Contractive autoencoder page (layout only): the Jacobian norm over training, and how much the code moves under
input perturbations for this model beside a plain autoencoder of the same size (trained here on demand)."""

import streamlit as st

from vaelab import analysis, plots
from vaelab.baselines import plain_autoencoder_config, train_plain_autoencoder
from vaelab.ui.explain import what_you_are_seeing
from vaelab.ui.layout import side_by_side, train_under_progress_bar
from vaelab.ui.session import TrainingSession, model_cached, run_model
from vaelab.ui.sidebar import current_settings
from vaelab.ui.training_panel import training_panel

VARIANT = "contractive"
PROBE_IMAGES = 100  # test images the sensitivity and the current Jacobian norm are measured on (live: keep it cheap)
EPS_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)  # perturbation lengths ||delta|| (an image has length ~9)
N_DIRECTIONS = 4
JACOBIAN = "‖J<sub>f</sub>(x)‖<sub>F</sub><sup>2</sup>"  # Plotly's markup for ||J_f(x)||_F^2
BASELINE_KEY = "contractive.baseline"  # the plain autoencoder trained on this page: {"key", "trainer", "curve"}


def probe_images(session: TrainingSession):
    test = session.data.test
    return test.images[analysis.spaced_indices(len(test), PROBE_IMAGES)]  # (n, D)


def jacobian_section(session: TrainingSession) -> None:
    lam = session.config.lam
    x = probe_images(session)
    now = model_cached(session, "jacobian", lambda: float(run_model(session.model, session.model.jacobian_norm_sq,
                                                                    x).mean()))
    if lam == 0:
        st.info("λ = 0: the contractive term is not computed during training, so there is no curve. "
                f"Now: $\\lVert J_f(x) \\rVert_F^2$ = {now:.3g} on average over {len(x)} test images.",
                icon=":material/info:")
        return
    rows = analysis.term_history(session.history, "contractive", scale=1.0 / lam, name=JACOBIAN)
    if not rows:
        st.caption("The Jacobian norm appears after the first steps.")
        return
    st.markdown(r"**$\lVert J_f(x) \rVert_F^2$ over training** (the `contractive` term divided by $\lambda$)")
    fig = plots.loss_curves(rows, terms=[JACOBIAN])
    fig.update_layout(yaxis_title=f"{JACOBIAN} per image")
    st.plotly_chart(fig, key=f"contractive.jacobian.{session.redraws}")
    st.caption(f"Train rows average the batches, test rows are the test set at each epoch end (λ = {lam:g}). "
               f"Now: {now:.3g} on average over {len(x)} test images.")


def trained_epochs(session: TrainingSession) -> int:
    """Epochs this model has trained (at least 1): the plain autoencoder trains as long."""
    if session.trainer is not None:
        return max(1, session.trainer.epoch)
    return max(1, int(session.checkpoint.meta.get("epochs") or 1))


def baseline_button(session: TrainingSession) -> dict | None:
    """The plain autoencoder of the same size, data, seed and epochs: trained when the button is pressed."""
    settings = current_settings()
    seed = session.trainer.seed if session.trainer is not None else settings.seed
    epochs = trained_epochs(session)
    config = plain_autoencoder_config(session.config, epochs=epochs)
    key = repr((config.to_dict(), session.data.spec, seed, settings.device))
    found = st.session_state.get(BASELINE_KEY)
    found = found if isinstance(found, dict) and found["key"] == key else None
    label = f"Train a plain autoencoder of the same size ({epochs} epoch{'s' if epochs != 1 else ''})"
    if st.button(label, key="contractive.train_baseline", icon=":material/model_training:",
                 disabled=session.running or found is not None,
                 help="Pause training first." if session.running else
                 "Same layers, data, seed and epochs, without the penalty (a few seconds)."):
        trainer = train_under_progress_bar(
            lambda on_progress: train_plain_autoencoder(session.config, session.data, seed=seed,
                                                        device=settings.device, epochs=epochs, on_progress=on_progress),
            "Training the plain autoencoder…", text=lambda t: f"Plain autoencoder: step {t.step:,}/{t.total_steps:,}")
        if trainer.error is not None:
            st.error(f"The plain autoencoder did not train: {trainer.error}")
            return None
        curve = analysis.sensitivity_curve(trainer.model, probe_images(session), EPS_VALUES, N_DIRECTIONS)
        st.session_state[BASELINE_KEY] = {"key": key, "trainer": trainer, "curve": curve}
        st.rerun()  # redraw with the button disabled and both curves
    return found


def sensitivity_section(session: TrainingSession) -> None:
    baseline = baseline_button(session)
    x = probe_images(session)
    curve = model_cached(session, "sensitivity",
                         lambda: analysis.sensitivity_curve(session.model, x, EPS_VALUES, N_DIRECTIONS))
    lines = {f"contractive (λ = {session.config.lam:g})": curve}
    if baseline is not None:
        lines["plain autoencoder"] = baseline["curve"]
    st.markdown("**Code change against input perturbation size**")
    fig = plots.line_chart(EPS_VALUES, lines, x_title="perturbation size ε = ‖δ‖", y_title="‖f(x + δ) − f(x)‖")
    st.plotly_chart(fig, key=f"contractive.sensitivity.{session.redraws}")
    st.caption(f"Mean over {len(x)} test images and {N_DIRECTIONS} random directions δ of length ε (pixels not "
               "clipped). " + ("" if baseline is not None else "Train the plain autoencoder above to compare."))


def contractive_views(session: TrainingSession) -> None:
    """Live: Jacobian norm over training | sensitivity beside a plain autoencoder."""
    side_by_side(session, jacobian_section, sensitivity_section)


st.title("Contractive autoencoder")
what_you_are_seeing(
    "Besides reconstructing $x$, the encoder $f$ pays $\\lambda$ (`lam`) times the squared Frobenius norm of its "
    "Jacobian $J_f(x) = \\partial f(x) / \\partial x$, so the code changes little when the input moves a little "
    "(except along directions the data needs). For the default encoder, one sigmoid layer of `code_size` units, "
    "the norm has a closed form; deeper encoders use autograd. Below the curves: $\\lVert J_f(x) \\rVert_F^2$ over "
    "training (the `contractive` term divided by $\\lambda$), and the code change $\\lVert f(x+\\delta) - "
    "f(x) \\rVert$ against the perturbation size $\\lVert \\delta \\rVert$ for this model and for a plain "
    "autoencoder of the same size.",
    [r"\mathcal{L}(x) = \underbrace{\mathcal{L}_{\text{rec}}(x, \hat x)}_{\texttt{reconstruction}}"
     r" + \underbrace{\lambda\, \lVert J_f(x) \rVert_F^2}_{\texttt{contractive}}, \qquad "
     r"J_f(x) = \frac{\partial f(x)}{\partial x} \in \mathbb{R}^{H \times D}",
     r"f(x) = h = \sigma(Wx + b):\quad \lVert J_f(x) \rVert_F^2 = \sum_{j=1}^{H} \big(h_j (1 - h_j)\big)^2 "
     r"\sum_{i=1}^{D} W_{ji}^2"],
)
training_panel(VARIANT, extra_views=contractive_views)
