"""Reliability: bad input, divergence, crashes mid-save, concurrent sessions, no network, long sessions.

Every rule is checked where a user meets it: the CLI (``vaelab.cli.main`` in-process: exit status 2 and a message
naming the field and its range) and the app (AppTest types the value into the generated form). AppTest does not
draw the page: a run trains in its worker meanwhile (tests/helpers.py ``wait_for``).
Data: ``mnist-5k``; checkpoints: a temp folder (tests/conftest.py).
"""

from __future__ import annotations

import gc
import hashlib
import http.client
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO
from tests.helpers import (
    TIMEOUT,
    mnist_5k_subset,
    new_app,
    no_exception,
    open_page,
    run_until_stopped,
    session_of,
    set_form,
    stop_reset,
    wait_for,
)
from vaelab import cli, data, training
from vaelab.checkpoints import CheckpointError, list_checkpoints, load_checkpoint, save_trainer
from vaelab.data import DataBundle, load_data
from vaelab.training import Trainer
from vaelab.ui import sidebar
from vaelab.ui.session import MAX_RESULTS_PER_NAME
from vaelab.variants import get_variant


# -- helpers ---------------------------------------------------------------------------------------------------
def _ae_page(**form) -> AppTest:
    """The app on the Autoencoder page; ``form`` sets widgets of the generated form (field -> value)."""
    return set_form(open_page("pages/ae.py"), "ae", {"hidden_sizes": "16", "code_size": 2, **form},
                    errors_allowed=True)


def _panel_script(variant: str) -> None:
    """Any variant's training panel, the same generated form and controls every page uses."""
    from vaelab.ui.training_panel import training_panel

    training_panel(variant)


def _panel(variant: str, **form) -> AppTest:
    at = AppTest.from_function(_panel_script, args=(variant,), default_timeout=TIMEOUT).run()
    no_exception(at)
    return set_form(at, variant, form, errors_allowed=True)


