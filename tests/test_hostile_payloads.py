"""Payloads that claim more memory than they hold (issue: the memory budget covers everything loaded): each crafted
IDX folder or checkpoint is refused with one line before anything large is allocated, in the library, the command
line and the app's upload."""

import contextlib
import io
import os
import subprocess
import sys
import tracemalloc
import types
from pathlib import Path

import pytest
import torch

from tests.hostile_files import (
    deep_config,
    edited_checkpoint,
    huge_mixture,
    idx_bomb,
    idx_device_links,
    idx_header,
    idx_overflow,
    long_history,
    nested_list,
    small_checkpoint,
)
from vaelab import cli
from vaelab.checkpoints import CheckpointError, load_checkpoint, read_metadata, save_trainer_to
from vaelab.data import DataError, load_data
from vaelab.payload_limits import MAX_DEPTH, MAX_HISTORY_ROWS, LoadLimitError, scan_pickle, thinned_history
from vaelab.training import Trainer
from vaelab.ui.checkpoint_panel import store_upload
from vaelab.variants import get_variant

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("base") / "ae.pt")


@pytest.fixture(scope="module")
def base_gmm(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("base") / "gmm.pt", "ae-gmm")


def _cli(*args: str, budget_mb: int | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if budget_mb is not None:
        env["VAELAB_MEMORY_BUDGET_MB"] = str(budget_mb)
    return subprocess.run([sys.executable, "-m", "vaelab", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=env)


def _one_line(run: subprocess.CompletedProcess, status: int, *words: str) -> None:
    assert run.returncode == status, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert "Traceback" not in run.stderr and len(lines) == 1, run.stderr[-2000:]
    assert all(word in lines[0] for word in words), lines[0]


# -- datasets -----------------------------------------------------------------------------------------------------
def test_a_gzip_bomb_idx_folder_is_refused_by_the_budget_before_it_is_unpacked(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_MEMORY_BUDGET_MB", "64")
    folder = idx_bomb(tmp_path / "bomb", images=100_000)  # 78 million pixels: 1 byte read + 4 as float32 each
    assert sum(f.stat().st_size for f in folder.iterdir()) < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"100,000 images of 28x28 would take 375 MB in memory, over the memory "
                                            r"budget of 64 MB \(set by VAELAB_MEMORY_BUDGET_MB\)"):
            load_data(f"idx:{folder}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak / 2**20:.0f} MB allocated while refusing"


def test_the_real_sized_bomb_of_the_report_ends_with_one_line_on_the_command_line(tmp_path):
    folder = idx_bomb(tmp_path / "bomb")  # 2,600,000 images, as reported
    run = _cli("train", "ae", "--dataset", f"idx:{folder}", "--epochs", "1", "-q")
    _one_line(run, 1, "2,600,000 images of 28x28", "over the memory budget of 2,048 MB")


def test_an_idx_header_whose_sizes_overflow_is_refused_by_the_budget(tmp_path):
    with pytest.raises(DataError, match="2,147,483,648 images of 2147483648x4 would take .* over the memory budget"):
        load_data(f"idx:{idx_overflow(tmp_path / 'overflow')}")


def test_idx_files_that_are_links_to_a_device_are_refused_without_reading(tmp_path):
    folder = idx_device_links(tmp_path / "zero")
    run = _cli("train", "ae", "--dataset", f"idx:{folder}", "--epochs", "1", "-q", timeout=60)
    _one_line(run, 1, "train-images-idx3-ubyte is not a regular file")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    folder = tmp_path / "fifo"
    folder.mkdir()
    os.mkfifo(folder / "train-images-idx3-ubyte")
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_header((1,)) + b"\x01")
    with pytest.raises(DataError, match="is not a regular file"):
        load_data(f"idx:{folder}")


@pytest.mark.parametrize(("tail", "held"), [(b"", "holds 0"), (b"\x00" * 50, "holds more than 32")])
def test_a_gzipped_body_shorter_or_longer_than_its_header_is_a_data_error(tmp_path, tail, held):
    import gzip

    folder = tmp_path / "gz"
    folder.mkdir()
    body = b"" if not tail else bytes(32) + tail
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_header((2, 4, 4)) + body))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_header((2,)) + b"\x01\x02")
    with pytest.raises(DataError, match=f"promises 32 bytes for shape \\(2, 4, 4\\), file {held}"):
        load_data(f"idx:{folder}")


