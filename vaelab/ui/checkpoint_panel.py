"""Save the current run under a name (asking before overwriting), load, download and upload the variant's checkpoints.

A loaded checkpoint becomes a paused run that Resume continues (``restore_trainer``), or, when its training data
cannot be restored here, a view-only model with its stored curves. Loading also fills the config form with the
checkpoint's values, so Stop / Reset then Start trains the same configuration again.

Uploads are size-limited (``MAX_UPLOAD_MB``, also the server's ``maxUploadSize``), read only with the weights-only
loader and checked as a checkpoint of this page's variant before they are stored (``import_checkpoint``). A run
stopped by a non-finite loss has its weights back at the last finite state: Save stores that state.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import streamlit as st

from vaelab.checkpoints import (
    MAX_UPLOAD_MB,
    Checkpoint,
    CheckpointError,
    CheckpointInfo,
    checkpoint_bytes,
    checkpoint_path,
    import_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_trainer,
    sanitize_name,
    save_trainer,
)
from vaelab.config import ConfigError
from vaelab.data import DataBundle, DataError
from vaelab.ui import session as state
from vaelab.ui.config_form import default_prefix, set_form_values
from vaelab.ui.session import TrainingSession, get_session
from vaelab.ui.sidebar import Settings, cached_data, current_settings


def checkpoint_panel(session: TrainingSession, key_prefix: str, form_prefix: str) -> None:
    """Two columns: Save (name, confirm overwrite) and Load (the variant's checkpoints); then a table of those
    checkpoints with the dataset, epochs, test loss and date of each."""
    infos = list_checkpoints(variant=session.variant)
    save_col, load_col = st.columns(2, gap="large")
    with save_col:
        _save_section(session, key_prefix)
    with load_col:
        _load_section(session, infos, key_prefix, form_prefix)
    if infos:
        st.dataframe(checkpoint_rows(infos), hide_index=True, key=f"{key_prefix}.files",
                     column_config={"test loss": st.column_config.NumberColumn(format="%.4g"),
                                    "epochs": st.column_config.NumberColumn(format="%d")})


def checkpoint_rows(infos: list[CheckpointInfo]) -> list[dict]:
    """One row per file: name, dataset, epochs, test loss, date saved (UTC), or why it is unreadable."""
    rows = []
    for info in infos:
        row = {"name": info.name, "dataset": info.dataset_label if info.dataset else "", "epochs": info.epochs,
               "test loss": info.test_loss, "saved (UTC)": saved_at(info)}
        if info.error:
            row["unreadable"] = checkpoint_details(info).removeprefix("unreadable: ")
        rows.append(row)
    return rows


# -- feedback that survives the rerun a button causes ------------------------------------------------------
def _feedback_key(key_prefix: str, what: str) -> str:
    return f"{key_prefix}.{what}_feedback"


def literal(text: str) -> str:
    """Text shown as typed in Streamlit's Markdown: backslashes, '*', '_', '$' and the like escaped (a file name or
    a rule such as "must not contain '/' or '\\'" lost its backslash)."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~$])", r"\\\1", text)


def show_feedback(key_prefix: str, what: str) -> None:
    feedback = st.session_state.get(_feedback_key(key_prefix, what))
    if feedback:
        kind, text = feedback
        if kind == "success":
            st.success(text)  # our own Markdown (`name`, **Load**)
        else:
            st.error(literal(text))  # holds what the user or a file supplied: shown as is


def _set_feedback(key_prefix: str, what: str, kind: str | None, text: str = "") -> None:
    st.session_state[_feedback_key(key_prefix, what)] = (kind, text) if kind else None


# -- save ----------------------------------------------------------------------------------------------------
def suggested_name(session: TrainingSession) -> str:
    trainer = session.trainer
    if trainer is None:
        return session.variant
    try:
        return sanitize_name(f"{session.variant}-{trainer.data.train.source}-{trainer.epoch}ep")
    except CheckpointError:
        return f"{session.variant}-{trainer.epoch}ep"


def _save(session: TrainingSession, name: str, key_prefix: str, overwrite: bool) -> None:
    try:  # a run training in a worker: its state of now
        path = state.save_run(session, lambda trainer: save_trainer(trainer, name, overwrite=overwrite))
    except (CheckpointError, OSError) as error:
        _set_feedback(key_prefix, "save", "error", f"Not saved: {error}")
    else:
        if path is None:  # another tab drove the run all that time: the message says so
            _set_feedback(key_prefix, "save", "error", f"Not saved: {session.message}")
        else:
            _set_feedback(key_prefix, "save", "success", f"Saved `{path.stem}` ({path}).")


