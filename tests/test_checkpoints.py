"""Checkpoints: round trip, resume, atomic writes, safe and explanatory loading of broken files, listing."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from tests.helpers import mnist_5k_subset
from vaelab import checkpoints
from vaelab.checkpoints import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_dir,
    delete_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_trainer,
    sanitize_name,
    save_trainer,
    update_metadata,
)
from vaelab.data import DataBundle, Split
from vaelab.training import Trainer
from vaelab.variants import get_variant

N_TRAIN, N_TEST, BATCH = 400, 100, 50  # 8 steps per epoch
TIMING = ("time", "samples_per_s")


def tiny_trainer(data: DataBundle, variant: str = "ae", **overrides) -> Trainer:
    sizes = {"ae": {"code_size": 8}, "vae": {"latent_dim": 4}}[variant]
    config = get_variant(variant).config_cls(**{"hidden_sizes": (32,), "batch_size": BATCH, "epochs": 3,
                                                **sizes, **overrides})
    return Trainer(variant, config, data, seed=1, log_every=3)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return mnist_5k_subset(N_TRAIN, N_TEST)


@pytest.fixture(scope="module")
def trained(digits) -> Trainer:
    """An ae trained one epoch and three steps (mid-epoch, with a test row)."""
    trainer = tiny_trainer(digits)
    trainer.advance(max_steps=11)
    return trainer


@pytest.fixture
def saved(trained, tmp_path):
    return save_trainer(trained, "first run", directory=tmp_path)


def rewrite(path, **changes):
    """Save a modified copy of a checkpoint's payload (to make incompatible files)."""
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


# -- round trip ---------------------------------------------------------------------------------------------
def test_round_trip_gives_the_same_predictions_and_metadata(trained, saved, tmp_path, digits):
    assert saved == tmp_path / "ae" / "first-run.pt"
    ckpt = load_checkpoint(saved)
    assert ckpt.variant == "ae" and ckpt.config == trained.config
    assert not ckpt.model.training
    x = digits.test.images[:20]
    trained.model.eval()
    with torch.no_grad():
        assert torch.equal(ckpt.model.reconstruct(x), trained.model.reconstruct(x))
        assert torch.equal(ckpt.model.encode(x), trained.model.encode(x))
    trained.model.train()
    assert ckpt.history == trained.history
    meta = ckpt.meta
    assert meta["format_version"] == FORMAT_VERSION and meta["name"] == "first-run"
    assert meta["dataset"] == {"train": "mnist-5k", "test": "mnist-5k", "binarize": "none"}
    assert (meta["input_dim"], meta["n_classes"], meta["image_shape"]) == (784, 10, [28, 28])
    assert meta["epochs"] == 1 and meta["train_time"] == trained.elapsed
    last_test = [r for r in trained.history if r["kind"] == "test"][-1]
    assert meta["metrics"] == {"reconstruction": last_test["reconstruction"], "total": last_test["total"]}
    assert set(meta["versions"]) == {"torch", "vaelab", "python"} and meta["versions"]["torch"] == torch.__version__
    assert "model_state" not in meta and "trainer_state" not in meta
    assert not any(isinstance(v, torch.Tensor) for v in meta.values())


def test_default_directory_comes_from_the_environment(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(tmp_path / "elsewhere"))
    assert checkpoint_dir() == tmp_path / "elsewhere"
    path = save_trainer(trained, "env")
    assert path == tmp_path / "elsewhere" / "ae" / "env.pt" and path.is_file()
    assert [info.name for info in list_checkpoints()] == ["env"]


def test_an_existing_name_needs_overwrite(trained, saved, tmp_path):
    with pytest.raises(CheckpointError, match="already exists"):
        save_trainer(trained, "first run", directory=tmp_path)
    assert save_trainer(trained, "first run", directory=tmp_path, overwrite=True) == saved


def test_restored_trainer_continues_exactly(digits, tmp_path):
    straight = tiny_trainer(digits, "vae", binarize="dynamic")
    straight.advance(max_steps=11)
    straight.advance(max_steps=9)

    first = tiny_trainer(digits, "vae", binarize="dynamic")
    first.advance(max_steps=11)
    path = save_trainer(first, "half", directory=tmp_path)
    resumed = restore_trainer(load_checkpoint(path), digits)
    resumed.advance(max_steps=9)

    assert resumed.step == straight.step == 20
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    strip = [{k: v for k, v in row.items() if k not in TIMING} for row in straight.history]
    assert [{k: v for k, v in row.items() if k not in TIMING} for row in resumed.history] == strip


