"""Prepare the class (Home) on a tiny budget: lesson models trained on the workers, saved as `classroom` checkpoints
with a progress bar each reaching 100 %, then opened on a page with one click (model and history, as Load does)."""

from __future__ import annotations

import pytest

from tests.helpers import new_app, no_error, no_exception, session_of
from vaelab import classroom
from vaelab.checkpoints import checkpoint_dir, load_checkpoint, read_metadata
from vaelab.classroom import CLASSROOM_NAME, CLASSROOM_PRESETS
from vaelab.cli import build_config
from vaelab.config import ConfigError

JOB_TIMEOUT_S = 600  # a bound on a hang only (two 1-epoch runs on mnist-5k)


@pytest.fixture
def tiny_class(monkeypatch):
    monkeypatch.setenv(classroom.VARIANTS_ENV, "ae,vae")
    monkeypatch.setenv(classroom.EPOCHS_ENV, "1")


def test_the_budget_comes_from_the_environment_and_bad_values_name_the_setting(monkeypatch):
    monkeypatch.delenv(classroom.VARIANTS_ENV, raising=False)
    monkeypatch.delenv(classroom.EPOCHS_ENV, raising=False)
    assert classroom.classroom_budget() == (list(CLASSROOM_PRESETS), None)
    monkeypatch.setenv(classroom.VARIANTS_ENV, " vae , ae ")
    monkeypatch.setenv(classroom.EPOCHS_ENV, "2")
    assert classroom.classroom_budget() == (["vae", "ae"], 2)
    monkeypatch.setenv(classroom.VARIANTS_ENV, "vae,gan")
    with pytest.raises(ConfigError, match=f"{classroom.VARIANTS_ENV}.*'gan'"):
        classroom.classroom_budget()
    monkeypatch.setenv(classroom.VARIANTS_ENV, "vae")
    for bad in ("0", "two"):
        monkeypatch.setenv(classroom.EPOCHS_ENV, bad)
        with pytest.raises(ConfigError, match=f"{classroom.EPOCHS_ENV}.*>= 1"):
            classroom.classroom_budget()


def test_lesson_specs_are_the_pretrain_set():
    specs = classroom.lesson_specs("mnist-5k", seed=2, epochs=3)
    assert [s.variant for s in specs] == list(CLASSROOM_PRESETS)
    for spec in specs:
        assert spec.name == CLASSROOM_NAME and (spec.train, spec.seed) == ("mnist-5k", 2)
        assert spec.config == build_config(spec.variant, CLASSROOM_PRESETS[spec.variant], [], 3).to_dict()


def test_prepare_the_class_then_open_the_lesson_model_on_a_page(tiny_class):
    at = new_app().run()
    no_exception(at)
    assert classroom.current_job() is None
    at.button(key="classroom.prepare").click().run()
    no_exception(at)
    no_error(at)
    job = classroom.current_job()
    assert job is not None and [s.variant for s in job.specs] == ["ae", "vae"]
    assert at.button(key="classroom.prepare").disabled or job.done  # no second preparation while one runs
    job.thread.join(JOB_TIMEOUT_S)
    assert job.done
    at.run()
    no_exception(at)
    no_error(at)
    bars = at.get("progress")
    assert len(bars) == 2 and all(bar.proto.value == 100 for bar in bars)
    assert any("Prepared: 2 of 2" in m.value for m in at.markdown)
    for variant in ("ae", "vae"):
        path = checkpoint_dir() / variant / f"{CLASSROOM_NAME}.pt"
        assert classroom.lesson_checkpoint(variant) == path
        assert read_metadata(path)["epochs"] == 1
    assert [i.variant for i in classroom.lesson_checkpoints()] == ["ae", "vae"]

    at.switch_page("pages/vae.py").run()
    no_exception(at)
    assert session_of(at, "vae").model is None
    at.button(key="panel.vae.lesson").click().run()
    no_exception(at)
    no_error(at)
    session = session_of(at, "vae")
    saved = load_checkpoint(checkpoint_dir() / "vae" / f"{CLASSROOM_NAME}.pt")
    assert session.model is not None and session.step == saved.meta["steps"]
    assert session.history == saved.history and len(session.history) > 0
    assert session.config == saved.config
    assert any("Loaded `classroom`" in s.value for s in at.success)


def test_a_page_without_a_lesson_model_offers_no_button():
    at = new_app().run()
    at.switch_page("pages/ae.py").run()
    no_exception(at)
    assert not any(b.key == "panel.ae.lesson" for b in at.button)


def test_a_run_that_fails_is_reported_as_failed_with_its_reason():
    specs = classroom.lesson_specs("idx:/no/such/folder", variants=["ae"], epochs=1)
    job = classroom.start(specs)
    job.thread.join(JOB_TIMEOUT_S)
    (model,) = job.progress()
    assert model.state == classroom.FAILED and "/no/such/folder" in model.error
    assert classroom.lesson_checkpoint("ae") is None


def test_home_s_classroom_section_imports_no_torch():
    """Home draws its button and progress before torch loads (app.py draws Home before the sidebar)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, vaelab.ui.classroom_panel, vaelab.classroom as c; c.current_job(); "
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
