"""What the Compare page shows, as data: one table row per saved checkpoint, and helpers for the selected few.

Nothing here draws; unreadable checkpoints become rows that say why, never exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vaelab import evaluate
from vaelab.analysis import inference
from vaelab.checkpoints import CheckpointError, list_checkpoints, read_metadata
from vaelab.variants import get_variant
from vaelab.variants.base import Variant

SIZE_FIELDS = ("hidden_sizes", "latent_dim", "code_size")  # always shown among the key settings
HIDDEN_SETTINGS = ("epochs",)  # has its own column
TEST_PREFIX = "test "
# Columns drawn as bar charts for the selected models: (column, chart title, higher is better)
BAR_METRICS = (
    ("test total", "Test loss (total per image: each model's own objective, named under its bar)", False),
    ("log p(x)", "log p(x), nats per image", True),
    ("logistic probe", "Logistic-regression probe accuracy", True),
    ("kNN probe", "k-NN accuracy", True),
    ("BCE", "Reconstruction BCE, nats per image", False),
    ("active units", "Active latent units", True),
    ("samples/s", "Training samples per second (as measured while each trained: that machine and its load)",
     True),
)


@dataclass
class Entry:
    """A saved checkpoint as the page lists it: its metadata (with history) or why it could not be read."""

    path: Path
    name: str
    variant: str
    meta: dict[str, Any] | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.variant} / {self.name}"

    @property
    def readable(self) -> bool:
        return self.error is None and self.meta is not None


def checkpoint_entries(directory: str | Path | None = None) -> list[Entry]:
    """Every checkpoint under the directory (default $VAELAB_CHECKPOINT_DIR), readable or not."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken files come back with info.error set; they are shown as such
        infos = list_checkpoints(directory)
    entries = []
    for info in infos:
        if info.error:
            entries.append(Entry(info.path, info.name, info.variant or "?", error=info.error))
            continue
        try:
            meta = read_metadata(info.path, with_history=True)
        except CheckpointError as error:  # replaced or broken since it was listed
            entries.append(Entry(info.path, info.name, info.variant, error=str(error)))
        else:
            entries.append(Entry(info.path, info.name, info.variant, meta=meta))
    return entries


def _format_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "-".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def key_settings(variant: str, config: dict[str, Any]) -> str:
    """'hidden_sizes=144, latent_dim=2, lr=0.01': the size fields and every field off the variant's default."""
    try:
        defaults = get_variant(variant).config_cls().to_dict()
    except Exception:  # an unknown variant or a config class without defaults: show every field
        defaults = {}
    shown = [name for name, value in config.items() if name not in HIDDEN_SETTINGS
             and (name in SIZE_FIELDS or defaults.get(name, object()) != value)]
    return ", ".join(f"{name}={_format_value(config[name])}" for name in shown)


def dataset_label(spec: dict[str, Any] | None) -> str:
    if not spec:
        return "?"
    train, test = spec.get("train", "?"), spec.get("test", "?")
    return train if test in (None, train) else f"{train} / test {test}"


def data_spec(meta: dict[str, Any]) -> tuple[str, str | None]:
    """(train source, test source or None when it is the train source's own test split)."""
    spec = meta.get("dataset") or {}
    train, test = spec.get("train") or "mnist-5k", spec.get("test")
    return train, (None if test in (None, train) else test)


def objective(variant: str, config: dict[str, Any]) -> str:
    """What a model's test ``total`` is, in words: objectives of different kinds are not comparable figures."""
    loss = {"bce": "BCE", "mse": "squared error", "mse-mean": "mean squared error"}.get(config.get("reconstruction"),
                                                                                          "BCE")
    extra = {"sparse": " + sparsity", "contractive": " + contractive"}.get(variant, "")
    if variant in ("vae", "cvae"):
        beta = float(config.get("beta", 1.0))
        kind = "negative ELBO" if beta == 1.0 else f"rec. + {beta:g} KL (a β-VAE's objective)"
        return kind + (" (a density, not nats)" if config.get("decoder") == "gaussian" else ", nats")
    if variant == "binary-vae":
        return "negative ELBO, nats"
    return f"{loss}{extra}"


def table_row(entry: Entry) -> dict[str, Any]:
    """The table's row for one checkpoint: settings, training, test terms and any cached metrics."""
    row: dict[str, Any] = {"model": entry.label, "variant": entry.variant, "name": entry.name}
    if not entry.readable:
        return {**row, "status": f"unreadable: {entry.error}", "path": str(entry.path)}
    meta = entry.meta
    speed = evaluate.training_speed(meta.get("history") or [], meta)
    row.update({"objective": objective(entry.variant, meta.get("config") or {}),
                "dataset": dataset_label(meta.get("dataset")),
                "settings": key_settings(entry.variant, meta.get("config") or {}),
                "epochs": meta.get("epochs"), "train time (s)": speed["train_time"],
                "samples/s": speed["samples_per_s"]})
    for term, value in (meta.get("metrics") or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool) and term != "samples_per_s":
            row[TEST_PREFIX + term] = float(value)
    cached = evaluate.cached_results(meta)
    if "log_likelihood" in cached:
        ll = cached["log_likelihood"]
        row["log p(x)"], row["log p(x) s.e."] = ll["mean"], ll["stderr"]
        how = "exact" if ll["method"] == "exact" else f"IS K={ll['k']}"
        row["log p(x) how"] = how + (", Gaussian density" if ll.get("decoder") == "gaussian" else "")
    if "reconstruction" in cached:
        row["BCE"], row["MSE"] = cached["reconstruction"]["bce"], cached["reconstruction"]["mse"]
    if "probe" in cached:
        row["logistic probe"], row["kNN probe"] = cached["probe"]["logistic"], cached["probe"]["knn"]
    if "active_units" in cached:
        au = cached["active_units"]
        row["active units"] = au["active"]
        row["latent units"] = au["units"]
    row.update({"created": (meta.get("created") or "")[:16].replace("T", " "), "status": "ok",
                "path": str(entry.path)})
    return row


