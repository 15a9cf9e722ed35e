"""The memory budget: the estimate against the real model, refusals before allocation (trainer, CLI, checkpoints,
uploads), measured as the resident memory of a fresh process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from vaelab import budget
from vaelab.checkpoints import CheckpointError, import_checkpoint, load_checkpoint, save_trainer_to
from vaelab.cli import main
from vaelab.config import ConfigError
from vaelab.data import load_data
from vaelab.training import Trainer
from vaelab.variants import VARIANTS, build_model

REPO = Path(__file__).resolve().parents[1]
HUGE_LAYERS = (4096,) * 12  # about 5.9 GB to train: what a student typed into the form


@pytest.mark.parametrize("key", list(VARIANTS))
def test_the_estimate_counts_the_real_models_parameters_and_activations(key):
    config = VARIANTS[key].config_cls()
    model = build_model(key, config, 784, 10)  # a real one, on the CPU
    count = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    widths = sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    found = budget.estimate(key, config, 784, 10)
    assert found.parameters == count
    assert found.parameter_bytes == 4 * 4 * count  # parameters, gradients, two Adam moments, float32
    samples = getattr(config, "n_samples", 1)
    assert found.activation_bytes == config.batch_size * (widths + 784) * samples * 3 * 4
    assert found.total_bytes < 64 * 2**20  # every default fits a laptop many times over


def test_over_the_budget_is_a_config_error_naming_the_fields(monkeypatch):
    config = VARIANTS["ae"].config_cls(hidden_sizes=HUGE_LAYERS)
    with pytest.raises(ConfigError, match=r"^hidden_sizes: training this model needs about 5,8\d\d MB") as info:
        budget.check_budget("ae", config, 784)
    assert "memory budget of 2,048 MB" in str(info.value) and budget.ENV_VAR in str(info.value)
    assert "hidden_sizes, code_size, batch_size" in str(info.value)
    wide_batch = VARIANTS["ae"].config_cls(batch_size=10000, hidden_sizes=(4096,))
    with pytest.raises(ConfigError, match="^batch_size: "):  # activations dominate: the batch is named first
        budget.check_budget("ae", wide_batch, 784, budget=100)
    monkeypatch.setenv(budget.ENV_VAR, "8000")
    assert budget.check_budget("ae", config, 784).total_bytes > 2048 * 2**20  # a bigger machine may say so
    monkeypatch.setenv(budget.ENV_VAR, "lots")
    with pytest.raises(ConfigError, match=f"^{budget.ENV_VAR}: must be a number of megabytes > 0"):
        budget.check_budget("ae", VARIANTS["ae"].config_cls(), 784)


def test_the_trainer_refuses_before_building_the_model():
    data = load_data("digits")
    with pytest.raises(ConfigError, match="^hidden_sizes: training this model needs"):
        Trainer("ae", VARIANTS["ae"].config_cls(hidden_sizes=HUGE_LAYERS), data)


def test_cli_train_over_the_budget_exits_2_naming_the_field(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "ae", "--dataset", "digits", "--set", "hidden_sizes=" + ",".join(map(str, HUGE_LAYERS)),
              "--out", "/nonexistent/never-written.pt"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "hidden_sizes: training this model needs" in err and "Traceback" not in err


def _inflated_checkpoint(tmp_path: Path) -> Path:
    """A valid small ae checkpoint whose stored config claims 250,000-pixel images and a 2,048-unit layer."""
    data = load_data("digits")
    trainer = Trainer("ae", VARIANTS["ae"].config_cls(hidden_sizes=(16,), code_size=4, epochs=1), data, seed=0)
    path = save_trainer_to(trainer, tmp_path / "small.pt")
    payload = torch.load(path, weights_only=True)
    payload["input_dim"] = 250_000
    payload["config"]["hidden_sizes"] = [2048]
    edited = tmp_path / "inflated.pt"
    torch.save(payload, edited)
    return edited


def _peak_rss_mb_of(code: str) -> dict:
    """Run ``code`` in a fresh Python; it prints a JSON dict; add the peak resident memory growth around it (MB)."""
    script = textwrap.dedent("""
        import json, resource, sys
        import vaelab.checkpoints, vaelab.training  # imports first: they are not what is measured
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = {}
        exec(sys.argv[1], {"result": result})
        result["growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps(result))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script, textwrap.dedent(code)], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
def test_an_inflated_upload_is_refused_with_the_process_growing_under_100_mb(tmp_path):
    edited = _inflated_checkpoint(tmp_path)
    code = f"""
        from vaelab.checkpoints import CheckpointError, import_checkpoint, load_checkpoint
        data = open({str(edited)!r}, "rb").read()
        for attempt in (lambda: import_checkpoint(data, "inflated.pt", "ae", directory={str(tmp_path / 'store')!r}),
                        lambda: load_checkpoint({str(edited)!r})):
            try:
                attempt()
                result.setdefault("refused", []).append(None)
            except CheckpointError as e:
                result.setdefault("refused", []).append(str(e))
    """
    result = _peak_rss_mb_of(code)
    assert all(r is not None and "memory budget" in r for r in result["refused"]), result
    assert result["growth_mb"] < 100, result
    assert not (tmp_path / "store" / "ae" / "inflated.pt").exists()


def test_inflated_checkpoint_messages_in_process(tmp_path):
    edited = _inflated_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="memory budget"):
        load_checkpoint(edited)
    with pytest.raises(CheckpointError, match="upload 'x.pt': its config is rejected: hidden_sizes"):
        import_checkpoint(edited.read_bytes(), "x.pt", "ae", directory=tmp_path / "store")