def _save_section(session: TrainingSession, key_prefix: str) -> None:
    st.markdown("**Save this run**")
    pending_key = f"{key_prefix}.overwrite_pending"
    trainer = session.trainer
    typed = st.text_input("Name", key=f"{key_prefix}.save_name", placeholder=suggested_name(session),
                          help="Letters, digits, '-', '_', '.'; empty: the suggested name.")
    name = typed.strip() or suggested_name(session)
    if trainer is not None and trainer.error is not None:
        st.caption(f":material/warning: Training stopped on a non-finite value; its weights are back at the last "
                   f"finite state (step {trainer.step:,}). Save stores that state (never inf / nan weights).")
    if st.button("Save", key=f"{key_prefix}.save", icon=":material/save:", disabled=trainer is None):
        st.session_state[pending_key] = None
        try:
            exists = checkpoint_path(session.variant, name).exists()
        except CheckpointError as error:
            _set_feedback(key_prefix, "save", "error", f"Not saved: {error}")
        else:
            if exists:
                st.session_state[pending_key] = name
                _set_feedback(key_prefix, "save", None)
            else:
                _save(session, name, key_prefix, overwrite=False)
    pending = st.session_state.get(pending_key)
    if pending and trainer is not None:
        st.warning(f"A checkpoint named `{sanitize_name(pending)}` already exists. Overwrite it?")
        yes, no = st.columns(2)
        if yes.button("Overwrite", key=f"{key_prefix}.overwrite_yes", type="primary"):
            st.session_state[pending_key] = None
            _save(session, pending, key_prefix, overwrite=True)
            st.rerun()
        if no.button("Cancel", key=f"{key_prefix}.overwrite_no"):
            st.session_state[pending_key] = None
            st.rerun()
    show_feedback(key_prefix, "save")


# -- load ----------------------------------------------------------------------------------------------------
def checkpoint_label(info: CheckpointInfo) -> str:
    """name · dataset · epochs · test loss · date (or 'unreadable' and why)."""
    return " · ".join(filter(None, [info.name, checkpoint_details(info)]))


def checkpoint_details(info: CheckpointInfo) -> str:
    """dataset · epochs · test loss · date saved (UTC), or 'unreadable' and why."""
    if info.error:
        why = info.error.replace(f"{info.path} ", "").replace(f"{info.path}: ", "")
        return f"unreadable: {why if len(why) <= 100 else why[:99] + '…'}"
    parts = []
    if info.dataset:
        train, test = info.dataset.get("train"), info.dataset.get("test")
        parts.append(train if test in (None, train) else f"{train} / test {test}")
    if info.epochs is not None:
        parts.append(f"{info.epochs} epoch{'s' if info.epochs != 1 else ''}")
    if info.test_loss is not None:
        parts.append(f"test loss {info.test_loss:.4g}")
    if info.created:
        parts.append(saved_at(info))
    return " · ".join(parts)


def saved_at(info: CheckpointInfo) -> str:
    """'2026-11-29 22:28' (UTC), or '' when the file says nothing."""
    return (info.created or "")[:16].replace("T", " ")


def _data_for(ckpt: Checkpoint, settings: Settings) -> tuple[DataBundle, str | None]:
    """The checkpoint's own dataset when it loads here (maybe via the mnist-5k fallback), else the sidebar's."""
    spec = ckpt.meta.get("dataset") or {}
    train, test = spec.get("train"), spec.get("test")
    if not train:
        return settings.data, None
    try:
        loaded = cached_data(train, test if test != train else None)
    except DataError as error:
        return settings.data, f"Its dataset {train!r} cannot be loaded here ({error})."
    return loaded.data, loaded.notice


def load_into_session(variant: str, path: str | Path, form_prefix: str) -> str | None:
    """Load a checkpoint into the variant's session; returns an error message or None. Safe in a callback."""
    session = get_session(variant)
    settings = current_settings()
    try:
        ckpt = load_checkpoint(path, expected_variant=variant)
    except CheckpointError as error:
        return str(error)
    except Exception as error:  # a failure no check foresaw: one message, and the session keeps its run
        return f"`{Path(path).name}`: unexpected {type(error).__name__} ({str(error)[:200]})"
    data, notice = _data_for(ckpt, settings)
    if data.input_dim != ckpt.meta.get("input_dim"):
        return (f"`{Path(path).stem}` was trained on images of {ckpt.meta.get('input_dim')} pixels; the loadable "
                f"data has {data.input_dim}. Choose its dataset in the sidebar.")
    try:
        trainer = restore_trainer(ckpt, data, device=settings.device)
    except (CheckpointError, ValueError, RuntimeError) as error:
        why = " ".join(filter(None, [notice, f"Training cannot resume here: {error}"]))
        state.adopt_view_only(session, ckpt, data, why)
    else:
        state.adopt_trainer(session, trainer, ckpt)
        if notice and session.message is None:
            session.message = notice
    set_form_values(variant, ckpt.config, form_prefix)
    return None


def restore_archived_run(variant: str) -> None:
    """Call after the sidebar, before the page: a run that the keeper of unwatched runs archived (vaelab/ui/
    run_keeper.py) is loaded back from its file, once, as any checkpoint is (paused: Resume continues it)."""
    session = get_session(variant)
    if session.archived is None:
        return
    path = state.take_archived(session)
    if path is None:
        return
    note = session.message
    error = load_into_session(variant, path, default_prefix(variant))
    if error:
        session.message = (f"This run was kept in `{path.stem}` while no tab showed it and could not be loaded "
                           f"back: {error}")
    else:
        session.message = " ".join(filter(None, [note, f"Restored from its autosave `{path.stem}`."]))


