"""A fast command line: ``variants``, ``list`` and ``--help`` import no torch, and print what they printed before.

Each command runs as users run it (``python -X importtime -m vaelab ...`` in a fresh interpreter); the import log
on stderr names every module imported. ``list`` reads torch-free from its cache (vaelab.checkpoint_listing) when
no checkpoint changed; a new, changed or removed file is checked again with torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from vaelab.checkpoint_listing import CACHE_NAME
from vaelab.checkpoints import list_checkpoints, update_metadata
from vaelab.cli import main
from vaelab.variants import VARIANTS


def run_cli(*args: str, env_extra: dict | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The command's result and the top-level packages it imported."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "vaelab", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in run.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "vaelab" in imported, run.stderr[-2000:]  # the log was read
    return run, imported


@pytest.mark.parametrize("args", [["variants"], ["--help"], ["train", "--help"], ["list"]], ids=" ".join)
def test_the_quick_commands_import_no_torch(args, tmp_path):
    run, imported = run_cli(*args, env_extra={"VAELAB_CHECKPOINT_DIR": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "torch" not in imported and "numpy" not in imported


def test_variants_prints_each_key_with_its_title():
    run, _ = run_cli("variants")
    rows = [line.split(None, 1) for line in run.stdout.splitlines()]
    assert rows == [[key, info.title] for key, info in VARIANTS.items()]


@pytest.fixture
def saved_dir(tmp_path, monkeypatch, capsys):
    """Two tiny checkpoints, a file that is not a checkpoint and a symbolic link, in a checkpoint folder."""
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(tmp_path))
    for variant, name in (("ae", "tiny"), ("sparse", "other")):
        assert main(["train", variant, "--dataset", "digits", "--epochs", "1", "--set", "hidden_sizes=16",
                     "--name", name, "-q"]) == 0
    (tmp_path / "ae" / "broken.pt").write_bytes(os.urandom(300))
    (tmp_path / "ae" / "linked.pt").symlink_to(tmp_path / "ae" / "tiny.pt")
    capsys.readouterr()
    return tmp_path


def _rows(stdout: str) -> dict[str, str]:
    return {line.split()[1]: line for line in stdout.splitlines()[1:]}


def test_list_from_the_cache_prints_what_the_full_check_printed_without_torch(saved_dir):
    first, imported_first = run_cli("list")
    assert first.returncode == 0 and "torch" in imported_first  # nothing cached yet: every file is checked
    assert (saved_dir / CACHE_NAME).is_file()
    second, imported_second = run_cli("list")
    assert second.returncode == 0 and "torch" not in imported_second
    assert second.stdout == first.stdout

    expected = {i.name: i for i in list_checkpoints(saved_dir)}  # the judge, called directly
    rows = _rows(second.stdout)
    assert set(rows) == set(expected) == {"tiny", "broken", "other"}  # the link is not listed
    assert "unreadable" in rows["broken"] and expected["broken"].error
    assert f"{expected['tiny'].test_loss:.3f}" in rows["tiny"] and "digits" in rows["tiny"]


def test_a_changed_or_removed_checkpoint_is_checked_again(saved_dir):
    run_cli("list")
    update_metadata(saved_dir / "ae" / "tiny.pt", epochs=7)  # rewritten atomically: a new file
    payload = torch.load(saved_dir / "sparse" / "other.pt", weights_only=True)
    payload["model_state"][next(iter(payload["model_state"]))].fill_(float("nan"))
    torch.save(payload, saved_dir / "sparse" / "other.pt")
    (saved_dir / "ae" / "broken.pt").unlink()

    run, imported = run_cli("list")
    rows = _rows(run.stdout)
    assert "torch" in imported and set(rows) == {"tiny", "other"}
    assert rows["tiny"].split()[3] == "7"
    assert "unreadable" in rows["other"] and "nan" in rows["other"]
    again, imported_again = run_cli("list")
    assert again.stdout == run.stdout and "torch" not in imported_again


def test_a_damaged_cache_is_ignored_and_rewritten(saved_dir):
    reference, _ = run_cli("list")
    (saved_dir / CACHE_NAME).write_text('{"format": 1, "code": "x", "files": {"ae/tiny.pt": 3}')  # cut short
    run, imported = run_cli("list")
    assert run.stdout == reference.stdout and "torch" in imported
    assert "torch" not in run_cli("list")[1]


def test_list_of_a_folder_without_checkpoints_writes_no_cache(tmp_path):
    run, _ = run_cli("list", "--dir", str(tmp_path))
    assert run.stdout.strip() == "no checkpoints found" and not (Path(tmp_path) / CACHE_NAME).exists()
