"""Start, Pause, Resume, Stop/Reset and the run's status line."""

from __future__ import annotations

import streamlit as st

from vaelab.config import BaseConfig
from vaelab.ui import session as state
from vaelab.ui.config_form import set_form_values
from vaelab.ui.session import TrainingSession
from vaelab.ui.sidebar import Settings

STATUS_BADGES = {
    state.IDLE: ":gray-badge[Not started]",
    state.RUNNING: ":blue-badge[:material/autorenew: Training]",
    state.PAUSED: ":orange-badge[:material/pause: Paused]",
    state.FINISHED: ":green-badge[:material/check: Finished]",
    state.ERROR: ":red-badge[:material/error: Stopped]",
    state.VIEW_ONLY: ":violet-badge[:material/visibility: Loaded, view only]",
}


def can_start(session: TrainingSession) -> bool:
    return session.status in (state.IDLE, state.VIEW_ONLY)


def render_controls(session: TrainingSession, config: BaseConfig | None, settings: Settings, key_prefix: str) -> None:
    """The button row. Start builds a Trainer from ``config`` with the sidebar's data, seed and device."""
    cols = st.columns([1, 1, 1, 1.3, 3], vertical_alignment="center")
    start_clicked = cols[0].button("Start", key=f"{key_prefix}.start", type="primary", icon=":material/play_arrow:",
                                   disabled=config is None or not can_start(session),
                                   help="Train a new model with the settings above.")
    cols[1].button("Pause", key=f"{key_prefix}.pause", icon=":material/pause:", disabled=not session.running,
                   on_click=state.pause, args=(session,))
    cols[2].button("Resume", key=f"{key_prefix}.resume", icon=":material/resume:", disabled=not session.can_resume,
                   on_click=state.resume, args=(session,))
    cols[3].button("Stop / Reset", key=f"{key_prefix}.reset", icon=":material/stop:",
                   disabled=session.status == state.IDLE, on_click=_on_reset, args=(session, key_prefix),
                   help="Forget this run (asks first when it is not saved).")
    cols[4].markdown(_status_line(session))
    if start_clicked and config is not None:
        state.start(session, config, settings.data, settings.seed, settings.device)
        st.rerun()  # redraw the form read-only and register the live view with its timer
    _confirm_reset(session, key_prefix)
    _messages(session, settings)
    _recovery(session, key_prefix)


def _confirm_key(key_prefix: str) -> str:
    return f"{key_prefix}.confirm_reset"


def _on_reset(session: TrainingSession, key_prefix: str) -> None:
    """Stop / Reset: forget the run, or, when it is not saved, stop its training and ask first."""
    if not session.unsaved:
        state.reset(session)
        return
    state.pause(session)
    st.session_state[_confirm_key(key_prefix)] = session.version


def _on_discard(session: TrainingSession, key_prefix: str) -> None:
    st.session_state[_confirm_key(key_prefix)] = None
    state.reset(session)


def _confirm_reset(session: TrainingSession, key_prefix: str) -> None:
    """The question Stop / Reset asks before it discards a run that is in no file."""
    if st.session_state.get(_confirm_key(key_prefix)) != session.version or session.status == state.IDLE:
        return
    with st.container(border=True):
        st.warning(f"This run (step {session.step:,}) is not saved. Training is paused. Discard it?",
                   icon=":material/warning:")
        left, right, _ = st.columns([1.3, 1.6, 3])
        left.button("Discard the run", key=f"{key_prefix}.discard", type="primary", icon=":material/delete:",
                    on_click=_on_discard, args=(session, key_prefix))
        right.button("Keep it (Save below)", key=f"{key_prefix}.keep", icon=":material/undo:",
                     on_click=lambda: st.session_state.update({_confirm_key(key_prefix): None}))


def _recovery(session: TrainingSession, key_prefix: str) -> None:
    """After a divergence: continue from the restored (finite) weights with a smaller learning rate."""
    trainer = session.trainer
    if session.status != state.ERROR or trainer is None or trainer.error is None:
        return
    lr_key = f"{key_prefix}.recover_lr.{session.version}"
    if lr_key not in st.session_state:
        st.session_state[lr_key] = min(trainer.config.lr / 10, 1e-3)
    left, right = st.columns([1, 2], vertical_alignment="bottom")
    error_key = f"{key_prefix}.recover_error.{session.version}"
    left.number_input("New learning rate", key=lr_key, format="%g",
                      help="Allowed: (0, 10]. Training continues from the restored weights.")
    right.button("Resume with this learning rate", key=f"{key_prefix}.recover", icon=":material/resume:",
                 on_click=_on_recover, args=(session, lr_key, error_key))
    if st.session_state.get(error_key):
        st.error(st.session_state[error_key], icon=":material/error:")
    st.caption("If it stops again at once, the restored weights are already too far off: **Stop / Reset** and "
               "Start again with a smaller learning rate.")


def _on_recover(session: TrainingSession, lr_key: str, error_key: str) -> None:
    lr = st.session_state[lr_key]
    error = state.resume_with_lr(session, lr)
    st.session_state[error_key] = f"Not resumed: {error}" if error else None
    if error is None:
        set_form_values(session.variant, {"lr": lr})  # the read-only form shows the learning rate now in use


def _status_line(session: TrainingSession) -> str:
    line = STATUS_BADGES.get(session.status, session.status)
    if session.checkpoint is not None:
        line += f" from checkpoint `{session.checkpoint.path.stem}`"
    return line


def _messages(session: TrainingSession, settings: Settings) -> None:
    if session.message:
        if session.status == state.ERROR:
            st.error(session.message, icon=":material/error:")
        else:
            st.info(session.message, icon=":material/info:")
    data = session.data
    if data is not None and session.trainer is not None and data.spec != settings.data.spec:
        st.caption(f"This run uses {data.spec['train']} (test: {data.spec['test']}); the sidebar now selects "
                   f"{settings.data.spec['train']}. Stop / Reset and Start to train on it.")