def open_checkpoint(variant: str, path: str | Path, key_prefix: str, form_prefix: str, what: str = "load") -> None:
    """Load ``path`` into the variant's session and keep the outcome for ``show_feedback(key_prefix, what)``: the
    Load button's path, for any button that opens a checkpoint (a callback)."""
    error = load_into_session(variant, path, form_prefix)
    if error:
        _set_feedback(key_prefix, what, "error", f"Not loaded: {error}")
    else:
        _set_feedback(key_prefix, what, "success", f"Loaded `{Path(path).stem}`.")


def _on_load(variant: str, key_prefix: str, form_prefix: str) -> None:
    path = st.session_state.get(f"{key_prefix}.load_choice")
    if path:
        open_checkpoint(variant, path, key_prefix, form_prefix)


def _load_section(session: TrainingSession, infos: list[CheckpointInfo], key_prefix: str, form_prefix: str) -> None:
    st.markdown("**Load a saved model**")
    if not infos:
        st.caption(f"No saved {session.variant} checkpoints yet.")
    else:
        _choose_and_load(session, infos, key_prefix, form_prefix)
    _upload_section(session.variant, key_prefix)


def _choose_and_load(session: TrainingSession, infos: list[CheckpointInfo], key_prefix: str, form_prefix: str) -> None:
    labels = {str(i.path): checkpoint_label(i) for i in infos}
    broken = {str(i.path) for i in infos if i.error}
    choice_key = f"{key_prefix}.load_choice"
    if st.session_state.get(choice_key) not in labels:
        st.session_state[choice_key] = next((p for p in labels if p not in broken), next(iter(labels)))
    choice = st.selectbox("Checkpoint", list(labels), key=choice_key, format_func=labels.__getitem__,
                          help="Name · dataset · epochs · test loss · date saved (UTC).")
    load_col, download_col = st.columns(2)
    load_col.button("Load", key=f"{key_prefix}.load", icon=":material/upload_file:",
                    disabled=session.running or choice in broken, on_click=_on_load,
                    args=(session.variant, key_prefix, form_prefix),
                    help="Pause the run first." if session.running else "Replaces the current run.")
    download_col.download_button("Download", data=partial(checkpoint_bytes, choice), file_name=Path(choice).name,
                                 mime="application/octet-stream", key=f"{key_prefix}.download",
                                 icon=":material/download:", disabled=choice in broken, on_click="ignore",
                                 help="The selected checkpoint as a .pt file (upload it on another machine).")
    show_feedback(key_prefix, "load")


# -- upload --------------------------------------------------------------------------------------------------
def store_upload(variant: str, filename: str, data: bytes, overwrite: bool = False) -> tuple[Path | None, str]:
    """Check and store uploaded bytes as one of ``variant``'s checkpoints: (path, message) or (None, why not)."""
    try:
        path = import_checkpoint(data, filename, variant, overwrite=overwrite)
    except (CheckpointError, ConfigError, OSError) as error:
        return None, f"Not uploaded: {error}"
    except Exception as error:  # an odd file must never show a traceback
        return None, f"Not uploaded: {filename!r} is not a usable checkpoint ({type(error).__name__}: {error})"
    return path, f"Uploaded `{path.stem}`; it is selected above: press **Load** to use it."


def _on_upload(variant: str, key_prefix: str) -> None:
    uploaded = st.session_state.get(f"{key_prefix}.upload")
    if uploaded is None:
        return
    if uploaded.size > MAX_UPLOAD_MB * 1024 * 1024:  # the server limits uploads too; never read a larger one
        _set_feedback(key_prefix, "upload", "error",
                      f"Not uploaded: {uploaded.name!r} is {uploaded.size / 2**20:.1f} MB; at most {MAX_UPLOAD_MB} MB")
        return
    overwrite = bool(st.session_state.get(f"{key_prefix}.upload_overwrite"))
    path, message = store_upload(variant, uploaded.name, uploaded.getvalue(), overwrite=overwrite)
    _set_feedback(key_prefix, "upload", "success" if path else "error", message)
    if path is not None:
        st.session_state[f"{key_prefix}.load_choice"] = str(path)


def _upload_section(variant: str, key_prefix: str) -> None:
    st.file_uploader(f"Upload a {variant} checkpoint (.pt)", type=["pt"], key=f"{key_prefix}.upload",
                     max_upload_size=MAX_UPLOAD_MB, on_change=_on_upload, args=(variant, key_prefix),
                     help=f"At most {MAX_UPLOAD_MB} MB. Read with a weights-only loader (it cannot run code) and "
                          f"checked before it is stored under its file name.")
    st.checkbox("Replace a saved checkpoint of the same name", key=f"{key_prefix}.upload_overwrite")
    show_feedback(key_prefix, "upload")
