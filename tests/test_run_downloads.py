"""A run's downloads: config JSON, history CSV and the train command, which the CLI's own parser reads back into the
same config, data sources, seed and device."""

from __future__ import annotations

import csv
import io
import json
import shlex

import pytest

from tests.helpers import no_exception, open_page, session_of, set_form, train_to_the_end
from vaelab.cli import build_config, make_parser
from vaelab.run_export import RunRecord, config_json, history_csv, train_command
from vaelab.variants import VARIANTS, get_variant


def parse_command(command: str):
    """The command as the shell splits it, parsed by ``python -m vaelab``'s own parser."""
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "vaelab", "train"]
    return make_parser().parse_args(words[3:])


def configs_of(variant: str):
    """The variant's defaults, each preset, and one with fields of every kind changed."""
    cls = get_variant(variant).config_cls
    yield cls()
    for preset in cls.PRESETS:
        yield cls.from_preset(preset)
    yield cls.from_preset(None, lr=1 / 3, epochs=2, batch_size=64, binarize="static", weight_decay=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_train_command_parses_back_into_the_same_run(variant):
    for i, config in enumerate(configs_of(variant)):
        run = RunRecord(variant, config, "mnist-5k", "idx:../shared/datasets/mnist-test" if i % 2 else None,
                        seed=3 + i, device="cpu")
        args = parse_command(train_command(run))
        assert args.variant == variant
        assert build_config(args.variant, args.preset, args.set, args.epochs) == config
        assert (args.dataset, args.test_dataset, args.seed, args.device) == (run.train, run.test, run.seed, "cpu")


def test_a_default_run_needs_no_set_flags_and_a_changed_one_names_each_field():
    cls = get_variant("vae").config_cls
    assert "--set" not in train_command(RunRecord("vae", cls(), "mnist-5k"))
    words = shlex.split(train_command(RunRecord("vae", cls(beta=4.0, hidden_sizes=(64, 32)), "digits")))
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert sorted(sets) == ["beta=4.0", "hidden_sizes=64,32"]


def test_config_json_reads_back_into_the_config():
    config = get_variant("sparse").config_cls.from_preset(None, lr=0.002, hidden_sizes=(50,))
    loaded = json.loads(config_json(RunRecord("sparse", config, "mnist-5k", seed=7)))
    assert loaded["variant"] == "sparse" and loaded["seed"] == 7
    assert loaded["dataset"] == {"train": "mnist-5k", "test": "mnist-5k"}
    assert get_variant("sparse").config_cls.from_dict(loaded["config"]) == config


def test_history_csv_holds_every_row_and_every_column():
    history = [{"kind": "train", "step": 1, "total": 0.5, "reconstruction": 0.25},
               {"kind": "test", "step": 1, "epoch": 1.0, "total": 0.75},
               {"kind": "train", "step": 2, "total": 0.125, "kl": 0.0625}]
    rows = list(csv.DictReader(io.StringIO(history_csv(history))))
    assert len(rows) == len(history)
    for row, original in zip(rows, history, strict=True):
        assert {k for k, v in row.items() if v != ""} == set(original)
        assert all(row[k] == str(v) for k, v in original.items())


def test_a_trained_page_offers_the_downloads_without_rerunning_and_shows_the_command():
    at = open_page("pages/ae.py")
    assert not any(b.proto.label == "Config (JSON)" for b in at.get("download_button"))  # no run yet
    set_form(at, "ae", {"hidden_sizes": "16", "code_size": 4, "epochs": 1, "lr": 0.002})
    train_to_the_end(at, "ae")
    no_exception(at)
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    for label in ("Config (JSON)", "History (CSV)", "Train command"):
        assert buttons[label].ignore_rerun, label  # a click never reruns the page (nor interrupts training)
    command = next(c.value for c in at.code if c.value.startswith("python -m vaelab train"))
    args = parse_command(command)
    session = session_of(at, "ae")
    assert build_config(args.variant, args.preset, args.set, args.epochs) == session.config
    assert (args.dataset, args.seed) == ("mnist-5k", 0)
