"""AppTest checks of the app frame, the config form, the training panel and the Autoencoder page.

AppTest does not tick ``st.fragment(run_every=...)`` by itself: each ``at.run()`` executes the whole page, the
live fragment included, so one ``run()`` advances training by one chunk (about 0.3 s of work). The tests drive
training that way. Data: ``mnist-5k`` (tests/conftest.py sets VAELAB_DATASET); checkpoints go to a temp folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.helpers import (
    TIMEOUT,
    chart_specs,
    new_app,
    no_exception,
    open_page,
    run_until_stopped,
    session_of,
    set_form,
    stop_reset,
    wait_for,
)
from vaelab import data
from vaelab.checkpoints import CheckpointError
from vaelab.data import DownloadError
from vaelab.live_frames import run_model
from vaelab.ui import checkpoint_panel, sidebar
from vaelab.ui import session as state
from vaelab.ui.session import TrainingSession, latest_cached, model_cached


def _ae_page(hidden: str = "16", code_size: int = 2, epochs: int = 1, batch_size: int = 100) -> AppTest:
    """The app on the Autoencoder page with a tiny model typed into the generated form."""
    return set_form(open_page("pages/ae.py"), "ae", {"hidden_sizes": hidden, "code_size": code_size,
                                                     "epochs": epochs, "batch_size": batch_size})


def _reconstruct_fixed(session: TrainingSession) -> torch.Tensor:
    x = session.data.test.images[:8]
    return run_model(session.model, session.model.reconstruct, x)


# -- frame ---------------------------------------------------------------------------------------------------
def test_sidebar_choice_survives_lost_widget_state():
    """Streamlit drops a widget's state when a run is interrupted before the widget is drawn (a page link clicked
    during the first run). The choice is kept under a plain session key too, and a widget drawn without its own
    state must take it from there rather than falling back to the first option."""
    at = new_app().run()
    at.selectbox(key="vaelab.dataset").set_value("digits").run()
    assert at.session_state["vaelab.choice.dataset"] == "digits"

    fresh = new_app()  # a run with no widget state, as after the interruption
    fresh.session_state["vaelab.choice.dataset"] = "digits"
    fresh.session_state["vaelab.choice.seed"] = 5
    fresh.run()
    no_exception(fresh)
    assert fresh.selectbox(key="vaelab.dataset").value == "digits"
    assert fresh.number_input(key="vaelab.seed").value == 5
    assert any("Train: digits" in c.value for c in fresh.sidebar.caption)


def test_app_opens_on_home_with_sidebar_and_links():
    at = new_app().run()
    no_exception(at)
    assert at.title[0].value.startswith("vaelab")
    assert at.selectbox(key="vaelab.dataset").value == "mnist-5k"
    assert "cpu" in at.selectbox(key="vaelab.device").options
    assert any("Train: mnist-5k (4,000 images)" in c.value for c in at.sidebar.caption)
    links = {pl.proto.label for pl in at.get("page_link")}
    assert "Autoencoder" in links
    assert not at.sidebar.warning  # no fallback notice for an embedded dataset


def test_unloadable_torchvision_source_falls_back_to_mnist_5k_with_a_notice(monkeypatch):
    real_load = data.load_data

    def offline(train, test=None, **kw):
        if train == "mnist":
            raise DownloadError("could not download data source 'mnist' (offline?)")
        return real_load(train, test, **kw)

    monkeypatch.setattr(data, "load_data", offline)
    monkeypatch.setenv("VAELAB_DATASET", "mnist")
    sidebar.cached_data.clear()
    try:
        at = new_app().run()
        no_exception(at)
        assert not at.sidebar.warning  # one line (tests/test_sidebar_offline.py), the error folded beneath it
        (notice,) = at.sidebar.expander
        assert notice.label.startswith("No network") and "could not download data source 'mnist'" in \
            notice.code[0].value
        assert at.selectbox(key="vaelab.dataset").value == "mnist-5k"
        assert any("Train: mnist-5k (4,000 images)" in c.value for c in at.sidebar.caption)
    finally:
        sidebar.cached_data.clear()


def test_bad_test_source_is_reported_and_the_dataset_keeps_its_own_test_split(tmp_path):
    at = new_app().run()
    at.text_input(key="vaelab.test_source").set_value(f"idx:{tmp_path / 'missing'}").run()
    no_exception(at)
    assert len(at.sidebar.error) == 1 and "no such folder" in at.sidebar.error[0].value
    assert any("test: mnist-5k (1,000)" in c.value for c in at.sidebar.caption)


def test_real_mnist_test_set_can_be_the_test_source(mnist_test_dir):
    at = new_app().run()
    at.text_input(key="vaelab.test_source").set_value(f"idx:{mnist_test_dir}").run()
    no_exception(at)
    assert not at.sidebar.error
    assert any(f"test: idx:{mnist_test_dir} (10,000)" in c.value for c in at.sidebar.caption)


# -- config form ---------------------------------------------------------------------------------------------
def _form_script():
    import streamlit as st

    from vaelab.ui.config_form import config_form

    config = config_form("ae")
    st.text(f"config={config!r}")


def test_config_form_builds_the_config_names_a_bad_field_and_applies_presets():
    at = AppTest.from_function(_form_script, default_timeout=TIMEOUT).run()
    no_exception(at)
    assert "hidden_sizes=(400,)" in at.text[0].value and "code_size=32" in at.text[0].value
    labels = {w.label for w in [*at.number_input, *at.text_input, *at.selectbox]}
    assert {"Code size", "Learning rate", "Batch size", "Epochs", "Hidden layers", "Preset"} <= labels

    at.text_input(key="cfg.ae.hidden_sizes").set_value("64,0").run()
    assert at.text[0].value == "config=None"
    assert len(at.error) == 1 and "Hidden layers" in at.error[0].value and "[1, 4096]" in at.error[0].value

    at.text_input(key="cfg.ae.hidden_sizes").set_value("64, 8").run()
    assert not at.error and "hidden_sizes=(64, 8)" in at.text[0].value

    at.selectbox(key="cfg.ae._preset").set_value("2d-code").run()
    assert at.number_input(key="cfg.ae.code_size").value == 2
    assert at.text_input(key="cfg.ae.hidden_sizes").value == "512,256"
    assert "code_size=2" in at.text[0].value


# -- training panel on the Autoencoder page --------------------------------------------------------------------
def test_ae_page_trains_live_pauses_resumes_and_survives_a_page_switch():
    at = _ae_page(epochs=20, batch_size=100)  # 800 steps: a few seconds, time to pause
    assert at.button(key="panel.ae.pause").disabled and not at.button(key="panel.ae.start").disabled
    at.button(key="panel.ae.start").click().run()
    no_exception(at)
    session = session_of(at)
    assert session.running and session.worker is not None
    wait_for(at, "ae", lambda s: s.trainer.step > 0, "the first steps")
    assert at.text_input(key="cfg.ae.hidden_sizes").disabled  # the form is read-only during a run
    assert at.button(key="panel.ae.start").disabled and not at.button(key="panel.ae.pause").disabled

    at.button(key="panel.ae.pause").click().run()
    paused_step = session.trainer.step
    time.sleep(0.5)
    at.run()
    assert session.status == "paused" and session.trainer.step == paused_step and session.worker is None
    assert not at.button(key="panel.ae.resume").disabled

    at.switch_page("pages/home.py").run()  # leave: nothing trains, nothing is lost
    at.switch_page("pages/ae.py").run()
    no_exception(at)
    assert session_of(at) is session and session.trainer.step == paused_step
    assert at.text_input(key="cfg.ae.hidden_sizes").value == "16"
    assert at.selectbox(key="vaelab.dataset").value == "mnist-5k"  # app.py's sidebar is drawn on every run

    at.button(key="panel.ae.resume").click().run()
    rows = len(session.history)
    wait_for(at, "ae", lambda s: len(s.history) > rows, "rows after Resume")  # the same run trains on
    run_until_stopped(at, "ae")
    no_exception(at)
    assert session.status == "finished" and session.trainer.done and session.trainer.step == 800
    kinds = [row["kind"] for row in session.history]
    assert kinds.count("test") == 20 and kinds.count("train") >= 20
    steps = [row["step"] for row in session.history if row["kind"] == "train"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # one run, no step logged twice
    assert at.get("progress")[0].proto.text.startswith("Finished: 20 epochs, 800 steps")
    assert at.button(key="panel.ae.pause").disabled and at.button(key="panel.ae.resume").disabled
    assert len(chart_specs(at)) >= 3  # loss curves, code histogram, 2-D code map
    assert at.image[0].captions[0].startswith("Top to bottom: test images, reconstructions")

    stop_reset(at, "ae")
    assert session.status == "idle" and session.model is None
    assert not at.text_input(key="cfg.ae.hidden_sizes").disabled


def test_save_then_load_through_the_ui_restores_the_model_and_resumes():
    at = _ae_page(epochs=50, batch_size=100)
    at.button(key="panel.ae.start").click().run()
    wait_for(at, "ae", lambda s: s.trainer.step > 0, "the first steps")
    at.button(key="panel.ae.pause").click().run()
    session = session_of(at)
    saved_step, saved_history = session.trainer.step, [dict(r) for r in session.history]
    expected = _reconstruct_fixed(session)

    at.text_input(key="panel.ae.save_name").set_value("tiny").run()
    at.button(key="panel.ae.save").click().run()
    assert "Saved `tiny`" in at.success[0].value
    at.button(key="panel.ae.save").click().run()  # same name again: asks first
    assert "already exists" in at.warning[0].value
    at.button(key="panel.ae.overwrite_yes").click().run()
    assert "Saved `tiny`" in at.success[0].value and not at.warning

    stop_reset(at, "ae")
    assert session.model is None
    assert "tiny · mnist-5k" in at.selectbox(key="panel.ae.load_choice").format_func(
        at.selectbox(key="panel.ae.load_choice").value)
    at.button(key="panel.ae.load").click().run()
    no_exception(at)
    assert "Loaded `tiny`" in at.success[-1].value
    assert session.status == "paused" and session.trainer.step == saved_step
    assert session.history == saved_history
    assert torch.equal(_reconstruct_fixed(session), expected)
    assert at.text_input(key="cfg.ae.hidden_sizes").value == "16"  # the form shows the loaded config

    at.button(key="panel.ae.resume").click().run()
    wait_for(at, "ae", lambda s: s.trainer.step > saved_step, "steps after Resume")
    stop_reset(at, "ae")


def test_broken_checkpoint_is_listed_as_unreadable_and_cannot_be_loaded():
    folder = Path(os.environ["VAELAB_CHECKPOINT_DIR"]) / "ae"
    folder.mkdir(parents=True)
    (folder / "broken.pt").write_bytes(b"not a checkpoint")
    at = new_app().run()
    with pytest.warns(UserWarning, match="broken checkpoint"):
        at.switch_page("pages/ae.py").run()
    no_exception(at)
    choice = at.selectbox(key="panel.ae.load_choice")
    assert choice.format_func(choice.value).startswith("broken · unreadable")
    assert at.button(key="panel.ae.load").disabled


def test_ae_page_draws_a_cached_tsne_map_for_a_wider_code():
    at = _ae_page(code_size=8, epochs=1)
    at.button(key="panel.ae.start").click().run()
    run_until_stopped(at)
    session = session_of(at)
    assert session.status == "finished"
    at.select_slider(key="ae.tsne_n").set_value(500).run()
    charts_before = len(at.get("plotly_chart"))
    at.button(key="ae.tsne_draw").click().run()
    no_exception(at)
    assert len(at.get("plotly_chart")) == charts_before + 1
    assert f"t-SNE of 500 test codes (step {session.step})" in at.get("plotly_chart")[-1].proto.spec
    step, (points, labels) = latest_cached(session, "tsne", 500, 0)
    assert step == session.step and points.shape == (500, 2) and labels.shape == (500,)
    at.run()  # drawn again from the cache, without pressing the button
    assert f"t-SNE of 500 test codes (step {session.step})" in at.get("plotly_chart")[-1].proto.spec


# -- session state without Streamlit ---------------------------------------------------------------------------
class _StubTrainer:
    """Stands in for a Trainer: each advance adds one step; it fails or finishes at a given step."""

    def __init__(self, fail_at=None, total=3):
        self.step, self.total, self.fail_at, self.error, self.history = 0, total, fail_at, None, []
        self.calls = []

    @property
    def done(self):
        return self.step >= self.total

    def advance(self, max_steps=None, max_seconds=None):
        self.calls.append((max_steps, max_seconds))
        self.step += 1
        if self.step == self.fail_at:
            self.error = "Training stopped: the total became nan"
        return []


def test_model_cached_recomputes_only_when_the_model_moves_on():
    session = TrainingSession("ae", trainer=_StubTrainer(total=100), status=state.PAUSED)
    calls = []

    def compute():
        calls.append(session.step)
        return len(calls)

    assert model_cached(session, "m", compute, 5) == 1
    assert model_cached(session, "m", compute, 5) == 1 and calls == [0]
    assert model_cached(session, "m", compute, 6) == 2  # another key
    session.trainer.step = 7
    assert model_cached(session, "m", compute, 5) == 3 and calls == [0, 0, 7]
    assert latest_cached(session, "m", 5) == (7, 3)
    state.reset(session)
    assert latest_cached(session, "m", 5) is None


def test_a_checkpoint_that_cannot_resume_loads_view_only_with_its_curves(monkeypatch):
    at = _ae_page(epochs=1)
    at.button(key="panel.ae.start").click().run()
    run_until_stopped(at)
    session = session_of(at)
    saved_history, expected = [dict(r) for r in session.history], _reconstruct_fixed(session)
    at.button(key="panel.ae.save").click().run()
    stop_reset(at, "ae")

    def cannot_resume(ckpt, data, device="cpu"):
        raise CheckpointError("resume needs the same training set")

    monkeypatch.setattr(checkpoint_panel, "restore_trainer", cannot_resume)
    at.button(key="panel.ae.load").click().run()
    no_exception(at)
    assert session.status == state.VIEW_ONLY and session.trainer is None
    assert session.history == saved_history and torch.equal(_reconstruct_fixed(session), expected)
    assert any("resume needs the same training set" in i.value for i in at.info)
    assert at.button(key="panel.ae.resume").disabled and not at.button(key="panel.ae.start").disabled
    assert len(chart_specs(at)) >= 3  # stored curves and the code views of the loaded model
