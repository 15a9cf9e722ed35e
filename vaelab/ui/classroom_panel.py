"""Classroom mode in the app: Home's "Prepare the class" and each variant page's "Open the lesson model".

Prepare the class trains the lesson model of every page (its default config) in the background on the training
workers (:mod:`vaelab.classroom`) and keeps the set as ``classroom`` checkpoints; a fragment polls the job and draws a
progress bar per model. Open the lesson model loads a page's classroom checkpoint, with its history, through the
Load button's own path (:func:`vaelab.ui.checkpoint_panel.open_checkpoint`).

Home draws before torch is imported: everything that needs it is imported inside the functions here.
"""

from __future__ import annotations

import streamlit as st

PROGRESS_REFRESH_SECONDS = 1.0
PROGRESS_COLUMNS = 3  # nine bars in three rows: the whole set on one screen
PREPARE_KEY = "classroom.prepare"
FEEDBACK_KEY = "classroom.feedback"
STATE_WORDS = {"waiting": "waiting for a worker", "training": "training", "saving": "saving",
               "saved": "saved", "failed": "failed"}


# -- Home --------------------------------------------------------------------------------------------------------
def prepare_class_section() -> None:
    """Home's section: what Prepare the class does, its button and a progress bar per model (no torch needed)."""
    from vaelab import classroom

    st.subheader("Prepare the class")
    st.markdown("Train the lesson model of every page in the background, on the sidebar's dataset and seed, and keep "
                "the set (`classroom` checkpoints, as `python -m vaelab pretrain` writes them). Each page then opens "
                "its model with one click, **Open the lesson model**, with every picture at once.")
    job = classroom.current_job()
    busy = job is not None and not job.done
    st.button("Prepare the class", key=PREPARE_KEY, type="primary", icon=":material/school:", disabled=busy,
              on_click=_start_preparation, help="Runs on worker processes; you can leave Home meanwhile.")
    feedback = st.session_state.get(FEEDBACK_KEY)
    if feedback:
        st.error(feedback, icon=":material/error:")
    _preparation_progress(busy)


def _sidebar_settings():
    """The sidebar's settings of the last run (None before the sidebar was ever drawn)."""
    from vaelab.ui import sidebar

    settings = st.session_state.get(sidebar._SETTINGS_KEY)
    return settings if isinstance(settings, sidebar.Settings) else None


def _start_preparation() -> None:
    """The button's callback: start the job on the data the sidebar uses (after any offline fallback)."""
    from vaelab import classroom
    from vaelab.config import ConfigError
    from vaelab.data import DataError
    from vaelab.ui.sidebar import cached_data, default_dataset

    st.session_state[FEEDBACK_KEY] = None
    settings = _sidebar_settings()
    try:
        variants, epochs = classroom.classroom_budget()
        data = settings.data if settings is not None else cached_data(default_dataset()).data
    except (ConfigError, DataError) as error:
        st.session_state[FEEDBACK_KEY] = f"Not started: {error}"
        return
    train, test = data.train.source, data.test.source
    classroom.start(classroom.lesson_specs(train, None if test == train else test,
                                           seed=settings.seed if settings else 0,
                                           device=settings.device if settings else "cpu",
                                           variants=variants, epochs=epochs))


def _preparation_progress(registered_busy: bool) -> None:
    @st.fragment(run_every=PROGRESS_REFRESH_SECONDS if registered_busy else None)
    def _draw() -> None:
        from vaelab import classroom
        from vaelab.variants import VARIANTS

        job = classroom.current_job()
        if job is None:
            return
        if job.done == registered_busy:  # it finished (or started) since the timer was set: redraw Home
            st.rerun(scope="app")
        models = job.progress()
        done = sum(m.state == classroom.SAVED for m in models)
        st.markdown(f"**{'Preparing' if not job.done else 'Prepared'}: {done} of {len(models)} lesson models "
                    f"saved** ({job.specs[0].train}, seed {job.specs[0].seed})")
        columns = st.columns(PROGRESS_COLUMNS)
        for i, m in enumerate(models):
            steps = f", {m.step:,} / {m.total:,} steps" if m.total else ""
            columns[i % PROGRESS_COLUMNS].progress(
                m.fraction, text=f"{VARIANTS[m.variant].title}: {STATE_WORDS[m.state]}{steps} ({m.fraction:.0%})")
        for m in models:
            if m.error:
                st.error(f"{VARIANTS[m.variant].title}: {m.error}", icon=":material/error:")

    _draw()


def saved_class_section() -> None:
    """The classroom checkpoints on disk, each with a link to its page and its dataset, epochs, test loss, date
    (Home draws it last: reading them imports torch)."""
    from vaelab import classroom
    from vaelab.ui.checkpoint_panel import checkpoint_details
    from vaelab.ui.pages import page_for_variant

    infos = classroom.lesson_checkpoints()
    if not infos:
        return
    with st.expander(f"The class as saved: {len(infos)} lesson models", icon=":material/inventory_2:"):
        for info in infos:
            spec = page_for_variant(info.variant)
            left, right = st.columns([1, 2], vertical_alignment="center")
            if spec is not None and spec.exists():
                left.page_link(spec.file, label=spec.title, icon=spec.icon)
            else:
                left.markdown(info.variant)
            right.caption(checkpoint_details(info))


# -- a variant page --------------------------------------------------------------------------------------------
def lesson_model_button(session, key_prefix: str, form_prefix: str) -> None:
    """One click to load the page's classroom checkpoint with its history (shown only when it exists), and what it
    is: dataset, epochs, test loss, date."""
    from vaelab import classroom
    from vaelab.ui.checkpoint_panel import checkpoint_details, open_checkpoint, show_feedback

    path = classroom.lesson_checkpoint(session.variant)
    if path is None:
        return
    info = next((i for i in classroom.lesson_checkpoints(variant=session.variant)), None)
    button, details = st.columns([1, 3], vertical_alignment="center")
    button.button("Open the lesson model", key=f"{key_prefix}.lesson", icon=":material/school:",
                  disabled=session.running, on_click=open_checkpoint,
                  args=(session.variant, str(path), key_prefix, form_prefix, "lesson"),
                  help="Pause the run first." if session.running else
                  "The model Prepare the class (Home) trained at this page's defaults, with its curves. Replaces the "
                  "current run.")
    if info is not None:
        details.caption(f"The class's model: {checkpoint_details(info)}")
    show_feedback(key_prefix, "lesson")
