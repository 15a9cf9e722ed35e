"""Checkpoints and command lines a hostile student or a careless user could produce: each is refused with one clear
line (no traceback), and no failure loses a trained run."""

import os
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vaelab import checkpoints
from vaelab.checkpoints import CheckpointError, import_checkpoint, list_checkpoints, load_checkpoint
from vaelab.data import DataError, load_data
from vaelab.training import Trainer
from vaelab.variants import VARIANTS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A small valid ae checkpoint (digits, 1 epoch)."""
    data = load_data("digits")
    trainer = Trainer("ae", VARIANTS["ae"].config_cls(hidden_sizes=(16,), code_size=4, epochs=1), data, seed=0)
    trainer.run()
    return checkpoints.save_trainer_to(trainer, tmp_path_factory.mktemp("ckpt") / "small.pt")


def _edited(saved: Path, tmp_path: Path, edit) -> bytes:
    payload = torch.load(saved, weights_only=True)
    edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    return path.read_bytes()


def _refused_upload(data: bytes, tmp_path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        import_checkpoint(data, "edited.pt", "ae", directory=tmp_path / "store")
    assert not list((tmp_path / "store").rglob("*")) or not list((tmp_path / "store").rglob("*.pt"))


@pytest.mark.parametrize(("edit", "match"), [
    (lambda p: p["trainer_state"].update(seed="x"), r"trainer state's 'seed' is 'x', not a int"),
    (lambda p: p["trainer_state"].pop("log_every"), r"trainer state has no 'log_every'"),
    (lambda p: p["trainer_state"].update(step=-3), r"trainer state's 'step' is -3; it must be >= 0"),
    (lambda p: p.update(trainer_state=[1, 2]), r"trainer state is a list, not a table"),
    (lambda p: p["history"].append({"kind": "train", "step": 1, "total": "lots"}), r"'total' is 'lots', not a number"),
    (lambda p: p["history"].append({"kind": "bogus", "step": 1}), r"history row \d+ is not a train or test row"),
    (lambda p: p.update(history="abc"), r"its history is a str, not a list of rows"),
    (lambda p: p.update(config="e"), r"its config is a str, not a table of fields"),
    (lambda p: p["model_state"]["encoder.0.weight"].fill_(float("nan")), r"encoder.0.weight holds inf or nan"),
])
def test_an_edited_checkpoint_is_refused_on_upload_and_load_with_what_is_wrong(saved, tmp_path, edit, match):
    data = _edited(saved, tmp_path, edit)
    _refused_upload(data, tmp_path, match)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "edited.pt")


def test_an_edited_trainer_state_no_longer_crashes_eval_with_a_traceback(saved, tmp_path):
    _edited(saved, tmp_path, lambda p: p["trainer_state"].update(seed="x"))
    run = subprocess.run([sys.executable, "-m", "vaelab", "eval", str(tmp_path / "edited.pt"), "--dataset", "digits",
                          "-q"], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 1
    assert "trainer state's 'seed'" in run.stderr and "Traceback" not in run.stderr


def test_random_bytes_and_python_objects_get_their_own_reasons(tmp_path):
    for seed in range(20):  # random bytes fail torch's reader in several ways: every one is told alike
        junk = bytes(torch.randint(0, 256, (4000,), generator=torch.Generator().manual_seed(seed)).tolist())
        with pytest.raises(CheckpointError, match="its bytes are not a PyTorch file"):
            import_checkpoint(junk, "junk.pt", "ae", directory=tmp_path)

    path = tmp_path / "objects.pt"
    torch.save({"format_version": 1, "thing": Path("x")}, path)  # any class: a weights-only load refuses it
    with pytest.raises(CheckpointError, match="holds Python objects that a safe"):
        import_checkpoint(path.read_bytes(), "objects.pt", "ae", directory=tmp_path)


def test_a_nan_checkpoint_is_listed_as_unreadable_not_with_a_test_loss(saved, tmp_path):
    folder = tmp_path / "ae"
    folder.mkdir()
    payload = torch.load(saved, weights_only=True)
    payload["model_state"]["decoder.0.bias"].fill_(float("inf"))
    torch.save(payload, folder / "diverged.pt")
    with pytest.warns(UserWarning, match="inf or nan"):
        (info,) = list_checkpoints(tmp_path)
    assert info.error is not None and info.test_loss is None


def test_a_symbolic_link_inside_the_folder_is_not_listed(saved, tmp_path):
    (tmp_path / "ae").mkdir()
    (tmp_path / "ae" / "linked.pt").symlink_to(saved)  # points outside the checkpoint folder
    (tmp_path / "ae" / "real.pt").write_bytes(saved.read_bytes())
    assert [i.name for i in list_checkpoints(tmp_path)] == ["real"]


def test_stale_temp_files_of_killed_saves_are_cleaned_and_fresh_ones_kept(tmp_path):
    folder = tmp_path / "vae"
    folder.mkdir()
    old = [folder / ".a.pt.x1y2.tmp", folder / ".b.pt.z9.upload"]
    fresh = folder / ".c.pt.q7.tmp"  # a save in progress
    keep = folder / "c.pt"
    for path in [*old, fresh, keep]:
        path.write_bytes(b"x" * 100)
    hour_ago = time.time() - 3600
    for path in old:
        os.utime(path, (hour_ago, hour_ago))
    assert checkpoints.clean_stale_temp_files(tmp_path) == 2
    assert [p.exists() for p in old] == [False, False] and fresh.exists() and keep.exists()


def test_saved_files_get_the_umask_mode_and_a_replaced_file_keeps_its_mode(saved, tmp_path):
    data = load_data("digits")
    trainer = Trainer("ae", VARIANTS["ae"].config_cls(hidden_sizes=(8,), code_size=2, epochs=1), data)
    old_umask = os.umask(0o022)
    try:
        checkpoints._UMASK = 0o022  # the module reads it once at import
        path = checkpoints.save_trainer_to(trainer, tmp_path / "m.pt")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # was 0o600 (mkstemp's)
        os.chmod(path, 0o640)
        checkpoints.update_metadata(path, note="kept")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)
        checkpoints._UMASK = old_umask


def test_metadata_holding_a_view_of_a_big_tensor_does_not_carry_the_big_tensor_into_the_file(saved, tmp_path):
    path = tmp_path / "copy.pt"
    path.write_bytes(saved.read_bytes())
    before = path.stat().st_size
    big = torch.zeros(4_000_000)  # 16 MB
    checkpoints.update_metadata(path, cached={"first": big[:3]})
    assert path.stat().st_size < before + 100_000


def test_a_failed_save_writes_the_run_to_a_named_rescue_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "vaelab", "train", "ae", "--dataset", "digits", "--epochs", "1", "-q",
                          "--set", "hidden_sizes=8", "--out", str(blocker / "x.pt")],
                         capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and "cannot write" in run.stderr
    (rescued,) = tmp_path.glob("vaelab-rescue-ae-*.pt")
    assert f"saved to {rescued} instead" in run.stderr
    assert load_checkpoint(rescued).meta["epochs"] == 1


def _idx(path: Path, dims: tuple[int, ...], body: bytes = b"") -> None:
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body)


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "-1"], "argument --seed: must be a whole number >= 0 (got '-1')"),
    (["--device", "bogus"], "argument --device: must be cpu, cuda, cuda:N or mps (got 'bogus')"),
    (["--device", "cuda:7"], "argument --device: 'cuda:7': this machine has"),
])
def test_cli_bad_seed_and_device_exit_2_with_one_line(args, message):
    run = subprocess.run([sys.executable, "-m", "vaelab", "train", "ae", "--dataset", "digits", *args],
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr


def test_idx_folders_with_no_images_or_too_many_dimensions_are_data_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _idx(empty / "train-images-idx3-ubyte", (0, 28, 28))
    _idx(empty / "train-labels-idx1-ubyte", (0,))
    with pytest.raises(DataError, match="holds no images"):
        load_data(f"idx:{empty}")
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 255]) + b"\x00\x00\x00\x01" * 255 + b"\x01")
    _idx(deep / "train-labels-idx1-ubyte", (1,), b"\x01")
    with pytest.raises(DataError, match="declares 255 dimensions"):
        load_data(f"idx:{deep}")


def test_an_unreadable_idx_folder_is_a_data_error(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(DataError, match="cannot read the folder \\(Permission denied\\)"):
        load_data(f"idx:{folder}")


def test_literal_markdown_shows_every_character_as_typed():
    """CommonMark turns a backslash before ASCII punctuation into that character: undoing it gives the text back."""
    import re

    from vaelab.ui.checkpoint_panel import literal

    text = "checkpoint name 'a\\b' must not contain '/' or '\\' (my_ckpt costs $5, *really*) [x](y) `z` #1"
    shown = literal(text)
    assert re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", shown) == text
    assert re.search(r"(?<!\\)[*_$`\[]", shown) is None  # nothing left that Markdown or LaTeX would act on


def test_train_list_and_eval_print_the_same_test_figure_for_one_checkpoint(tmp_path):
    """A VAE's test terms are stochastic (latent draws): each figure comes from the same fixed draw, one rounding."""
    import re

    env = {**os.environ, "PYTHONPATH": str(REPO), "VAELAB_CHECKPOINT_DIR": str(tmp_path)}

    def cli(*args: str) -> str:
        run = subprocess.run([sys.executable, "-m", "vaelab", *args], capture_output=True, text=True, cwd=REPO,
                             timeout=300, env=env)
        assert run.returncode == 0, run.stderr
        return run.stdout + run.stderr

    out = cli("train", "vae", "--dataset", "digits", "--epochs", "2", "--set", "hidden_sizes=16", "--name", "v")
    last_epoch = re.findall(r"epoch 2 test: .*total=([\d.]+)", out)[-1]
    final = re.search(r"^test: .*total=([\d.]+)", out, re.M)[1]
    listed = re.search(r"^vae\s+v\s+digits\S*\s+2\s+([\d.]+)", cli("list"), re.M)[1]
    evaluated = re.search(r"^\s+total\s+([\d.]+)$", cli("eval", str(tmp_path / "vae" / "v.pt"), "-q", "--n", "50",
                                                      "--k", "5"), re.M)[1]
    assert last_epoch == final == listed == evaluated, (last_epoch, final, listed, evaluated)


def test_the_companion_figure_is_the_negative_elbo_whatever_beta_and_says_when_it_is_not_nats():
    from vaelab import companions
    from vaelab.variants import vae

    history = [{"kind": "test", "step": 10, "reconstruction": 200.0, "kl": 10.0, "total": 240.0},  # beta = 4
               {"kind": "train", "step": 11, "reconstruction": 1.0, "kl": 1.0, "total": 5.0}]
    assert companions.test_negative_elbo(history) == 210.0  # not total = reconstruction + 4 kl
    assert companions.test_negative_elbo([]) is None
    bernoulli = companions.negative_elbo_caption(150.0, 210.0, vae.Config(beta=4.0))
    assert "Gaussian VAE 210.0 nats" in bernoulli
    gaussian = companions.negative_elbo_caption(150.0, -800.0, vae.Config(decoder="gaussian"))
    assert "not comparable with nats" in gaussian and "-800.0 nats" not in gaussian