def _run_together(target, args_per_thread: list[tuple]) -> None:
    """One thread per args tuple, all started before any is joined; returns when all have finished."""
    threads = [threading.Thread(target=target, args=args) for args in args_per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


@pytest.fixture(scope="module")
def small() -> DataBundle:
    return mnist_5k_subset(300, 60)


def _tiny(variant: str, **overrides):
    sizes = {"ae": {"code_size": 4}, "vae": {"latent_dim": 2}}[variant]
    return get_variant(variant).config_cls(**{"hidden_sizes": (16,), "batch_size": 50, "epochs": 3, **sizes,
                                              **overrides})


# -- 1. bad input: the CLI ---------------------------------------------------------------------------------------
CLI_RULES = [  # (variant, extra args, text the message must contain)
    ("vae", ["--set", "lr=0"], "lr: must be in (0, 10]"),
    ("vae", ["--set", "lr=-0.01"], "lr: must be in (0, 10]"),
    ("vae", ["--set", "lr=nan"], "lr: must be finite"),
    ("vae", ["--set", "lr=fast"], "lr: cannot read 'fast'"),
    ("vae", ["--set", "batch_size=0"], "batch_size: must be in [1, 10000]"),
    ("vae", ["--set", "batch_size=-5"], "batch_size: must be in [1, 10000]"),
    ("vae", ["--set", "epochs=0"], "epochs: must be in [1, 10000]"),
    ("vae", ["--epochs", "-1"], "epochs: must be in [1, 10000]"),
    ("vae", ["--set", "latent_dim=0"], "latent_dim: must be in [1, 1024]"),
    ("ae", ["--set", "code_size=0"], "code_size: must be in [1, 4096]"),
    ("sparse", ["--set", "rho=0"], "rho: must be in (0, 1)"),
    ("sparse", ["--set", "rho=1"], "rho: must be in (0, 1)"),
    ("sparse", ["--set", "rho=-0.2"], "rho: must be in (0, 1)"),
    ("ksparse", ["--set", "k=0"], "k: must be a whole number in [1, 144]"),
    ("ksparse", ["--set", "k=145"], "k: must be a whole number in [1, 144]"),
    ("ksparse", ["--set", "code_size=8", "--set", "k=9"], "k: must be a whole number in [1, 8]"),
    ("denoising", ["--set", "noise_level=-0.1"], "noise_level: must be in [0, 5]"),
    ("denoising", ["--set", "corruption=masking", "--set", "noise_level=1.5"], "noise_level: must be in [0, 1]"),
    ("denoising", ["--set", "corruption=salt-and-pepper", "--set", "noise_level=2"], "noise_level: must be in [0, 1]"),
    ("vae", ["--set", "beta=-1"], "beta: must be in [0, 1000]"),
    ("sparse", ["--set", "beta=-0.5"], "beta: must be in [0, 1000]"),
    ("contractive", ["--set", "lam=-0.1"], "lam: must be in [0, 1000]"),
    ("vae", ["--preset", "huge"], "preset: unknown preset 'huge'; allowed: default, lecture"),
    ("gan", [], "variant: unknown variant 'gan'; allowed: ae"),
    ("vae", ["--dataset", "imagenet"], "unknown data source 'imagenet'; allowed: mnist"),
]


@pytest.mark.parametrize(("variant", "extra", "message"), CLI_RULES,
                         ids=[" ".join([v, *e]) for v, e, _ in CLI_RULES])
def test_cli_rejects_bad_input_with_status_2_naming_field_and_range(variant, extra, message, capsys, monkeypatch,
                                                                    tmp_path):
    def must_not_train(*args, **kwargs):
        raise AssertionError("a bad value reached the trainer")

    monkeypatch.setattr(training, "Trainer", must_not_train)
    argv = ["train", variant, "--dataset", "mnist-5k", *extra, "--quiet", "--out", str(tmp_path / "x.pt")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


# -- 1. bad input: the app's generated form ---------------------------------------------------------------------
ERROR_RULES = [  # (variant, form values, label, field, range text): the form says so and nothing can start
    ("ae", {"lr": 0.0}, "Learning rate", "lr", "(0, 10]"),
    ("ae", {"lr": -0.5}, "Learning rate", "lr", "(0, 10]"),
    ("sparse", {"rho": 0.0}, "rho (target mean activation)", "rho", "(0, 1)"),
    ("sparse", {"rho": 1.0}, "rho (target mean activation)", "rho", "(0, 1)"),
    ("sparse", {"rho": 1.5}, "rho (target mean activation)", "rho", "(0, 1)"),
    ("ksparse", {"k": 0}, "k (active units)", "k", "[1, 144]"),
    ("ksparse", {"k": 145}, "k (active units)", "k", "[1, 144]"),
    ("ksparse", {"code_size": 8, "k": 9}, "k (active units)", "k", "[1, 8]"),
    ("denoising", {"corruption": "masking", "noise_level": 1.5}, "Noise level (a)", "noise_level", "[0, 1]"),
]


@pytest.mark.parametrize(("variant", "values", "label", "field", "allowed"), ERROR_RULES,
                         ids=[f"{v}-{'-'.join(f'{k}={x}' for k, x in d.items())}" for v, d, *_ in ERROR_RULES])
def test_the_form_names_a_bad_field_and_nothing_trains(variant, values, label, field, allowed):
    at = _ae_page(**values) if variant == "ae" else _panel(variant, **values)
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"**{label}** (`{field}`): must be") and allowed in errors[0]
    assert at.button(key=f"panel.{variant}.start").disabled
    at.run()
    assert session_of(at, variant).status == "idle" and session_of(at, variant).trainer is None


OUT_OF_RANGE = [  # (variant, field, typed value, range the message and the help name)
    ("ae", "batch_size", 0, "[1, 10000]"),
    ("ae", "batch_size", 10001, "[1, 10000]"),
    ("ae", "epochs", 99999, "[1, 10000]"),
    ("ae", "code_size", 5000, "[1, 4096]"),
    ("ae", "lr", 11.0, "(0, 10]"),
    ("vae", "latent_dim", 0, "[1, 1024]"),
    ("vae", "beta", -1.0, "[0, 1000]"),
    ("sparse", "beta", -1.0, "[0, 1000]"),
    ("contractive", "lam", -0.1, "[0, 1000]"),
    ("denoising", "noise_level", -0.1, "[0, 5]"),
]


@pytest.mark.parametrize(("variant", "field", "typed", "allowed"), OUT_OF_RANGE,
                         ids=[f"{v}-{f}={t}" for v, f, t, _ in OUT_OF_RANGE])
def test_an_out_of_range_value_stays_typed_and_is_named_with_its_range(variant, field, typed, allowed):
    """The browser used to keep the previous value silently (and show the previous value's message): now the typed
    value stays, one message names the field and its range, and Start stays disabled."""
    at = _ae_page(**{field: typed}) if variant == "ae" else _panel(variant, **{field: typed})
    widget = at.number_input(key=f"cfg.{variant}.{field}")
    assert widget.value == typed and f"Allowed: {allowed}" in widget.help
    assert len(at.error) == 1 and f"(`{field}`): must be in {allowed}" in at.error[0].value
    assert at.button(key=f"panel.{variant}.start").disabled


def test_a_form_over_the_memory_budget_is_refused_before_start():
    at = _ae_page(hidden_sizes=",".join(["4096"] * 12))
    assert len(at.error) == 1 and "hidden_sizes: training this model needs about 5,8" in at.error[0].value
    assert "memory budget of 2,048 MB" in at.error[0].value
    assert at.button(key="panel.ae.start").disabled and session_of(at).trainer is None


def test_an_unknown_dataset_is_named_in_the_app_and_nothing_runs(monkeypatch):
    monkeypatch.setenv("VAELAB_DATASET", "imagenet")
    at = new_app().run()
    no_exception(at)
    assert len(at.error) == 1 and "unknown data source 'imagenet'; allowed: mnist" in at.error[0].value
    assert at.title[0].value.startswith("vaelab")  # Home needs no data: drawn before the sidebar loads it
    at.switch_page("pages/ae.py").run()
    no_exception(at)
    assert len(at.error) == 1 and "unknown data source 'imagenet'" in at.error[0].value
    assert not at.title and not at.button  # st.stop: a variant page is not drawn without its data

    monkeypatch.setenv("VAELAB_DATASET", "mnist-5k")
    at = new_app().run()
    at.text_input(key="vaelab.test_source").set_value("imagenet").run()
    no_exception(at)
    assert "unknown data source 'imagenet'" in at.sidebar.error[0].value
    assert any("test: mnist-5k (1,000)" in c.value for c in at.sidebar.caption)


# -- 2. divergence -----------------------------------------------------------------------------------------------
def test_lr_10_in_the_app_pauses_with_a_message_restores_finite_weights_and_saves_only_those():
    """The VAE page's default network (144 hidden units) diverges within a few steps at lr = 10 (every seed)."""
    at = _panel("vae", hidden_sizes="144", latent_dim=2, lr=10.0, epochs=2, batch_size=100)
    at.button(key="panel.vae.start").click().run()
    run_until_stopped(at, "vae")
    no_exception(at)
    session = session_of(at, "vae")
    trainer = session.trainer
    assert session.status == "error" and trainer.step < trainer.total_steps
    assert any("Training stopped" in e.value and "lower the learning rate (lr=10)" in e.value for e in at.error)
    assert _all_finite(trainer.model)
    assert all(math.isfinite(v) for row in trainer.history for k, v in row.items() if k != "kind")
    assert any("Save stores that state" in c.value for c in at.caption)
    assert at.button(key="panel.vae.resume").disabled  # plain Resume is off: only a new learning rate continues

    at.text_input(key="panel.vae.save_name").set_value("diverged").run()  # saving keeps the finite state
    at.button(key="panel.vae.save").click().run()
    assert "Saved `diverged`" in at.success[0].value
    saved = load_checkpoint(Path(os.environ["VAELAB_CHECKPOINT_DIR"]) / "vae" / "diverged.pt")
    assert _all_finite(saved.model) and "lower the learning rate" in saved.trainer_state["error"]
    for name, value in saved.model.state_dict().items():
        assert torch.equal(value, trainer.model.state_dict()[name]), name


def test_after_a_divergence_the_run_resumes_from_the_restored_weights_with_a_new_lr():
    at = _panel("vae", hidden_sizes="144", latent_dim=2, lr=10.0, epochs=20, batch_size=100)
    at.button(key="panel.vae.start").click().run()
    run_until_stopped(at, "vae")  # diverges within a few steps (the test above)
    session = session_of(at, "vae")
    trainer = session.trainer
    assert session.status == "error" and trainer.error is not None and _all_finite(trainer.model)
    step = trainer.step

    lr_key = f"panel.vae.recover_lr.{session.version}"
    assert at.number_input(key=lr_key).value < 10.0  # a lower learning rate is offered
    at.number_input(key=lr_key).set_value(0.0).run()
    at.button(key="panel.vae.recover").click().run()
    assert any("Not resumed: lr: must be in (0, 10]" in e.value for e in at.error) and session.status == "error"
    at.number_input(key=lr_key).set_value(5e-4).run()
    at.button(key="panel.vae.recover").click().run()
    no_exception(at)
    assert session.status == "running" and session.worker is not None  # a new worker, from the finite state
    wait_for(at, "vae", lambda s: s.step > step + 20 or not s.running, "steps at the new learning rate")
    assert session.status == "running" and trainer.error is None and _all_finite(trainer.model)
    assert trainer.config.lr == 5e-4
    assert at.number_input(key="cfg.vae.lr").value == 5e-4  # the read-only form shows the rate in use
    stop_reset(at, "vae")


def test_a_step_that_makes_a_weight_nan_is_rolled_back_at_once(small, monkeypatch):
    """The loss of a step can be finite while its update makes the weights inf / nan: the chunk must not end
    holding such weights (the next chunk's snapshot would keep them)."""
    trainer = Trainer("ae", _tiny("ae"), small)
    trainer.advance(max_steps=2)
    good = _weights(trainer.model)
    real_step, calls = trainer.optimizer.step, []

    def step_then_break(*args, **kwargs):
        real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the last step of the next chunk
            next(trainer.model.parameters()).data.fill_(float("inf"))

    monkeypatch.setattr(trainer.optimizer, "step", step_then_break)
    assert trainer.advance(max_steps=2) == []
    assert trainer.error is not None and "after step 4: a weight became inf or nan" in trainer.error
    assert trainer.step == 2 and _all_finite(trainer.model)
    assert all(torch.equal(v, good[k]) for k, v in trainer.model.state_dict().items())


def test_weights_with_inf_or_nan_are_never_saved(small, tmp_path):
    trainer = Trainer("ae", _tiny("ae"), small)
    trainer.advance(max_steps=1)
    with torch.no_grad():
        next(trainer.model.parameters())[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="holds inf or nan .*nothing was written"):
        save_trainer(trainer, "broken", directory=tmp_path)
    assert not any(tmp_path.rglob("*.pt"))


# -- 3. a save killed half-way -------------------------------------------------------------------------------------
KILLED_WRITER = r"""
import io, os, sys, time
import torch
from vaelab import checkpoints
from vaelab.data import DataBundle, Split
from vaelab.training import Trainer
from vaelab.variants import get_variant

root = sys.argv[1]
g = torch.Generator().manual_seed(0)
split = Split(torch.rand(200, 784, generator=g), torch.arange(200) % 10, "random")
data = DataBundle(split, split, (28, 28), 10)
config = get_variant("ae").config_cls(hidden_sizes=(1024,), code_size=32, batch_size=50, epochs=2)
trainer = Trainer("ae", config, data)
trainer.advance(max_steps=1)
checkpoints.save_trainer(trainer, "run", directory=root)
print("SAVED", flush=True)

real_save = torch.save
def half_then_hang(obj, f, *args, **kwargs):  # the real bytes, written slowly: killed in the middle
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    payload = buffer.getvalue()
    f.write(payload[: len(payload) // 2])
    f.flush()
    os.fsync(f.fileno())
    print("HALF", len(payload), flush=True)
    time.sleep(120)
    f.write(payload[len(payload) // 2:])
torch.save = half_then_hang
trainer.advance(max_steps=1)
checkpoints.save_trainer(trainer, "run", directory=root, overwrite=True)
"""


def test_a_process_killed_while_writing_a_checkpoint_leaves_the_previous_file_whole(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert child.stdout.readline().strip() == "SAVED", child.stderr.read()
        path = tmp_path / "ae" / "run.pt"
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        line = child.stdout.readline().split()
        assert line[0] == "HALF", child.stderr.read()
        (partial,) = (tmp_path / "ae").glob(".run.pt.*.tmp")  # the new file, half written
        assert 0 < partial.stat().st_size <= int(line[1]) // 2 + 1 and int(line[1]) > 10 * 2**20
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    ckpt = load_checkpoint(path)
    assert ckpt.meta["steps"] == 1 and _all_finite(ckpt.model)
    assert [(i.name, i.error) for i in list_checkpoints(tmp_path)] == [("run", None)]  # the orphan is not listed


# -- 5. two sessions ---------------------------------------------------------------------------------------------
def test_two_saves_to_one_name_from_two_threads_leave_one_whole_file(small, tmp_path):
    trainers = [Trainer("ae", _tiny("ae"), small, seed=seed) for seed in (1, 2)]
    for t in trainers:
        t.advance(max_steps=1)
    expected = [_weights(t.model) for t in trainers]
    assert not torch.equal(expected[0]["encoder.0.weight"], expected[1]["encoder.0.weight"])
    path = tmp_path / "ae" / "shared.pt"
    save_trainer(trainers[0], "shared", directory=tmp_path)
    stop, problems, reads = threading.Event(), [], [0]

    def which(weights: dict) -> int | None:
        for i, e in enumerate(expected):
            if all(torch.equal(weights[k], e[k]) for k in e):
                return i
        return None

    def writer(trainer: Trainer) -> None:
        try:
            for _ in range(25):
                save_trainer(trainer, "shared", directory=tmp_path, overwrite=True)
        except Exception as e:  # pragma: no cover - reported below
            problems.append(f"save: {e!r}")

    def reader() -> None:
        while not stop.is_set():
            try:
                if which(load_checkpoint(path).model.state_dict()) is None:
                    problems.append("a mix of both runs")
                reads[0] += 1
            except Exception as e:
                problems.append(f"load: {e!r}")

    threads = [threading.Thread(target=writer, args=(t,)) for t in trainers]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert problems == [] and reads[0] > 0
    assert which(load_checkpoint(path).model.state_dict()) is not None
    assert sorted(p.name for p in path.parent.iterdir()) == ["shared.pt"]  # no temp files left


def test_two_sessions_saving_one_new_name_at_once_one_wins_the_other_is_told(small, tmp_path):
    trainers = [Trainer("ae", _tiny("ae"), small, seed=seed) for seed in (1, 2)]
    outcomes: dict[str, list] = {}

    def save(index: int, name: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            save_trainer(trainers[index], name, directory=tmp_path)
            outcomes[name].append(("saved", index))
        except CheckpointError as e:
            outcomes[name].append(("refused", str(e)))

    for round_ in range(8):
        name = f"new-{round_}"
        outcomes[name] = []
        barrier = threading.Barrier(2)
        _run_together(save, [(i, name, barrier) for i in (0, 1)])
        kinds = sorted(kind for kind, _ in outcomes[name])
        assert kinds == ["refused", "saved"], outcomes[name]
        winner = next(i for kind, i in outcomes[name] if kind == "saved")
        refusal = next(msg for kind, msg in outcomes[name] if kind == "refused")
        assert "already exists" in refusal
        stored = load_checkpoint(tmp_path / "ae" / f"{name}.pt").model.state_dict()
        assert all(torch.equal(v, trainers[winner].model.state_dict()[k]) for k, v in stored.items())


def test_trainers_in_two_threads_do_not_draw_from_each_others_random_stream(small):
    """A VAE's reparameterisation draws from torch's global RNG: concurrent sessions must not share it."""
    def run(seed: int, barrier: threading.Barrier | None, out: dict) -> None:
        trainer = Trainer("vae", _tiny("vae"), small, seed=seed)
        if barrier is not None:
            barrier.wait()
        for _ in range(30):
            trainer.advance(max_steps=1)
        out[seed] = _weights(trainer.model)

    alone: dict = {}
    for seed in (1, 2):
        run(seed, None, alone)
    together: dict = {}
    barrier = threading.Barrier(2)
    _run_together(run, [(seed, barrier, together) for seed in (1, 2)])
    for seed in (1, 2):
        for name, value in alone[seed].items():
            assert torch.equal(together[seed][name], value), (seed, name)


def test_two_app_sessions_keep_separate_runs_and_share_whole_files():
    first = _ae_page(code_size=2, epochs=20)
    second = _ae_page(code_size=3, epochs=20)
    second.number_input(key="vaelab.seed").set_value(7).run()
    first.button(key="panel.ae.start").click().run()
    second.button(key="panel.ae.start").click().run()
    wait_for(first, "ae", lambda s: s.step > 0, "the first session's steps")
    wait_for(second, "ae", lambda s: s.step > 0, "the second session's steps")
    a, b = session_of(first), session_of(second)
    assert a is not b and a.trainer is not b.trainer and a.worker is not b.worker
    assert (a.trainer.config.code_size, b.trainer.config.code_size) == (2, 3)
    assert (a.trainer.seed, b.trainer.seed) == (0, 7)
    assert a.history is not b.history

    first.button(key="panel.ae.pause").click().run()
    paused, other = a.trainer.step, b.trainer.step
    wait_for(second, "ae", lambda s: s.step > other or not s.running, "the second session's next steps")
    time.sleep(0.3)
    first.run()
    assert a.status == "paused" and a.trainer.step == paused and b.trainer.step > other  # one paused, one trains

    first.text_input(key="panel.ae.save_name").set_value("ours").run()
    first.button(key="panel.ae.save").click().run()
    second.button(key="panel.ae.pause").click().run()
    second.text_input(key="panel.ae.save_name").set_value("ours").run()
    second.button(key="panel.ae.save").click().run()
    assert "already exists" in second.warning[0].value
    second.button(key="panel.ae.overwrite_yes").click().run()
    no_exception(first)
    no_exception(second)
    stored = load_checkpoint(Path(os.environ["VAELAB_CHECKPOINT_DIR"]) / "ae" / "ours.pt")
    assert stored.config.code_size == 3 and stored.meta["steps"] == b.trainer.step
    assert a.trainer.config.code_size == 2  # the first session's run is untouched by the second's save


def test_a_failed_save_in_the_app_keeps_the_run_and_a_later_save_stores_it(monkeypatch, tmp_path):
    at = _ae_page()
    at.button(key="panel.ae.start").click().run()
    at.run()
    at.button(key="panel.ae.pause").click().run()
    trainer = session_of(at).trainer
    steps = trainer.step
    assert steps > 0
    good = os.environ["VAELAB_CHECKPOINT_DIR"]
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the folder should be: no save can go there")
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(blocker / "checkpoints"))
    at.text_input(key="panel.ae.save_name").set_value("kept").run()
    at.button(key="panel.ae.save").click().run()
    no_exception(at)
    assert len(at.error) == 1 and "Not saved: cannot write" in at.error[0].value
    assert session_of(at).trainer is trainer and trainer.step == steps  # the run is still here
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", good)
    at.button(key="panel.ae.save").click().run()
    assert load_checkpoint(Path(good) / "ae" / "kept.pt").meta["steps"] == steps


# -- 6. no network -----------------------------------------------------------------------------------------------
@pytest.fixture
def offline_mnist(monkeypatch, tmp_path):
    """torchvision's MNIST download fails (the error is the test's parameter); nothing is cached."""
    import torchvision.datasets

    def set_error(error: BaseException) -> None:
        def fail(self):
            raise error
        monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail)

    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "data"))
    data._load_torchvision_split.cache_clear()
    sidebar.cached_data.clear()
    yield set_error
    data._load_torchvision_split.cache_clear()
    sidebar.cached_data.clear()


