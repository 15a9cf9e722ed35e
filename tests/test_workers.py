"""Training runs in worker processes: results equal an in-process run, a dying worker is reported with its cause
while the other runs finish, the memory limit ends an oversized run, sweep and pretrain on the workers, and the
optional Ray backend against a local Ray started by the test."""

import csv
import os
import signal
import sys
import threading

import pytest
import torch

from vaelab import workers
from vaelab.checkpoints import load_checkpoint
from vaelab.cli import main
from vaelab.variants import VARIANTS
from vaelab.workers import RunSpec, run_local, run_one


def _spec(tmp_path, name="a", **config):
    values = VARIANTS["ae"].config_cls(**{"hidden_sizes": (16,), "code_size": 4, "epochs": 1, **config}).to_dict()
    return RunSpec("ae", values, "digits", seed=0, name=name, directory=str(tmp_path))


def test_local_workers_return_what_an_in_process_run_gives_in_order(tmp_path):
    specs = [_spec(tmp_path, "a"), _spec(tmp_path, "b", code_size=2)]
    seen = []
    results = run_local(specs, workers=2, on_progress=lambda i, step, total: seen.append((i, step, total)))
    assert [r.spec.name for r in results] == ["a", "b"] and all(r.ok for r in results)
    alone = run_one(RunSpec(**{**specs[1].__dict__, "name": None}))
    assert results[1].test["total"] == pytest.approx(alone.test["total"], rel=1e-4)
    assert load_checkpoint(results[0].path).meta["epochs"] == 1
    assert {i for i, *_ in seen} == {0, 1} and all(step == total for i, step, total in seen[-2:])


def test_a_worker_killed_mid_run_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    doomed = RunSpec("ae", VARIANTS["ae"].config_cls(hidden_sizes=(16,), code_size=4, epochs=500).to_dict(),
                     "digits", label="doomed")
    specs = [doomed, _spec(tmp_path, "fine")]
    killed = []

    def kill_the_long_one(i, step, total):
        if i == 0 and step > 0 and not killed:
            pid = _worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    results = run_local(specs, workers=2, on_progress=kill_the_long_one)
    assert killed and "was killed by SIGKILL" in results[0].error
    assert results[1].ok and load_checkpoint(results[1].path).meta["epochs"] == 1


def _worker_pids() -> list[int]:
    """Our live worker processes, oldest first (multiprocessing's children of this process)."""
    import multiprocessing

    return [p.pid for p in sorted(multiprocessing.active_children(), key=lambda p: p.pid)
            if p.name.startswith(("Process", "ForkServerProcess", "SpawnProcess"))]


def test_the_memory_limit_ends_an_oversized_run_not_the_caller(tmp_path):
    big = RunSpec("ae", VARIANTS["ae"].config_cls(hidden_sizes=(4096, 4096), epochs=1).to_dict(), "digits")
    results = run_local([big, _spec(tmp_path, "small")], workers=2, memory_limit_mb=400)  # the big one: 640 MB
    assert not results[0].ok and ("memory" in results[0].error.lower() or "allocat" in results[0].error.lower())
    assert results[1].ok


def test_death_causes_in_words():
    assert workers.death_cause(-9).startswith("was killed by SIGKILL")
    assert workers.death_cause(-15) == "was killed by SIGTERM"
    assert workers.death_cause(3) == "exited with status 3 before sending its result"


def test_sweep_runs_the_grid_on_the_workers_and_writes_its_table(tmp_path, capsys):
    status = main(["sweep", "vae", "--dataset", "digits", "--set", "beta=0.5,4", "--set", "hidden_sizes=16;8",
                   "--seeds", "1", "--epochs", "1", "--dir", str(tmp_path), "--workers", "2", "-q"])
    out = capsys.readouterr().out
    assert status == 0
    assert sum(line.startswith("beta=") for line in out.splitlines()) == 4
    with (tmp_path / "vae" / "sweep-beta-hidden_sizes.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["beta"], r["hidden_sizes"]) for r in rows) == [
        ("0.5", "16"), ("0.5", "8"), ("4.0", "16"), ("4.0", "8")]
    assert all(float(r["total"]) > 0 and r["error"] == "" for r in rows)
    assert all(os.path.exists(r["checkpoint"]) for r in rows)


def test_sweep_checks_every_value_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["sweep", "vae", "--dataset", "digits", "--set", "beta=1,-2", "--dir", str(tmp_path)])
    assert info.value.code == 2 and "beta: must be in [0, 1000]" in capsys.readouterr().err
    assert not (tmp_path / "vae").exists()


@pytest.mark.ray
def test_the_ray_backend_runs_the_same_specs_on_a_local_ray(tmp_path):
    ray = pytest.importorskip("ray")
    try:
        results = workers.run_ray([_spec(tmp_path, "r1"), _spec(tmp_path, "r2", code_size=2)], address="local")
    finally:
        ray.shutdown()
    assert all(r.ok for r in results) and [r.spec.name for r in results] == ["r1", "r2"]
    alone = run_one(RunSpec(**{**results[1].spec.__dict__, "name": None}))
    assert results[1].test["total"] == pytest.approx(alone.test["total"], rel=1e-4)
    assert torch.load(results[0].path, weights_only=True)["epochs"] == 1


def test_workers_take_the_callers_settings_of_now_not_the_forkservers(tmp_path, monkeypatch):
    """The forkserver keeps the environment it started with: a later VAELAB_CHECKPOINT_DIR must still apply."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(folder))
        spec = RunSpec("ae", VARIANTS["ae"].config_cls(hidden_sizes=(8,), code_size=2, epochs=1).to_dict(),
                       "digits", name="here")
        (result,) = run_local([spec], workers=1)
        assert result.ok and result.path == str(folder / "ae" / "here.pt")


def test_main_stays_hidden_until_the_last_of_two_overlapping_worker_starts_is_done():
    """Two threads start workers at once: the first one done must not bring __main__'s file back while the second
    starts its worker (that worker re-ran app.py and exited with status 1)."""
    main = sys.modules["__main__"]
    had_file = hasattr(main, "__file__")
    original = getattr(main, "__file__", None)
    main.__file__ = "/somewhere/app.py"
    inside, release = threading.Event(), threading.Event()
    seen = []

    def second_start() -> None:
        with workers._main_module_hidden():
            inside.set()
            release.wait(10)
            seen.append(main.__file__)  # what a worker started now would re-import

    try:
        with workers._main_module_hidden():
            thread = threading.Thread(target=second_start)
            thread.start()
            inside.wait(10)
        release.set()  # the first start is done; the second starts its worker now
        thread.join(10)
        assert seen == [None]
        assert main.__file__ == "/somewhere/app.py"  # back once both are done
    finally:
        if had_file:
            main.__file__ = original
        else:
            del main.__file__