# -- checkpoints ----------------------------------------------------------------------------------------------------
def test_a_config_nested_100000_levels_is_refused_in_eval_with_one_line(base, tmp_path):
    path = deep_config(base, tmp_path / "deep.pt")
    with pytest.raises(CheckpointError, match="nests deeper than a load allows"):
        load_checkpoint(path)
    _one_line(_cli("eval", str(path), "-q"), 1, "deep.pt is refused", "nests deeper")


def test_nesting_that_the_stack_allows_is_still_bounded_before_anything_recurses(base, tmp_path):
    path = edited_checkpoint(base, tmp_path / "nested.pt", lambda p: p.update(notes=nested_list(MAX_DEPTH + 5)))
    with pytest.raises(CheckpointError, match=f"nests more than {MAX_DEPTH} levels deep"):
        read_metadata(path)


def test_a_mixture_of_a_billion_components_is_refused_before_it_is_allocated(base_gmm, tmp_path):
    path = huge_mixture(base_gmm, tmp_path / "huge.pt")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(CheckpointError, match=r"mixture_.* has shape \[1000000000"):
        load_checkpoint(path)
    _one_line(_cli("eval", str(path), "-q"), 1, "huge.pt is refused", "memory budget")


def test_a_mixture_beyond_the_configs_range_or_of_the_wrong_shape_is_refused(base_gmm, tmp_path):
    def components(k: int):
        def edit(payload):
            state = payload["model_state"]
            state["mixture_weights"] = torch.full((k,), 1.0 / k)
            state["mixture_means"] = torch.zeros(k, 2)
            state["mixture_covariances"] = torch.eye(2).repeat(k, 1, 1)
        return edit

    with pytest.raises(CheckpointError, match=r"weights of shape \[201\]; it may have 1 to 200 components"):
        load_checkpoint(edited_checkpoint(base_gmm, tmp_path / "k201.pt", components(201)))
    wrong = edited_checkpoint(base_gmm, tmp_path / "wrong.pt",
                              lambda p: p["model_state"].update(mixture_means=torch.zeros(3, 5)))
    with pytest.raises(CheckpointError, match=r"means \[3, 5\] .* do not fit 3 components in a 2-D code"):
        load_checkpoint(wrong)
    assert load_checkpoint(edited_checkpoint(base_gmm, tmp_path / "k7.pt", components(7))).model.mixture_components == 7


def test_a_six_million_row_history_is_refused_on_upload_without_building_it(base, tmp_path):
    path = long_history(base, tmp_path / "history.pt")
    data = path.read_bytes()
    assert len(data) < 50 * 2**20  # within the upload limit
    tracemalloc.start()
    try:
        stored, message = store_upload("ae", "history.pt", data)
        peak = tracemalloc.get_traced_memory()[1] - len(data)
    finally:
        tracemalloc.stop()
    assert stored is None and message.startswith("Not uploaded") and "its structure is" in message
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB allocated while refusing"


def test_a_history_of_a_million_rows_is_refused_by_the_scan_and_one_over_the_row_limit_after_the_load(base,
                                                                                                     tmp_path):
    with pytest.raises(CheckpointError, match="more than 1,000,000 objects"):
        load_checkpoint(long_history(base, tmp_path / "million.pt", rows=1_200_000))
    row = torch.load(base, weights_only=True)["history"][0]
    over = edited_checkpoint(base, tmp_path / "over.pt",
                             lambda p: p.update(history=[dict(row, step=i) for i in range(MAX_HISTORY_ROWS + 1)]))
    with pytest.raises(CheckpointError, match=f"history has {MAX_HISTORY_ROWS + 1:,} rows; at most"):
        load_checkpoint(over)


