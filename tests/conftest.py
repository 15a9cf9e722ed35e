"""Test-wide settings: offline dataset for the app, checkpoints in a temporary folder, paths to shared data."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST_TEST = REPO.parent / "shared" / "datasets" / "mnist-test"

os.environ.setdefault("VAELAB_DATASET", "mnist-5k")  # the app's default dataset: no network in tests

# The tests' models are tiny: one thread is faster than two fighting over a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _checkpoint_dir(tmp_path_factory, monkeypatch):
    """Every test writes checkpoints into its own temporary folder, never into the repo."""
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(tmp_path_factory.mktemp("checkpoints")))


@pytest.fixture
def mnist_test_dir() -> Path:
    if not (SHARED_MNIST_TEST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST test set not found at {SHARED_MNIST_TEST}")
    return SHARED_MNIST_TEST
