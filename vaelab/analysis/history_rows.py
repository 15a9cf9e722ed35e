"""Curves and figures read from a run's history rows: one loss term over time, its share of the loss, the
newest ELBO split, the mean of recent rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def term_history(history: Sequence[dict], term: str, scale: float = 1.0, name: str | None = None) -> list[dict]:
    """The history rows that report ``term``, as {kind, step, epoch, name: term * scale} (name defaults to term).

    E.g. the contractive term times 1 / lambda is ||J_f(x)||_F^2. Rows without the term are left out."""
    name = name or term
    return [{"kind": r["kind"], "step": r["step"], "epoch": r["epoch"], name: float(r[term]) * scale}
            for r in history if isinstance(r.get(term), int | float)]


def term_share_history(history: Sequence[dict], term: str, total: str = "total", name: str | None = None
                       ) -> list[dict]:
    """Each row's ``term / total`` (the share of the loss a penalty makes up) as {kind, step, epoch, name}.

    Rows missing either value, or with a zero total, are left out; name defaults to "<term> / <total>"."""
    name = name or f"{term} / {total}"
    return [{"kind": r["kind"], "step": r["step"], "epoch": r["epoch"], name: float(r[term]) / float(r[total])}
            for r in history if isinstance(r.get(term), int | float) and isinstance(r.get(total), int | float)
            and r[total] != 0]



ELBO_SPLIT_KINDS = ("train", "test")


def latest_elbo_split(history: Sequence[dict], beta: float) -> dict[str, dict[str, float]]:
    """The newest train and test rows' ELBO split, per image in nats.

    -> {kind: {"reconstruction", "kl", "weighted_kl" = beta * kl, "total" (as logged), "elbo" = -(reconstruction
    + kl)}}. With beta = 1, total = -elbo. A kind with no row holding both terms is left out.
    """
    if not beta >= 0:
        raise ValueError(f"beta: must be >= 0 (got {beta!r})")
    split: dict[str, dict[str, float]] = {}
    for kind in ELBO_SPLIT_KINDS:
        row = next((r for r in reversed(history) if r.get("kind") == kind and "reconstruction" in r and "kl" in r),
                   None)
        if row is None:
            continue
        rec, kl = float(row["reconstruction"]), float(row["kl"])
        total = float(row.get("total", rec + beta * kl))
        split[kind] = {"reconstruction": rec, "kl": kl, "weighted_kl": beta * kl, "total": total,
                       "elbo": -(rec + kl)}
    return split


def recent_mean(history: Sequence[dict], key: str, n_rows: int = 5, kind: str = "train") -> float | None:
    """Mean of ``key`` over the last ``n_rows`` rows of ``kind`` ("train" | "test") that report it (finite values
    only); None if none do. E.g. the latest test total: ``recent_mean(history, "total", 1, "test")``."""
    if n_rows < 1:
        raise ValueError(f"n_rows: must be >= 1 (got {n_rows})")
    values = [float(r[key]) for r in history if r.get("kind") == kind and isinstance(r.get(key), int | float)
              and not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    return float(np.mean(values[-n_rows:])) if values else None
