"""Start, Pause, Resume, Stop/Reset and the run's status line."""

from __future__ import annotations

import streamlit as st

from vaelab.config import BaseConfig
from vaelab.ui import session as state
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
                   disabled=session.status == state.IDLE, on_click=state.reset, args=(session,),
                   help="Forget this run (save it first to keep it).")
    cols[4].markdown(_status_line(session))
    if start_clicked and config is not None:
        state.start(session, config, settings.data, settings.seed, settings.device)
        st.rerun()  # redraw the form read-only and register the live view with its timer
    _messages(session, settings)


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
