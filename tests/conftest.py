"""Test-wide settings: offline dataset for the app, checkpoints in a temporary folder, paths to shared data."""

import os
import runpy
from pathlib import Path

import pytest
import torch
from streamlit.runtime.scriptrunner import script_runner

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


@pytest.fixture(autouse=True)
def _every_run_goes_through_app_py(monkeypatch):
    """Run app.py on every AppTest run, as the server does.

    The app keeps its pages in ``pages/``. Streamlit takes such a folder for the old (v1) multipage layout until
    ``st.navigation`` has been called; the server calls it on the first run and then stays in v2 mode, but
    AppTest resets that flag before every run, so each run after the first would execute the page file on its
    own (no app.py, no sidebar). Here the v1 wrapper simply runs the main script, as v2 mode does.
    """
    monkeypatch.setattr(script_runner, "_mpa_v1", lambda main_script_path: runpy.run_path(
        main_script_path, run_name="__main__"))


@pytest.fixture(autouse=True)
def _forget_the_runs_a_test_made():
    """The app keeps runs by token for the server's lifetime (vaelab/ui/run_store.py); the test process is one long
    server to it. Each test's tokens go when it ends, so its models (and any worker) go with them."""
    from vaelab.ui.run_store import RUNS

    before = {token for token, *_ in RUNS.owners()}
    yield
    for token, *_ in RUNS.owners():
        if token not in before:
            RUNS.forget(token)
