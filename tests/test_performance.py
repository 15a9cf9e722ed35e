"""Performance settings: the Trainer's opt-in bfloat16 precision, the app's OpenMP wait policy (set before torch
loads). The figures themselves come from benchmarks/, never from tests."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from tests.helpers import mnist_5k_subset
from vaelab.data import DataBundle
from vaelab.training import Trainer
from vaelab.variants import get_variant

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return mnist_5k_subset(600, 200)


def tiny_vae(**overrides):
    values = {"hidden_sizes": (32,), "latent_dim": 4, "batch_size": 50, "epochs": 3, "lr": 3e-3, **overrides}
    return get_variant("vae").config_cls(**values)


# -- bfloat16, opt-in ---------------------------------------------------------------------------------------------
def test_precision_must_be_one_of_the_known_names(digits):
    with pytest.raises(ValueError, match="precision: must be one of float32, bfloat16"):
        Trainer("vae", tiny_vae(), digits, precision="float16")
    assert Trainer("vae", tiny_vae(), digits).precision == "float32"  # the default stays exact


@pytest.mark.parametrize("precision, dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_the_forward_pass_runs_in_the_chosen_precision_and_the_weights_stay_float32(digits, precision, dtype):
    trainer = Trainer("vae", tiny_vae(), digits, precision=precision)
    seen = []
    first = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    trainer.advance(max_steps=1)
    trainer.evaluate(max_examples=10)
    assert seen == [dtype, dtype]  # one training step, one evaluation batch
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_bfloat16_training_lowers_the_test_loss_about_as_far_as_float32(digits):
    losses = {}
    for precision in ("float32", "bfloat16"):
        trainer = Trainer("vae", tiny_vae(), digits, seed=0, precision=precision)
        before = trainer.evaluate()["total"]
        trainer.run()
        tests = [row["total"] for row in trainer.history if row["kind"] == "test"]
        assert trainer.error is None and tests[-1] < 0.9 * before
        losses[precision] = tests[-1]
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.03)


# -- the app's OpenMP settings ----------------------------------------------------------------------------------
def test_app_sets_openmp_threads_and_passive_waiting_before_anything_can_load_torch(monkeypatch):
    """Both variables are read once, when torch's OpenMP runtime starts: they must come before every other import.
    Run as the app runs them, they leave one core for the browser (at least one thread) and keep a user's choice."""
    body = ast.parse(APP.read_text()).body
    settings = [i for i, node in enumerate(body) if "OMP_" in ast.unparse(node)]
    assert settings == list(range(settings[0], settings[0] + 2))
    imported_before = [alias.name for node in body[:settings[0]] if isinstance(node, ast.Import | ast.ImportFrom)
                       for alias in node.names]
    assert imported_before == ["os"]
    code = compile(ast.Module(body=body[:settings[-1] + 1], type_ignores=[]), str(APP), "exec")
    for cores, threads in ((1, "1"), (2, "1"), (8, "7")):
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda n=cores: n)
        exec(code, {})
        assert os.environ["OMP_NUM_THREADS"] == threads and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    exec(code, {})
    assert os.environ["OMP_NUM_THREADS"] == "3"


# -- start-up ----------------------------------------------------------------------------------------------------
def test_home_and_the_navigation_import_no_torch_so_home_draws_before_it_loads():
    """app.py draws Home before the sidebar imports torch (1.4 to 1.7 s here) and loads the dataset."""
    import subprocess
    import sys

    code = ("import sys, streamlit, vaelab.ui.pages, vaelab.variants; "
            "print(sorted(m for m in ('torch', 'torchvision', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=APP.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    body = ast.parse(APP.read_text()).body
    top_level_imports = [alias.name for node in body if isinstance(node, ast.Import | ast.ImportFrom)
                         for alias in node.names]
    assert "render_sidebar" not in top_level_imports and "torch" not in top_level_imports


# -- the live view ---------------------------------------------------------------------------------------------
def test_the_app_config_turns_off_streamlits_full_garbage_collection_after_every_run(monkeypatch):
    from streamlit import config

    monkeypatch.chdir(APP.parent)  # `streamlit run app.py` from the repository root reads .streamlit/config.toml
    try:
        config.get_config_options(force_reparse=True)
        assert config.get_option("runner.postScriptGC") is False
    finally:
        monkeypatch.undo()
        config.get_config_options(force_reparse=True)


def test_the_loss_chart_draws_at_most_the_cap_of_rows_of_each_kind_each_the_mean_of_its_group():
    from vaelab.ui.live_view import drawn_history

    history = []
    for i in range(2500):
        history.append({"kind": "train", "step": 20 * (i + 1), "epoch": i / 10, "samples_per_s": 5.0,
                        "total": float(i), "kl": float(i % 7)})
        if i % 10 == 9:
            history.append({"kind": "test", "step": 20 * (i + 1), "epoch": (i + 1) / 10, "total": -float(i)})
    short = history[:300]
    assert drawn_history(short, max_rows=1000) is short

    drawn = drawn_history(history, max_rows=1000)
    train = [r for r in drawn if r["kind"] == "train"]
    assert len(train) == 834  # groups of ceil(2500 / 1000) = 3 rows
    assert [r for r in drawn if r["kind"] == "test"] == [r for r in history if r["kind"] == "test"]
    first, last = train[0], train[-1]
    assert first["total"] == 1.0 and first["epoch"] == pytest.approx(0.1) and first["step"] == 60
    assert first["kl"] == pytest.approx((0 + 1 + 2) / 3)
    assert last["total"] == 2499.0 and last["step"] == 50_000  # the last group holds one row
    assert history[0]["total"] == 0.0  # the session's own history is not changed

    # A long run of short epochs: the test rows are thinned the same way.
    tests = [{"kind": "test", "step": 32 * (i + 1), "epoch": float(i + 1), "total": float(i)} for i in range(2100)]
    few_train = [r for r in history[:30] if r["kind"] == "train"]
    drawn = drawn_history(few_train + tests, max_rows=1000)
    drawn_tests = [r for r in drawn if r["kind"] == "test"]
    assert len(drawn_tests) == 700  # groups of ceil(2100 / 1000) = 3 rows
    assert drawn_tests[0]["total"] == 1.0 and drawn_tests[0]["epoch"] == 2.0 and drawn_tests[0]["step"] == 96
    assert [r for r in drawn if r["kind"] == "train"] == few_train
