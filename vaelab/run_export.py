"""What a run downloads: its config (JSON), its history (CSV) and the ``python -m vaelab train ...`` command that
reproduces it.

    run = RunRecord("vae", config, train="mnist-5k", test=None, seed=3, device="cpu")
    config_json(run)              # {"variant": "vae", "dataset": ..., "seed": 3, "device": "cpu", "config": {...}}
    history_csv(history)          # one line per history row, the union of their columns
    train_command(run)            # python -m vaelab train vae --dataset mnist-5k --seed 3 --device cpu --set beta=4

The command names every config field that differs from the variant's defaults (``--epochs`` for the epochs, a
``--set field=value`` for each other), so ``build_config`` on its parsed flags gives back the same config.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from dataclasses import dataclass
from typing import Any

from vaelab.config import BaseConfig


@dataclass(frozen=True)
class RunRecord:
    """What a run is: variant, config, data sources, seed and device."""

    variant: str
    config: BaseConfig
    train: str
    test: str | None = None  # None: the training source's own test split
    seed: int = 0
    device: str = "cpu"


def config_json(run: RunRecord) -> str:
    """The run as JSON; ``config`` is ``BaseConfig.to_dict()`` (``from_dict`` reads it back)."""
    return json.dumps({"variant": run.variant, "dataset": {"train": run.train, "test": run.test or run.train},
                       "seed": run.seed, "device": run.device, "config": run.config.to_dict()}, indent=2) + "\n"


def history_csv(history: list[dict[str, Any]]) -> str:
    """The history rows as CSV: columns in order of first appearance, an empty cell where a row has no value."""
    columns: dict[str, None] = {}
    for row in history:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def flag_value(value: Any) -> str:
    """A config value as ``--set`` reads it (``parse_value``): true/false, exact floats, lists as 400,200."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def train_command(run: RunRecord) -> str:
    """The shell command that trains this run again (every field off the defaults, the sources, seed, device)."""
    defaults = type(run.config)().to_dict()
    values = run.config.to_dict()
    words = ["python", "-m", "vaelab", "train", run.variant, "--dataset", run.train]
    if run.test is not None and run.test != run.train:
        words += ["--test-dataset", run.test]
    words += ["--seed", str(run.seed), "--device", run.device]
    if values["epochs"] != defaults["epochs"]:
        words += ["--epochs", str(values["epochs"])]
    for name, value in values.items():
        if name != "epochs" and value != defaults.get(name):
            words += ["--set", f"{name}={flag_value(value)}"]
    return shlex.join(words)


def file_stem(run: RunRecord, epochs: int) -> str:
    """'vae-mnist-5k-s3-12ep': a file name for the run's downloads."""
    source = "".join(c if c.isalnum() or c in "-_." else "-" for c in run.train)
    return f"{run.variant}-{source}-s{run.seed}-{epochs}ep"