def test_restore_needs_matching_data(saved, digits):
    other = DataBundle(Split(digits.train.images[:100], digits.train.labels[:100], "mnist-5k"), digits.test,
                       digits.image_shape, digits.n_classes)
    with pytest.raises(CheckpointError, match="same training set"):
        restore_trainer(load_checkpoint(saved), other)
    small = DataBundle(Split(torch.zeros(10, 64), torch.zeros(10, dtype=torch.long), "digits"),
                       Split(torch.zeros(5, 64), torch.zeros(5, dtype=torch.long), "digits"), (8, 8), 10)
    with pytest.raises(CheckpointError, match="784 pixels"):
        restore_trainer(load_checkpoint(saved), small)


# -- broken files -------------------------------------------------------------------------------------------
def test_truncated_and_random_files_are_not_readable(saved, tmp_path):
    truncated = tmp_path / "truncated.pt"
    data = saved.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    noise = tmp_path / "noise.pt"
    noise.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, noise, empty, tmp_path / "missing.pt", tmp_path):
        with pytest.raises(CheckpointError, match="not a readable vaelab checkpoint"):
            load_checkpoint(path)


def test_foreign_files_are_named_as_such(tmp_path):
    not_dict = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_dict)
    with pytest.raises(CheckpointError, match="not a vaelab checkpoint.*list"):
        load_checkpoint(not_dict)
    plain_weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), plain_weights)
    with pytest.raises(CheckpointError, match="not a vaelab checkpoint.*missing: format_version"):
        load_checkpoint(plain_weights)


def test_pickled_objects_are_refused_by_the_safe_loader(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"format_version": 1, "payload": _Foreign()}, path)
    with pytest.raises(CheckpointError, match="not a readable vaelab checkpoint.*safe"):
        load_checkpoint(path)


class _Foreign:
    """A class a weights-only load must not instantiate."""


def test_wrong_format_version(saved):
    rewrite(saved, format_version=7)
    with pytest.raises(CheckpointError, match="format version 7, this vaelab reads 1"):
        load_checkpoint(saved)


def test_unknown_and_unexpected_variants(saved):
    with pytest.raises(CheckpointError, match="holds a 'ae' model, not 'vae'"):
        load_checkpoint(saved, expected_variant="vae")
    assert load_checkpoint(saved, expected_variant="ae").variant == "ae"
    rewrite(saved, variant="gan")
    with pytest.raises(CheckpointError, match="unknown variant 'gan'"):
        load_checkpoint(saved)


def test_rejected_config(saved):
    config = torch.load(saved, weights_only=True)["config"]
    rewrite(saved, config={**config, "code_size": -3})
    with pytest.raises(CheckpointError, match="config is rejected: code_size: must be in"):
        load_checkpoint(saved)
    rewrite(saved, config={**config, "wings": 2})
    with pytest.raises(CheckpointError, match="config is rejected: wings"):
        load_checkpoint(saved)


def test_weights_that_do_not_match_the_config(saved):
    config = torch.load(saved, weights_only=True)["config"]
    rewrite(saved, config={**config, "code_size": 5})
    with pytest.raises(CheckpointError, match="weights do not match the config.*size mismatch"):
        load_checkpoint(saved)


# -- atomic writes ------------------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_previous_file_intact(trained, saved, monkeypatch):
    before = saved.read_bytes()
    real_save = torch.save

    def half_then_crash(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(len(before) // 2)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(CheckpointError, match="cannot write .*first-run.pt: disk full"):
        save_trainer(trained, "first run", directory=saved.parent.parent, overwrite=True)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["first-run.pt"]  # no temp file left behind
    assert load_checkpoint(saved).variant == "ae"


def test_update_metadata_merges_and_keeps_the_weights(saved):
    meta = update_metadata(saved, eval_cache={"loglik": -99.5, "k": 50}, note="fine")
    assert meta["eval_cache"] == {"loglik": -99.5, "k": 50}
    ckpt = load_checkpoint(saved)
    assert ckpt.meta["eval_cache"]["loglik"] == -99.5 and ckpt.meta["note"] == "fine"
    update_metadata(saved, note="second")
    assert load_checkpoint(saved).meta["eval_cache"]["k"] == 50  # earlier keys kept
    with pytest.raises(CheckpointError, match="cannot change 'config'"):
        update_metadata(saved, config={})
    with pytest.raises(CheckpointError, match="object cannot be stored"):
        update_metadata(saved, thing=object())


def test_delete_checkpoint(saved, tmp_path):
    delete_checkpoint(saved)
    assert not saved.exists()
    with pytest.raises(CheckpointError):
        delete_checkpoint(saved)


# -- names --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "expected"), [
    ("run1", "run1"), ("my first  run", "my-first-run"), ("  lr_1e-3.beta2 ", "lr_1e-3.beta2"), ("model.pt", "model"),
    ("x" * 80, "x" * 80),
])
def test_sanitize_name_accepts(given, expected):
    assert sanitize_name(given) == expected


