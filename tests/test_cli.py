"""The command line end to end on mnist-5k: variants, train -> checkpoint -> eval / list, and usage errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from vaelab.cli import main
from vaelab.variants import VARIANTS


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "vaelab", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_variants_lists_the_nine_keys():
    out = run_cli("variants")
    assert out.returncode == 0, out.stderr
    keys = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    assert keys == list(VARIANTS)
    assert len(keys) == 9


@pytest.mark.parametrize("key", list(VARIANTS))
def test_train_then_eval_every_variant(key, tmp_path, capsys):
    ckpt = tmp_path / f"{key}.pt"
    code = main(["train", key, "--dataset", "mnist-5k", "--epochs", "1", "--out", str(ckpt), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert ckpt.exists()
    assert "test: " in out and "total=" in out

    assert main(["eval", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "total" in out and key in out


def test_train_by_name_then_list(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(tmp_path))
    args = ["train", "sparse", "--dataset", "mnist-5k", "--epochs", "1", "--set", "rho=0.1",
            "--name", "tiny", "--quiet"]
    assert main(args) == 0
    assert (tmp_path / "sparse" / "tiny.pt").exists()
    capsys.readouterr()
    # the same name again without --overwrite is refused, the file is kept
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "sparse" in listing and "tiny" in listing and "mnist-5k" in listing


@pytest.mark.parametrize(
    "args, field",
    [
        (["train", "vae", "--dataset", "mnist-5k", "--set", "lr=-1"], "lr"),
        (["train", "sparse", "--dataset", "mnist-5k", "--set", "rho=1.5"], "rho"),
        (["train", "ksparse", "--dataset", "mnist-5k", "--set", "k=500"], "k"),
        (["train", "vae", "--dataset", "mnist-5k", "--epochs", "0"], "epochs"),
        (["train", "vae", "--dataset", "mnist-5k", "--preset", "nope"], "preset"),
        (["train", "nope", "--dataset", "mnist-5k"], "variant"),
        (["train", "vae", "--dataset", "imagenet"], "imagenet"),
        (["train", "vae", "--dataset", "mnist-5k", "--set", "latent_dim"], "--set"),
        (["train", "vae", "--dataset", "mnist-5k", "--set", "colour=red"], "colour"),
    ],
)
def test_bad_values_exit_2_naming_the_field(args, field):
    out = run_cli(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert field in out.stderr
    assert "Traceback" not in out.stderr


def test_eval_of_a_broken_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(os.urandom(256))
    out = run_cli("eval", str(bad))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "broken.pt" in out.stderr or "checkpoint" in out.stderr


def test_train_with_the_real_mnist_test_set(tmp_path, mnist_test_dir: Path, capsys):
    ckpt = tmp_path / "ae.pt"
    code = main(["train", "ae", "--dataset", "mnist-5k", "--test-dataset", f"idx:{mnist_test_dir}",
                 "--epochs", "1", "--out", str(ckpt), "--quiet"])
    assert code == 0
    capsys.readouterr()
    assert main(["eval", str(ckpt)]) == 0
    assert "10000 images" in capsys.readouterr().out


# -- the default dataset: the app's, with the app's fallback ---------------------------------------------------
FALLBACK_LINE = "No network: using the embedded 5,000 MNIST digits (mnist-5k) instead of mnist"


@pytest.fixture
def offline_mnist(monkeypatch, tmp_path):
    """No VAELAB_DATASET (so the default is mnist), an empty data folder, a download that fails as offline."""
    import urllib.error

    import torchvision.datasets

    from vaelab import data

    def fail(self):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail)
    monkeypatch.delenv("VAELAB_DATASET", raising=False)
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "data"))
    data._load_torchvision_split.cache_clear()
    yield
    data._load_torchvision_split.cache_clear()


def test_train_without_dataset_falls_back_offline_and_says_so_in_one_line(offline_mnist, tmp_path, capsys):
    ckpt = tmp_path / "ae.pt"
    code = main(["train", "ae", "--epochs", "1", "--set", "hidden_sizes=16", "--out", str(ckpt), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and ckpt.exists()
    assert [line for line in err.splitlines() if "No network" in line] == [f"{FALLBACK_LINE}; --dataset picks a "
                                                                           "source"]
    assert "training ae on mnist-5k (test: mnist-5k)" in err
    from vaelab.checkpoints import read_metadata

    assert read_metadata(ckpt)["dataset"]["train"] == "mnist-5k"


def test_train_without_dataset_names_the_checkpoint_after_the_source_in_use(offline_mnist, capsys):
    assert main(["train", "ae", "--epochs", "1", "--set", "hidden_sizes=16", "--quiet"]) == 0
    from vaelab.checkpoints import checkpoint_dir

    assert (checkpoint_dir() / "ae" / "ae-mnist-5k-s0.pt").exists()


def test_an_explicit_dataset_that_cannot_load_fails_instead_of_falling_back(offline_mnist, tmp_path, capsys):
    code = main(["train", "ae", "--dataset", "mnist", "--epochs", "1", "--out", str(tmp_path / "x.pt"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "could not download data source 'mnist'" in err and "No network" not in err
    assert not (tmp_path / "x.pt").exists()


def test_train_without_dataset_uses_the_apps_default_from_the_environment(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VAELAB_DATASET", "digits")
    code = main(["train", "ae", "--epochs", "1", "--set", "hidden_sizes=16", "--out", str(tmp_path / "d.pt"), "-q"])
    err = capsys.readouterr().err
    assert code == 0 and "training ae on digits (test: digits)" in err and "No network" not in err


def test_pretrain_without_dataset_sends_the_fallback_source_to_its_workers(offline_mnist, tmp_path, capsys):
    code = main(["pretrain", "--only", "ae", "--epochs", "1", "--no-metrics", "--dir", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert FALLBACK_LINE in err and "preparing the classroom set on mnist-5k" in err
    from vaelab.checkpoints import read_metadata

    assert read_metadata(tmp_path / "ae" / "classroom.pt")["dataset"]["train"] == "mnist-5k"
