"""A run's downloads: its config (JSON), its history (CSV) and the ``python -m vaelab train ...`` command that trains
it again (:mod:`vaelab.run_export` makes the files).

Every button has ``on_click="ignore"``: a download never reruns the page, so it never interrupts a running training.
The history is made when the button is clicked (a callable: the rows of that moment, not of the last full rerun).
"""

from __future__ import annotations

from functools import partial

import streamlit as st

from vaelab.run_export import RunRecord, config_json, file_stem, history_csv, train_command
from vaelab.ui.session import TrainingSession


def run_record(session: TrainingSession) -> RunRecord | None:
    """What the session's run is (trained here or loaded), or None before there is one."""
    config = session.config
    if config is None:
        return None
    trainer, ckpt = session.trainer, session.checkpoint
    data = session.data
    if data is not None:
        train, test = data.train.source, data.test.source
    else:  # a view-only checkpoint whose data could not be loaded: the sources it names
        spec = (ckpt.meta.get("dataset") if ckpt is not None else None) or {}
        train, test = spec.get("train") or "mnist-5k", spec.get("test")
    seed = getattr(trainer, "seed", None)
    if seed is None:
        seed = int((ckpt.trainer_state or {}).get("seed", 0)) if ckpt is not None else 0
    device = str(getattr(trainer, "device", "cpu"))
    return RunRecord(session.variant, config, train, None if test == train else test, int(seed), device)


def _history_text(session: TrainingSession) -> str:
    return history_csv(list(session.history))


def run_downloads(session: TrainingSession, key_prefix: str) -> None:
    """An expander with the three downloads and the command shown (its copy button), once a run exists."""
    run = run_record(session)
    if run is None:
        return
    stem = file_stem(run, session.config.epochs)
    command = train_command(run)
    with st.expander("Download this run", icon=":material/download:"):
        config_col, history_col, command_col = st.columns(3)
        config_col.download_button("Config (JSON)", config_json(run), file_name=f"{stem}.json",
                                   mime="application/json", key=f"{key_prefix}.download_config", on_click="ignore",
                                   icon=":material/data_object:", help="Variant, data, seed, device and every field.")
        history_col.download_button("History (CSV)", partial(_history_text, session), file_name=f"{stem}-history.csv",
                                    mime="text/csv", key=f"{key_prefix}.download_history", on_click="ignore",
                                    icon=":material/table:", help="Every logged train and test row so far.")
        command_col.download_button("Train command", command + "\n", file_name=f"{stem}.sh", mime="text/x-shellscript",
                                    key=f"{key_prefix}.download_command", on_click="ignore",
                                    icon=":material/terminal:", help="Trains this configuration again from scratch.")
        st.caption("Trains this run again from scratch (the whole run as configured):")
        st.code(command, language="bash", wrap_lines=True)