@pytest.mark.parametrize(("given", "why"), [
    ("", "empty"), ("   ", "empty"), ("a/b", "'/'"), ("a\\b", "'/'"), ("..", "'..'"), ("a..b", "'..'"),
    (".hidden", "start with"), ("x" * 81, "at most 80"), ("naïve", "allowed: letters"), ("a:b", "allowed"),
])
def test_sanitize_name_rejects(given, why):
    with pytest.raises(CheckpointError, match=why):
        sanitize_name(given)


# -- listing ------------------------------------------------------------------------------------------------
def test_listing_reads_metadata_and_flags_broken_files(trained, digits, tmp_path):
    save_trainer(trained, "good", directory=tmp_path)
    vae = tiny_trainer(digits, "vae")
    vae.advance(max_steps=2)  # no epoch finished yet: no test loss
    save_trainer(vae, "early", directory=tmp_path)
    (tmp_path / "vae" / "broken.pt").write_bytes(b"\x00garbage")
    (tmp_path / "vae" / "notes.txt").write_text("not a checkpoint")

    with pytest.warns(UserWarning, match="broken.pt"):
        infos = list_checkpoints(tmp_path)
    by_name = {info.name: info for info in infos}
    assert set(by_name) == {"good", "early", "broken"}
    good = by_name["good"]
    assert (good.variant, good.epochs, good.error) == ("ae", 1, None)
    assert good.dataset["train"] == "mnist-5k"
    assert good.test_loss == [r for r in trained.history if r["kind"] == "test"][-1]["total"]
    assert good.created and good.path == tmp_path / "ae" / "good.pt"
    assert by_name["early"].test_loss is None and by_name["early"].epochs == 0
    broken = by_name["broken"]
    assert broken.variant == "vae" and "not a readable vaelab checkpoint" in broken.error

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [i.name for i in list_checkpoints(tmp_path, variant="ae")] == ["good"]
    assert list_checkpoints(tmp_path / "nothing-here") == []


def test_listing_uses_the_safe_loader(saved, monkeypatch):
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "load", spy)
    list_checkpoints(saved.parent.parent)
    load_checkpoint(saved)
    assert seen and all(flag is True for flag in seen)


class Sneaky(str):
    """A str subclass: pickled as a class instance, which a weights-only load refuses."""


def test_a_payload_the_safe_loader_would_refuse_is_never_written(saved):
    before = saved.read_bytes()
    with pytest.raises(CheckpointError, match="safe load could not read it back"):
        update_metadata(saved, note=Sneaky("looks like text"))
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["first-run.pt"]


def test_the_load_section_shows_dataset_epochs_test_loss_and_date_of_each_file(digits):
    from tests.helpers import no_exception, open_page

    first = tiny_trainer(digits)
    first.advance(max_steps=first.steps_per_epoch)  # one epoch: a test row, so a test loss
    save_trainer(first, "one-epoch")
    second = tiny_trainer(digits)
    second.advance(max_steps=2 * second.steps_per_epoch)
    save_trainer(second, "two-epochs")
    (checkpoint_dir() / "ae" / "broken.pt").write_bytes(b"not a checkpoint")
    at = open_page("pages/ae.py")
    table = next(d.value for d in at.dataframe if "saved (UTC)" in d.value.columns).set_index("name")
    infos = {i.name: i for i in list_checkpoints(variant="ae")}
    for name in ("one-epoch", "two-epochs"):
        info = infos[name]
        row = table.loc[name]
        assert (row["dataset"], row["epochs"]) == ("mnist-5k", info.epochs)
        assert row["test loss"] == pytest.approx(info.test_loss)
        assert row["saved (UTC)"] == info.created[:16].replace("T", " ")
    assert table.loc["two-epochs", "epochs"] == 2
    assert "PyTorch" in table.loc["broken", "unreadable"]  # says why, in the table too
    no_exception(at)