NETWORK_ERRORS = [pytest.param(e, id=type(e).__name__) for e in (
    urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
    TimeoutError("timed out"),  # socket.timeout
    RuntimeError("Error downloading train-images-idx3-ubyte.gz"),
    OSError(101, "Network is unreachable"),
    ConnectionResetError(104, "Connection reset by peer"),
)] + [
    pytest.param(http.client.IncompleteRead(b"\x1f\x8b", 9912422), id="IncompleteRead"),
    pytest.param(EOFError("Compressed file ended before the end-of-stream marker was reached"), id="EOFError"),
]


@pytest.mark.parametrize("error", NETWORK_ERRORS)
def test_a_failed_download_falls_back_to_mnist_5k_and_says_why(offline_mnist, monkeypatch, error):
    offline_mnist(error)
    monkeypatch.setenv("VAELAB_DATASET", "mnist")
    at = new_app().run()
    no_exception(at)
    (notice,) = at.sidebar.expander  # one line, the error folded beneath it
    assert notice.label == "No network: using the embedded 5,000 MNIST digits" and not at.sidebar.warning
    detail = notice.code[0].value
    assert "could not download data source 'mnist'" in detail and str(error).split("]")[-1].strip()[:10] in detail
    assert any("Train: mnist-5k (4,000 images)" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/ae.py").run()
    no_exception(at)
    assert not at.button(key="panel.ae.start").disabled  # the lab works on the fallback


def test_a_checkpoint_of_an_unreachable_dataset_loads_on_the_fallback_and_says_so(offline_mnist):
    offline_mnist(urllib.error.URLError("offline"))
    full = load_data("mnist-5k")
    trainer = Trainer("ae", _tiny("ae", epochs=50), full)
    trainer.advance(max_steps=2)
    path = save_trainer(trainer, "from-mnist")
    payload = torch.load(path, weights_only=True)
    payload["dataset"] = {"train": "mnist", "test": "mnist", "binarize": "none"}
    torch.save(payload, path)
    at = new_app().run()
    at.switch_page("pages/ae.py").run()
    at.button(key="panel.ae.load").click().run()
    no_exception(at)
    session = session_of(at)
    assert session.status == "paused" and session.step == 2
    assert any("could not download data source 'mnist'" in i.value for i in at.info)


# -- 7. long sessions --------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _live_figures() -> int:
    from plotly.basedatatypes import BaseFigure

    return sum(1 for o in gc.get_objects() if issubclass(type(o), BaseFigure))  # type(): no __class__ lookups


def _widget_states(at: AppTest) -> int:
    state = object.__getattribute__(at._session_state, "_state")
    return len(state._new_widget_state.widget_metadata) + len(state._old_state)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_a_long_live_session_keeps_memory_history_and_state_bounded():
    at = _ae_page(epochs=200)
    at.button(key="panel.ae.start").click().run()
    session = session_of(at)
    for _ in range(20):  # warm up: the page drawn while its worker trains
        at.run()
        time.sleep(0.02)
    gc.collect()
    rss0, figures0, widgets0 = _rss_mb(), _live_figures(), _widget_states(at)
    step0 = session.step
    for _ in range(100):  # a hundred reruns (clicks) while the run trains
        at.run()
        time.sleep(0.02)
    no_exception(at)
    gc.collect()
    trainer = session.trainer
    assert session.running and trainer.step > step0
    # train rows at most one per step, one test row per epoch: linear in the steps, nothing else
    assert len(session.history) <= trainer.step + trainer.epoch + 1
    assert len(session.results) <= MAX_RESULTS_PER_NAME * 2  # the page's cached views: newest few only
    assert _widget_states(at) == widgets0  # the stream's components keep their keys: no state left behind
    assert _live_figures() <= figures0 + 2  # figures are drawn and dropped, not accumulated
    assert _rss_mb() - rss0 < 100, f"RSS grew from {rss0:.0f} MB to {_rss_mb():.0f} MB in 100 page runs"
    stop_reset(at, "ae")
