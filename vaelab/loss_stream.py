"""A run's loss curves as a frame of the live stream, built up as the rows come: what the browser's loss chart draws.

    series = LossSeries(exclude=model.diagnostic_terms)
    series.take(trainer.history)        # the rows not yet taken (all of them again when the history was cut back)
    frame = series.frame(version=3)     # arrays: train_epoch, train.<term>, test_epoch, test.<term> (float32)

Each kind of row (train, test) is thinned to at most ``max_points`` by averaging *complete* groups of ``stride``
consecutive rows, the stride a power of two: while the stride stays, a newer frame only adds points at the end (the
browser extends its lines), and when it doubles every point changes once (the browser draws the chart anew). Terms
of very different sizes go on panels of their own, as :func:`vaelab.plots.loss_curves` draws them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from vaelab.live_frames import Frame
from vaelab.plots import HISTORY_META, drawn_terms, term_panels

MAX_POINTS = 1000  # per kind of row: the chart is narrower than this many pixels
KINDS = ("train", "test")
VIEW = "losses"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class LossSeries:
    """The loss rows of one run, per kind: epochs and each term's values (nan where a row lacks the term)."""

    def __init__(self, exclude: Iterable[str] = (), max_points: int = MAX_POINTS) -> None:
        self.exclude = set(exclude)
        self.max_points = max_points
        self.taken = 0  # rows of the history already taken
        self.terms: list[str] = []
        self.epochs: dict[str, list[float]] = {k: [] for k in KINDS}
        self.values: dict[str, dict[str, list[float]]] = {k: {} for k in KINDS}
        self._panels: list[list[str]] | None = None
        self._recent: list[Mapping] = []  # the newest rows, for the panels' term scales

    def take(self, history: Sequence[Mapping]) -> bool:
        """Take the rows past those already taken (all again if the history is now shorter); whether any came."""
        if len(history) < self.taken:  # the run went back (a dead worker's last rows dropped, a reset)
            self.__init__(self.exclude, self.max_points)
        new = history[self.taken:]
        self.taken = len(history)
        for row in new:
            kind = row.get("kind")
            if kind not in KINDS or not _is_number(row.get("epoch")):
                continue
            for name, value in row.items():
                if name not in HISTORY_META and name not in self.exclude and _is_number(value) \
                        and name not in self.terms:
                    self.terms.append(name)
                    self._panels = None
                    for k in KINDS:  # earlier rows lacked it
                        self.values[k][name] = [math.nan] * len(self.epochs[k])
            self.epochs[kind].append(float(row["epoch"]))
            for name in self.terms:
                value = row.get(name)
                self.values[kind][name].append(float(value) if _is_number(value) else math.nan)
        if new:
            self._recent = [*self._recent, *new][-200:]
            if self._panels is not None and len(self.epochs["train"]) % 64 == 0:
                self._panels = None  # the terms' sizes drift as the run learns: look again now and then
        return bool(new)

    @property
    def shown_terms(self) -> list[str]:
        """The terms the chart draws (:func:`vaelab.plots.drawn_terms`)."""
        return drawn_terms(self.terms)

    def panels(self) -> list[list[str]]:
        if self._panels is None:
            self._panels = term_panels(self._recent, self.shown_terms)
        return self._panels

    def stride(self) -> int:
        longest = max(len(e) for e in self.epochs.values())
        stride = 1
        while math.ceil(longest / stride) > self.max_points:
            stride *= 2
        return stride

    def frame(self, version: int, step: int, made_at: float) -> Frame:
        """The curves as a frame: for each kind, ``<kind>_epoch`` and ``<kind>.<term>`` (float32, thinned)."""
        stride = self.stride()
        arrays: dict[str, np.ndarray] = {}
        for kind in KINDS:
            arrays[f"{kind}_epoch"] = _thinned(self.epochs[kind], stride)
            for term in self.shown_terms:
                arrays[f"{kind}.{term}"] = _thinned(self.values[kind][term], stride)
        meta = {"version": version, "stride": stride, "terms": self.shown_terms, "panels": self.panels()}
        return Frame(VIEW, step, arrays, meta=meta, made_at=made_at)


def _thinned(values: list[float], stride: int) -> np.ndarray:
    """The means of complete groups of ``stride`` consecutive values (a partial last group waits), float32."""
    a = np.asarray(values, dtype=np.float32)
    if stride == 1:
        return a
    groups = a[:len(a) // stride * stride].reshape(-1, stride)  # (n // stride, stride)
    finite = np.isfinite(groups)
    counts = finite.sum(axis=1)
    sums = np.where(finite, groups, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