def comparison_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """One row per checkpoint (see ``table_row``); columns missing for a row are empty (NaN)."""
    rows = [table_row(e) for e in entries]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    front = [c for c in columns if c not in ("created", "status", "path")]
    return pd.DataFrame(rows, columns=[*front, "created", "status", "path"])


# The table on screen: these columns first (those present), the others on request; the CSV holds every column.
MAIN_COLUMNS = ("model", "dataset", "settings", "epochs", "test total", "log p(x)", "logistic probe", "created")
HIDDEN_COLUMNS = ("variant", "name", "path")  # in "model" already, or of no use on screen


def most_recent(entries: Sequence[Entry], n: int = 2) -> list[Entry]:
    """The n readable entries saved last (their stored 'created' time, then the file's modification time)."""
    def saved_at(entry: Entry) -> tuple[str, float]:
        try:
            mtime = entry.path.stat().st_mtime
        except OSError:
            mtime = 0.0
        return (entry.meta or {}).get("created") or "", mtime

    return sorted((e for e in entries if e.readable), key=saved_at, reverse=True)[:n]


def shown_columns(table: pd.DataFrame, extra: Sequence[str] = ()) -> list[str]:
    """The main columns the table has (in their order), then the chosen extra ones (in the table's order)."""
    main = [c for c in MAIN_COLUMNS if c in table.columns]
    return main + [c for c in table.columns if c in extra and c not in main and c not in HIDDEN_COLUMNS]


def same_in_every_row(table: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """{column: value} for the shown columns (not "model") whose value is the same, and present, in every row of a
    table of two rows or more: said once above the table instead of repeated in a column."""
    if len(table) < 2:
        return {}
    same = {}
    for column in columns:
        values = table[column]
        if column != "model" and values.notna().all() and values.nunique() == 1:
            same[column] = values.iloc[0]
    return same


COLUMN_WIDTHS = {"model": 160, "dataset": 90, "settings": 180, "objective": 200, "status": 200, "epochs": 50,
                 "created": 120}
NUMBER_WIDTH = 72  # px: any other column (numbers)
TABLE_WIDTH = 818  # px: the page's column at 1280 px with the sidebar open (measured in Chromium)


def column_width(column: str) -> int:
    """The column's width on screen, px: the main columns of a table with every metric fit ``TABLE_WIDTH``."""
    return COLUMN_WIDTHS.get(column, NUMBER_WIDTH)


def optional_columns(table: pd.DataFrame) -> list[str]:
    """The columns one may add to the main ones."""
    return [c for c in table.columns if c not in MAIN_COLUMNS and c not in HIDDEN_COLUMNS]


NUMBER_FORMATS = {"epochs": "%d", "train time (s)": "%.1f", "samples/s": "%.0f", "MSE": "%.4f",
                  "logistic probe": "%.3f", "kNN probe": "%.3f", "active units": "%d", "latent units": "%d"}


def number_formats(table: pd.DataFrame) -> dict[str, str]:
    """printf-style display formats for the table's numeric columns (two decimals unless listed)."""
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    return {c: NUMBER_FORMATS.get(c, "%.2f") for c in numeric}


def metric_bars(table: pd.DataFrame, paths: Sequence[str]) -> list[tuple[str, list[str], list[float]]]:
    """(title, model labels, values) for each bar-chart metric that at least one of the chosen rows has; models in
    the order of ``paths``."""
    by_path = table.set_index("path", drop=False)
    chosen = by_path.loc[[str(p) for p in paths if str(p) in by_path.index]]
    bars = []
    for column, title, better_high in BAR_METRICS:
        if column not in chosen:
            continue
        have = chosen[chosen[column].notna()]
        if have.empty:
            continue
        arrow = "higher is better" if better_high else "lower is better"
        names = list(have["model"])
        if column == "test total" and "objective" in have:  # different objectives: each bar says which
            names = [f"{name}<br>{what}" for name, what in zip(names, have["objective"], strict=True)]
        bars.append((f"{title} ({arrow})", names, [float(v) for v in have[column]]))
    return bars


def common_terms(histories: Sequence[Sequence[dict[str, Any]]]) -> list[str]:
    """Loss-term names every history reports ("total" first), for the overlaid curves."""
    from vaelab.plots import history_terms

    term_lists = [history_terms(h) for h in histories if h]
    if not term_lists:
        return []
    shared = [t for t in term_lists[0] if all(t in terms for terms in term_lists[1:])]
    return sorted(shared, key=lambda t: t != "total")


def test_images(images: torch.Tensor, labels: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n evenly spaced test images (n, D) and labels (n,): every class of a label-sorted set shows up."""
    idx = inference.spaced_indices(len(images), n)
    return images[idx], labels[idx]


def reconstructions(model: Variant, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """reconstruct(x) of the given images (label-conditioned models get the true labels).   (n, D) -> (n, D)"""
    x = images.to(next(model.parameters()).device)
    y = labels.to(x.device) if model.uses_labels else None
    with inference.evaluating(model):
        return model.reconstruct(x, y).float().cpu().numpy()


def generated_samples(model: Variant, n: int, seed: int = evaluate.IS_SEED) -> np.ndarray | None:
    """n samples (n, D) drawn with a fixed seed; None when the model is not generative (or cannot sample yet,
    e.g. an ae-gmm whose mixture was never fitted)."""
    if not model.generative:
        return None
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    try:
        with inference.evaluating(model):
            return model.sample(n, generator=generator).float().cpu().numpy()
    except RuntimeError:
        return None