def test_a_long_run_is_saved_thinned_so_that_it_loads_again(tmp_path):
    config = get_variant("ae").config_cls(hidden_sizes=(8,), code_size=2, epochs=1)
    trainer = Trainer("ae", config, load_data("digits"), seed=0)
    trainer.run()
    test_rows = [row for row in trainer.history if row["kind"] == "test"]
    template = next(row for row in trainer.history if row["kind"] == "train")
    trainer.history = [dict(template, step=i) for i in range(MAX_HISTORY_ROWS + 5000)] + test_rows
    loaded = load_checkpoint(save_trainer_to(trainer, tmp_path / "long.pt"))
    assert len(loaded.history) == MAX_HISTORY_ROWS
    train_steps = [row["step"] for row in loaded.history if row["kind"] == "train"]
    assert train_steps[0] == 0 and train_steps[-1] == MAX_HISTORY_ROWS + 4999 and train_steps == sorted(train_steps)
    assert [row for row in loaded.history if row["kind"] == "test"] == test_rows


def test_thinning_keeps_every_test_row_and_the_order():
    rows = [{"kind": "test" if i % 100 == 99 else "train", "step": i} for i in range(1000)]
    thin = thinned_history(rows, 100)
    assert len(thin) == 100 and [r["step"] for r in thin] == sorted(r["step"] for r in thin)
    assert sum(r["kind"] == "test" for r in thin) == 10 and thin[0]["step"] == 0 and thin[-1]["step"] == 999


def test_the_pickle_scan_counts_the_stack_as_the_unpickler_would():
    import pickle

    flat = pickle.dumps([list(range(3000))], protocol=2)  # batches of 1,000 items: the stack stays shallow
    assert scan_pickle(flat).max_stack <= 1_010
    deep = pickle.dumps(nested_list(400), protocol=2)
    assert scan_pickle(deep).max_stack >= 400
    with pytest.raises(LoadLimitError, match="nests deeper"):
        scan_pickle(deep, max_stack=300)
    with pytest.raises(LoadLimitError, match="malformed"):
        scan_pickle(flat[:-3])


# -- the command line ---------------------------------------------------------------------------------------------
def _main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as done:
            status = done.code
    return status, err.getvalue()


def test_ray_missing_or_unreachable_is_one_line_naming_the_flag(monkeypatch, tmp_path):
    argv = ["pretrain", "--only", "ae", "--epochs", "1", "--dataset", "digits", "--no-metrics", "-q", "--dir",
            str(tmp_path), "--ray", "auto"]
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    status, err = _main(argv)
    assert status == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith("--ray: needs the optional Ray package: pip install 'ray[default]'")

    def refuse(**kwargs):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False, init=refuse))
    status, err = _main(argv)
    assert status == 2 and "cannot reach a Ray cluster at 'auto' (Could not find any running Ray instance.)" in err


def test_an_unforeseen_failure_is_one_line_and_a_report_file(monkeypatch):
    def crash(args):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cli, "cmd_list", crash)
    status, err = _main(["list"])
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("error: unexpected RecursionError: maximum recursion depth exceeded (full report: ")
    report = Path(lines[0].rsplit("full report: ", 1)[1].rstrip(")"))
    try:
        text = report.read_text()
        assert text.startswith("python -m vaelab list\n") and "Traceback" in text and "in crash" in text
    finally:
        report.unlink()


# -- the app ---------------------------------------------------------------------------------------------------------
def test_a_load_that_fails_in_a_way_no_check_foresaw_is_one_message_and_the_run_stays(tmp_path, monkeypatch):
    from tests.helpers import no_exception, open_page, session_of
    from vaelab.checkpoints import save_trainer
    from vaelab.ui import checkpoint_panel

    config = get_variant("ae").config_cls(hidden_sizes=(8,), code_size=2, epochs=1)
    tiny = Trainer("ae", config, load_data("mnist-5k"), seed=0)
    tiny.advance(max_steps=1)
    save_trainer(tiny, "tiny")
    at = open_page("pages/ae.py")
    at.button(key="panel.ae.start").click().run()
    at.button(key="panel.ae.pause").click().run()
    session = session_of(at)
    step, trainer = session.step, session.trainer
    assert step > 0

    def out_of_memory(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(checkpoint_panel, "load_checkpoint", out_of_memory)
    at.button(key="panel.ae.load").click().run()
    no_exception(at)
    shown = [e.value.replace("\\", "") for e in at.error]  # the message is escaped as literal markdown
    assert "Not loaded: `tiny.pt`: unexpected MemoryError (simulated)" in shown, shown
    assert session_of(at) is session and session.trainer is trainer and session.step == step
