"""Plotly figure builders: data in, ``go.Figure`` out. No model code and no Streamlit here.

Images are drawn as one greyscale heatmap (0 black, 1 white) quantised to bytes, y pointing down, square
pixels and no ticks: one trace per picture however many tiles it holds, so live redraws stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

HISTORY_META = ("kind", "step", "epoch", "time", "samples_per_s")
# The one qualitative palette of the app: Paul Tol's colour-blind-safe set (Plotly's ``qualitative.Safe``), its
# strongest colours first so the first lines of a chart read on a projector. Digits take the first 10; the grey
# (the 11th) is left to no class. Markers that must not look like a digit use black and white (see the *_DRAWS).
PALETTE = tuple(qualitative.Safe[i] for i in (4, 1, 3, 0, 8, 6, 2, 5, 7, 9, 10))
CLASS_COLORS = PALETTE[:10]  # one per digit
TERM_COLORS = PALETTE  # one per line of a multi-line chart
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
SCALE_RATIO = 10.0  # a loss term this many times smaller than the total gets a panel of its own
KL_VIEW_MIN = 0.3  # the KL figure's x axis shows at least rho_hat in [0, 0.3]
LOSS_HEIGHT, PANEL_HEIGHT = 420, 150  # px: a loss chart of one panel, and each further panel
GREY = [[0.0, "rgb(0,0,0)"], [1.0, "rgb(255,255,255)"]]  # 0 black, 1 white: MNIST's white ink on black


# ---------------------------------------------------------------- loss curves
def history_terms(history: Sequence[Mapping]) -> list[str]:
    """Numeric loss-term names in the history, in order of first appearance ("total" last)."""
    names: dict[str, None] = {}
    for row in history:
        for key, value in row.items():
            if key not in HISTORY_META and isinstance(value, int | float) and not isinstance(value, bool):
                names.setdefault(key)
    ordered = [n for n in names if n != "total"]
    return ordered + ["total"] if "total" in names else ordered


def drawn_terms(terms: Sequence[str]) -> list[str]:
    """The terms a loss chart draws: ``terms`` in order with "total" last, and without a "total" that only repeats
    the single other term (a plain autoencoder)."""
    ordered = [t for t in terms if t != "total"] + (["total"] if "total" in terms else [])
    return ordered[:1] if len(ordered) == 2 and ordered[-1] == "total" else ordered


def _smoothed(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing); weight 0 leaves values as is."""
    if weight == 0.0:
        return values
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        avg = weight * avg + (1.0 - weight) * v
        norm = weight * norm + (1.0 - weight)
        out.append(avg / norm)
    return out


def _finite_values(history: Sequence[Mapping], term: str, kinds: Sequence[str] = ("train", "test")) -> list[float]:
    return [float(r[term]) for r in history if r.get("kind") in kinds and isinstance(r.get(term), int | float)
            and not isinstance(r.get(term), bool) and math.isfinite(r[term])]


def term_scale(history: Sequence[Mapping], term: str) -> float:
    """A term's typical size: the median of its absolute values in the train and test rows (0 when it has none)."""
    values = _finite_values(history, term)
    return float(np.median(np.abs(values))) if values else 0.0


def term_panels(history: Sequence[Mapping], terms: Sequence[str], ratio: float = SCALE_RATIO) -> list[list[str]]:
    """The terms grouped into panels of one loss chart, the largest terms' panel first.

    A term shares the panel of a larger term when it is within ``ratio`` of that panel's largest term; otherwise it
    gets a panel of its own (a contractive term of ~1 beside a total of ~100 would be flat on one axis). Terms that
    are all zero or not in the history stay in the first panel. Within a panel the terms keep their given order.
    """
    scales = {t: term_scale(history, t) for t in terms}
    anchors: list[float] = []  # each panel's largest scale
    panels: list[list[str]] = []
    for term in sorted(terms, key=lambda t: -scales[t]):  # stable: equal scales keep their order
        scale = scales[term]
        home = next((i for i, a in enumerate(anchors) if scale == 0.0 or scale * ratio >= a), None)
        if home is None:
            anchors.append(scale)
            panels.append([term])
        else:
            panels[home].append(term)
    order = {t: i for i, t in enumerate(terms)}
    return [sorted(panel, key=order.__getitem__) for panel in panels] or [[]]


def _term_traces(history: Sequence[Mapping], term: str, color: str, smooth: float) -> list[go.Scatter]:
    """A term's train line (solid, smoothed) and test line (dashed, markers), for the rows that have it."""
    traces = []
    for kind in ("train", "test"):
        points = [(float(r["epoch"]), float(r[term])) for r in history
                  if r.get("kind") == kind and isinstance(r.get(term), int | float) and math.isfinite(r[term])
                  and "epoch" in r]
        if not points:
            continue
        x, y = (list(v) for v in zip(*points, strict=True))
        if kind == "train":
            y = _smoothed(y, smooth)
            style = {"mode": "lines", "line": {"color": color, "width": 2}}
        else:
            style = {"mode": "lines+markers", "line": {"color": color, "dash": "dash"}, "marker": {"size": 6}}
        traces.append(go.Scatter(x=x, y=y, name=f"{kind} · {term}", legendgroup=term, **style,
                                 hovertemplate=f"{kind} {term}<br>epoch %{{x:.2f}}<br>%{{y:.4g}}<extra></extra>"))
    return traces


def loss_curves(history: Sequence[Mapping], terms: Sequence[str] | None = None, log_y: bool = False,
                smooth: float = 0.0, title: str | None = None) -> go.Figure:
    """One line per loss term against epoch: train rows solid, test rows dashed with markers.

    Terms of very different sizes go on panels of their own, stacked with a shared epoch axis (see
    :func:`term_panels`); the first panel is the largest terms', titled "loss per image", the others by their
    terms. ``log_y`` puts every panel on a log axis. ``smooth`` in [0, 1) is the weight of an exponential moving
    average over the train rows. Rows missing a term, and non-finite values, are skipped. An empty history gives an
    empty figure with axis titles, both axes from 0 to 1.
    """
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth: must be in [0, 1) (got {smooth!r})")
    terms = history_terms(history) if terms is None else list(terms)
    panels = term_panels(history, terms)
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[2.0] + [1.0] * (len(panels) - 1))
    for row, panel in enumerate(panels, start=1):
        for term in panel:
            color = TERM_COLORS[terms.index(term) % len(TERM_COLORS)]
            for trace in _term_traces(history, term, color, smooth):
                fig.add_trace(trace, row=row, col=1)
        fig.update_yaxes(title_text="loss per image" if row == 1 else " + ".join(panel), row=row, col=1)
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_xaxes(title_text="epoch", row=len(panels), col=1)
    if not fig.data:  # before the first row: a neutral 0-1 frame, not Plotly's default axes (a loss of -1 to 4)
        fig.update_xaxes(range=[0, 1])
        fig.update_yaxes(range=[0, 1])  # a log axis: 1 to 10
    fig.update_layout(title=title, uirevision="loss-curves", margin=MARGIN,
                      height=None if len(panels) == 1 else LOSS_HEIGHT + PANEL_HEIGHT * (len(panels) - 1),
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


# ---------------------------------------------------------------- images
def _image_trace(array2d: np.ndarray) -> go.Heatmap:
    a = np.asarray(array2d, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"array2d: expected a 2-D image, got shape {a.shape}")
    z = np.rint(np.clip(np.nan_to_num(a, nan=1.0), 0.0, 1.0) * 255).astype(np.uint8)  # bytes: a compact payload
    return go.Heatmap(z=z, zmin=0, zmax=255, colorscale=GREY, showscale=False, hoverinfo="skip", zsmooth=False)


def _image_layout(fig: go.Figure, title: str | None, height: int | None) -> go.Figure:
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(autorange="reversed", scaleanchor="x", scaleratio=1, showgrid=False, zeroline=False,
                     ticks="", showline=False, constrain="domain")
    margin = MARGIN if title else {**MARGIN, "t": 10}
    fig.update_layout(title=title, height=height, margin=margin, plot_bgcolor="white", dragmode=False)
    return fig


def image_figure(array2d: np.ndarray, title: str | None = None, height: int | None = None) -> go.Figure:
    """One tiled picture (filter grid, manifold, samples) with values in [0, 1], drawn in grey."""
    fig = go.Figure(_image_trace(array2d))
    fig.update_yaxes(showticklabels=False)
    return _image_layout(fig, title, height)


def image_row_grid(rows: Sequence[np.ndarray], row_titles: Sequence[str], image_shape: Sequence[int],
                   title: str | None = None, height: int | None = None, sep: int = 2) -> go.Figure:
    """Rows of images (each (N, D), e.g. original / corrupted / reconstruction) with their titles on the left.

    ``height`` defaults to about 80 px per row (plus the title), which suits ~10 images per row.
    """
    if not rows:
        raise ValueError("rows: need at least one row of images")
    if len(row_titles) != len(rows):
        raise ValueError(f"row_titles: expected {len(rows)} titles (one per row), got {len(row_titles)}")
    h, w = (int(s) for s in image_shape)
    arrays = [np.asarray(r, dtype=np.float32) for r in rows]
    for name, a in zip(row_titles, arrays, strict=True):
        if a.ndim != 2 or a.shape[1] != h * w:
            raise ValueError(f"rows: {name!r} should have shape (N, {h * w}) for {h}x{w} images, got {a.shape}")
    ncols = max(a.shape[0] for a in arrays)
    canvas = np.ones((len(arrays) * (h + sep) - sep, ncols * (w + sep) - sep), dtype=np.float32)
    for r, a in enumerate(arrays):
        for c, img in enumerate(a.reshape(-1, h, w)):
            canvas[r * (h + sep):r * (h + sep) + h, c * (w + sep):c * (w + sep) + w] = img
    fig = go.Figure(_image_trace(canvas))
    centres = [r * (h + sep) + (h - 1) / 2 for r in range(len(arrays))]
    fig.update_yaxes(tickmode="array", tickvals=centres, ticktext=list(row_titles))
    if height is None:
        height = 80 * len(arrays) + (MARGIN["t"] if title else 0) + MARGIN["b"] + 10
    return _image_layout(fig, title, height)


# ---------------------------------------------------------------- latent maps
def latent_scatter(points: np.ndarray, labels: Sequence[int] | np.ndarray | None = None, title: str | None = None,
                   axis_titles: Sequence[str] = ("z₁", "z₂"), label_names: Sequence[str] | None = None,
                   marker_size: int = 5) -> go.Figure:
    """2-D points coloured by class, one trace (and legend entry) per class present.

    Each point's ``customdata`` is its row index in ``points``, so a page can show the picked image.
    """
    p = np.asarray(points, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points: expected shape (N, 2), got {p.shape}")
    index = np.arange(p.shape[0])
    fig = go.Figure()
    if labels is None:
        groups = [("codes", index, TERM_COLORS[0])]
    else:
        lab = np.asarray(labels).reshape(-1)
        if lab.shape[0] != p.shape[0]:
            raise ValueError(f"labels: expected {p.shape[0]} labels (one per point), got {lab.shape[0]}")
        groups = []
        for k in np.unique(lab):
            name = str(label_names[int(k)]) if label_names is not None else str(k)
            groups.append((name, index[lab == k], CLASS_COLORS[int(k) % len(CLASS_COLORS)]))
    for name, idx, color in groups:
        fig.add_trace(go.Scatter(
            x=p[idx, 0], y=p[idx, 1], mode="markers", name=name, customdata=idx,
            marker={"size": marker_size, "color": color, "opacity": 0.8},
            hovertemplate=f"{name}<br>index %{{customdata}}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=axis_titles[0], yaxis_title=axis_titles[1], margin=MARGIN,
                      legend={"itemsizing": "constant"}, uirevision="latent-map")
    return fig


def add_ellipses(fig: go.Figure, ellipses: Sequence[np.ndarray], name: str = "mixture (2 sd)",
                 color: str = "rgb(80, 80, 80)") -> go.Figure:
    """Draw closed outlines ((n_points, 2) each) on a figure as one legend group; returns the figure."""
    for k, e in enumerate(ellipses):
        e = np.asarray(e)
        fig.add_trace(go.Scatter(x=e[:, 0], y=e[:, 1], mode="lines", name=name, legendgroup="ellipses",
                                 showlegend=k == 0, line={"color": color, "width": 1.5}, hoverinfo="skip"))
    return fig


# ---------------------------------------------------------------- sparse autoencoder
def activation_histogram(rho_hat: np.ndarray, rho: float | None = None, nbins: int = 30,
                         title: str = "Mean activation of each unit") -> go.Figure:
    """Histogram of the units' mean activations rho_hat_j, with the target rho as a vertical line."""
    fig = go.Figure(go.Histogram(x=np.asarray(rho_hat, dtype=np.float64).reshape(-1), nbinsx=nbins,
                                 name="units", marker_color=TERM_COLORS[0]))
    if rho is not None:
        fig.add_vline(x=float(rho), line={"color": PALETTE[1], "dash": "dash"}, annotation_text=f"ρ = {rho:g}")
    fig.update_layout(title=title, xaxis_title="ρ̂ⱼ (mean activation)", yaxis_title="units", margin=MARGIN,
                      bargap=0.05)
    fig.update_xaxes(rangemode="tozero")  # from 0: a target rho below every unit is not drawn on the units axis
    return fig


def _kl_window(rho: float, units: np.ndarray, compare_rho: float | None) -> float:
    """The right end of the KL figure's x axis: wide enough for rho's valley, every unit and the compared rho."""
    wanted = [KL_VIEW_MIN, 4.0 * rho, 1.25 * float(units.max(initial=0.0))]
    if compare_rho is not None:
        wanted.append(1.25 * compare_rho)
    return min(1.0, max(wanted))


def kl_bernoulli_figure(rho: float, rho_hat_curve: np.ndarray, kl_curve: np.ndarray,
                        unit_rho_hats: np.ndarray | None = None, title: str | None = None,
                        compare: tuple[float, np.ndarray, np.ndarray] | None = None) -> go.Figure:
    """The curve KL(rho || rho_hat) for the training rho and, as markers on it, the current units'
    (rho_hat_j, KL(rho || rho_hat_j)). ``compare`` = (rho', rho_hat_curve', kl_curve') adds KL(rho' || rho_hat) as a
    lighter dotted curve (another target to compare with); None, or rho' = rho, draws none.

    The axes open on the part that holds rho's valley, the units and rho' (a small rho's valley is a sliver of
    [0, 1]); double-click the chart for the whole curve.
    """
    import torch

    from vaelab.losses import kl_bernoulli

    x, y = np.asarray(rho_hat_curve, dtype=np.float64), np.asarray(kl_curve, dtype=np.float64)
    units = np.asarray(unit_rho_hats if unit_rho_hats is not None else [], dtype=np.float64).reshape(-1)
    compare = compare if compare is not None and not math.isclose(compare[0], rho) else None
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", name=f"KL(ρ = {rho:g} ‖ ρ̂), training ρ",
                               line={"color": PALETTE[0], "width": 2.5}))
    if compare is not None:
        cx, cy = np.asarray(compare[1], dtype=np.float64), np.asarray(compare[2], dtype=np.float64)
        fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", name=f"KL(ρ′ = {compare[0]:g} ‖ ρ̂), for comparison",
                                 line={"color": PALETTE[-1], "width": 1.5, "dash": "dot"}, opacity=0.8))
        x, y = np.concatenate([x, cx]), np.concatenate([y, cy])
    if unit_rho_hats is not None:
        unit_kl = kl_bernoulli(float(rho), torch.as_tensor(units)).numpy()
        fig.add_trace(go.Scatter(x=units, y=unit_kl, mode="markers", name="units (ρ̂ⱼ, training ρ)",
                                 marker={"color": PALETTE[1], "size": 7, "opacity": 0.75,
                                         "line": {"color": "white", "width": 0.5}},
                                 hovertemplate="ρ̂ = %{x:.3f}<br>KL = %{y:.3f}<extra>unit</extra>"))
        x, y = np.concatenate([x, units]), np.concatenate([y, unit_kl])
    x_max = _kl_window(rho, units, compare[0] if compare is not None else None)
    in_view = y[(x <= x_max) & np.isfinite(y)]
    y_max = 1.08 * float(in_view.max(initial=0.0)) or 1.0
    fig.add_vline(x=float(rho), line={"color": "grey", "dash": "dot"})
    fig.update_layout(title=title or f"KL(ρ ‖ ρ̂), training ρ = {rho:g}", xaxis_title="ρ̂",
                      yaxis_title="KL (nats)", xaxis_range=[0, x_max], yaxis_range=[0, y_max], margin=MARGIN,
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0})
    return fig


# ---------------------------------------------------------------- generic charts
def bar_chart(names: Sequence[str], values: Sequence[float], title: str | None = None,
              y_title: str | None = None) -> go.Figure:
    if len(names) != len(values):
        raise ValueError(f"values: expected {len(names)} values (one per name), got {len(values)}")
    colors = [TERM_COLORS[i % len(TERM_COLORS)] for i in range(len(names))]
    fig = go.Figure(go.Bar(x=list(names), y=list(values), marker_color=colors))
    fig.update_layout(title=title, yaxis_title=y_title, margin=MARGIN)
    return fig


def line_chart(x: Sequence[float], ys: Mapping[str, Sequence[float]], title: str | None = None,
               x_title: str | None = None, y_title: str | None = None, log_y: bool = False,
               markers: bool = True) -> go.Figure:
    """One line per named series over a shared x (sweeps over noise level or eps, variance curves)."""
    fig = go.Figure()
    for i, (name, y) in enumerate(ys.items()):
        if len(y) != len(x):
            raise ValueError(f"ys[{name!r}]: expected {len(x)} values (one per x), got {len(y)}")
        fig.add_trace(go.Scatter(x=list(x), y=list(y), name=name, mode="lines+markers" if markers else "lines",
                                 line={"color": TERM_COLORS[i % len(TERM_COLORS)]}))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title,
                      yaxis_type="log" if log_y else "linear", margin=MARGIN)
    return fig


# ---------------------------------------------------------------- picking points on a latent map
def selected_indices(event: Mapping | None) -> list[int]:
    """Indices (the ``customdata`` that ``latent_scatter`` puts on each point) of the points picked in a Streamlit
    Plotly selection event ``{"selection": {"points": [{"customdata": 12, ...}, ...]}}``, in order; [] if none.

    ``customdata`` may also arrive as a one-element list (Plotly Express style); points without it are skipped.
    """
    selection = (event or {}).get("selection") or {}
    indices = []
    for point in selection.get("points") or []:
        data = point.get("customdata") if isinstance(point, Mapping) else None
        if isinstance(data, list | tuple):
            data = data[0] if data else None
        if isinstance(data, int | float) and not isinstance(data, bool) and float(data).is_integer():
            indices.append(int(data))
    return indices


# ---------------------------------------------------------------- binary-latent VAE and AE + Gaussian mixture pages
def train_curves(history: Sequence[Mapping], series: Mapping[str, str], title: str | None = None,
                 y_title: str | None = None, log_y: bool = False) -> go.Figure:
    """One line per history key against epoch, from the train rows (diagnostics such as gradient variances).

    ``series`` maps a history key to its legend name; rows without the key, and non-finite or (on a log axis)
    non-positive values, are skipped.
    """
    fig = go.Figure()
    for i, (key, name) in enumerate(series.items()):
        points = [(float(r["epoch"]), float(r[key])) for r in history
                  if r.get("kind") == "train" and "epoch" in r and isinstance(r.get(key), int | float)
                  and not isinstance(r.get(key), bool) and math.isfinite(r[key]) and (r[key] > 0 or not log_y)]
        color = TERM_COLORS[i % len(TERM_COLORS)]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=name, mode="lines",
                                 line={"color": color, "width": 2},
                                 hovertemplate=f"{name}<br>epoch %{{x:.2f}}<br>%{{y:.4g}}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title=y_title, yaxis_type="log" if log_y else "linear",
                      margin={**MARGIN, "t": 80 if title else MARGIN["t"]}, uirevision="train-curves",
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})  # below the title
    return fig


# Codes drawn over a code map coloured by digit: shapes and colours no digit has, larger than the codes' dots.
MIXTURE_DRAWS = {"symbol": "diamond", "color": "white", "outline": "black", "size": 11}
NORMAL_DRAWS = {"symbol": "x", "color": "black", "outline": "white", "size": 12}


def add_points(fig: go.Figure, points: np.ndarray, name: str, color: str = "black", symbol: str = "x",
               size: int = 7, outline: str = "white") -> go.Figure:
    """Overlay 2-D points (N, 2) (e.g. sampled codes) as one extra legend entry; returns the figure.

    ``outline`` is the colour of each marker's edge (it keeps the marker readable over dense points)."""
    p = np.asarray(points, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points: expected shape (N, 2), got {p.shape}")
    fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=name,
                             marker={"symbol": symbol, "color": color, "size": size,
                                     "line": {"width": 1.5, "color": outline}},
                             hovertemplate=f"{name}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>"))
    return fig


def add_curve(fig: go.Figure, x: Sequence[float], y: Sequence[float], name: str, color: str = PALETTE[1],
              dash: str | None = None) -> go.Figure:
    """Overlay one line with markers (e.g. a reference model's measure against epoch); returns the figure."""
    if len(x) != len(y):
        raise ValueError(f"y: expected {len(x)} values (one per x), got {len(y)}")
    fig.add_trace(go.Scatter(x=list(x), y=list(y), name=name, mode="lines+markers",
                             line={"color": color, "width": 2, "dash": dash}, marker={"size": 6},
                             hovertemplate=f"{name}<br>epoch %{{x:.2f}}<br>%{{y:.4g}}<extra></extra>"))
    return fig


# ---------------------------------------------------------------- comparing models
def compare_loss_curves(histories: Mapping[str, Sequence[Mapping]], term: str = "total",
                        kinds: Sequence[str] = ("train", "test"), title: str | None = None) -> go.Figure:
    """One colour per model: ``term`` against epoch from several histories (train solid, test dashed).

    Models whose history lacks the term draw nothing; non-finite values are skipped."""
    fig = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        color = TERM_COLORS[i % len(TERM_COLORS)]
        for kind in kinds:
            points = [(float(r["epoch"]), float(r[term])) for r in history
                      if r.get("kind") == kind and "epoch" in r and isinstance(r.get(term), int | float)
                      and math.isfinite(r[term])]
            if not points:
                continue
            x, y = (list(v) for v in zip(*points, strict=True))
            style = ({"mode": "lines", "line": {"color": color, "width": 2}} if kind == "train" else
                     {"mode": "lines+markers", "line": {"color": color, "dash": "dash"}, "marker": {"size": 6}})
            fig.add_trace(go.Scatter(x=x, y=y, name=f"{name} · {kind}", legendgroup=name, **style,
                                     hovertemplate=f"{name} {kind}<br>epoch %{{x:.2f}}<br>%{{y:.4g}}<extra></extra>"))
    fig.update_layout(title=title or f"{term} per image", xaxis_title="epoch", yaxis_title=f"{term} per image",
                      margin={**MARGIN, "b": 40}, legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0})
    return fig


# ---------------------------------------------------------------- the true posterior and the ELBO gap
DENSITY_SCALE = "Viridis"  # perceptually uniform, dark = little mass
POSTERIOR_LOG_RANGE = 10.0  # nats below its peak that the posterior heat map shows (lower values share one colour)
Q_LINE = {"color": "white", "width": 2}  # q(z|x)'s ellipses over the heat map: readable over every Viridis colour
Q_SDS = (1, 2)  # standard deviations of q(z|x) drawn as ellipses
ACTIVE_COLOR, INACTIVE_COLOR = PALETTE[0], "rgb(190, 190, 190)"
TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}  # between the title and the plot
BOTTOM_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0}  # under the x axis's title
Q_LEGEND = {"bgcolor": "rgb(68, 68, 68)", "font": {"color": "white"}}  # the white ellipses' entries need a dark ground


def _cell_range(centres: np.ndarray) -> list[float] | None:
    """The axis range that shows every cell of a uniform grid whole (None, Plotly's own, for a single cell)."""
    if len(centres) < 2:
        return None
    half = (centres[1] - centres[0]) / 2
    return [float(centres[0] - half), float(centres[-1] + half)]


def axis_ellipse(mean: Sequence[float], std: Sequence[float], k: float, n: int = 120) -> np.ndarray:
    """The closed curve mean + k * std * (cos t, sin t), t in [0, 2 pi]: the k-standard-deviation ellipse of a
    diagonal 2-D Gaussian (its axes along z1 and z2).   -> (n, 2)"""
    m, s = np.asarray(mean, dtype=np.float64).reshape(2), np.asarray(std, dtype=np.float64).reshape(2)
    t = np.linspace(0.0, 2.0 * np.pi, n)
    return m + k * s * np.stack([np.cos(t), np.sin(t)], axis=1)


def posterior_heatmap(axes: Sequence[np.ndarray], log_posterior: np.ndarray, q_mean: Sequence[float],
                      q_std: Sequence[float], title: str | None = None,
                      log_range: float = POSTERIOR_LOG_RANGE) -> go.Figure:
    """log p(z|x) on a 2-D grid (``log_posterior[i, j]`` at z = (axes[0][i], axes[1][j])) as a heat map clipped to
    ``log_range`` nats below its peak, with q(z|x) = N(q_mean, diag q_std^2)'s 1- and 2-sd ellipses and its mean."""
    z1, z2 = (np.asarray(a, dtype=np.float64).reshape(-1) for a in axes)
    lp = np.asarray(log_posterior, dtype=np.float64)
    if lp.shape != (len(z1), len(z2)):
        raise ValueError(f"log_posterior: expected shape ({len(z1)}, {len(z2)}) (axis 0 = z1), got {lp.shape}")
    top = float(np.max(lp))
    shown = np.maximum(lp, top - log_range).T  # (z2, z1): Plotly's rows are y
    fig = go.Figure(go.Heatmap(
        x=z1, y=z2, z=shown, zmin=top - log_range, zmax=top, colorscale=DENSITY_SCALE, name="log p(z|x)",
        colorbar={"title": {"text": "log p(z|x)", "side": "right"}, "thickness": 14},
        hovertemplate="z = (%{x:.3f}, %{y:.3f})<br>log p(z|x) = %{z:.2f}<extra></extra>"))
    for k in Q_SDS:
        e = axis_ellipse(q_mean, q_std, k)
        fig.add_trace(go.Scatter(x=e[:, 0], y=e[:, 1], mode="lines", name=f"q(z|x): μ ± {k}σ",
                                 line={**Q_LINE, "dash": "solid" if k == 1 else "dash"}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[float(q_mean[0])], y=[float(q_mean[1])], mode="markers", name="μ of q(z|x)",
                             marker={"symbol": "x", "color": "white", "size": 10, "line": {"width": 1}},
                             hovertemplate="μ = (%{x:.3f}, %{y:.3f})<extra></extra>"))
    fig.update_xaxes(title_text="z₁", range=_cell_range(z1), showgrid=False, zeroline=False)
    fig.update_yaxes(title_text="z₂", range=_cell_range(z2), showgrid=False, zeroline=False)
    fig.update_layout(title=title, margin={**MARGIN, "t": 80 if title else MARGIN["t"]}, height=460,
                      plot_bgcolor="white", legend={**TOP_LEGEND, **Q_LEGEND})
    return fig


def posterior_curve(axis: np.ndarray, log_posterior: np.ndarray, q_mean: float, q_std: float,
                    title: str | None = None) -> go.Figure:
    """A 1-D latent: the density p(z|x) = exp(log_posterior) on the grid beside q(z|x) = N(q_mean, q_std^2)."""
    z = np.asarray(axis, dtype=np.float64).reshape(-1)
    lp = np.asarray(log_posterior, dtype=np.float64).reshape(-1)
    if lp.shape != z.shape:
        raise ValueError(f"log_posterior: expected {len(z)} values (one per grid point), got {lp.shape}")
    q = np.exp(-0.5 * ((z - q_mean) / q_std) ** 2) / (q_std * math.sqrt(2.0 * math.pi))
    fig = go.Figure([
        go.Scatter(x=z, y=np.exp(lp), mode="lines", name="p(z|x), exact", line={"color": PALETTE[0], "width": 2.5}),
        go.Scatter(x=z, y=q, mode="lines", name="q(z|x), the encoder", line={"color": PALETTE[1], "dash": "dash"})])
    fig.update_layout(title=title, xaxis_title="z", yaxis_title="density", height=460,
                      margin={**MARGIN, "t": 80 if title else MARGIN["t"]}, legend=TOP_LEGEND)
    return fig


def importance_bound_figure(draws: Mapping[int, Sequence[float]], exact: float,
                            title: str | None = None) -> go.Figure:
    """The importance-weighted bound against K (log axis): the mean of each K's draws with +-1 standard error,
    the draws themselves faint, and a horizontal line at the exact log p(x)."""
    ks = sorted(int(k) for k in draws)
    if not ks:
        raise ValueError("draws: need the bound's draws for at least one K")
    values = [np.asarray(draws[k], dtype=np.float64).reshape(-1) for k in ks]
    means = [float(v.mean()) for v in values]
    errors = [float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0 for v in values]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[k for k, v in zip(ks, values, strict=True) for _ in v],
                             y=np.concatenate(values), mode="markers", name="one draw",
                             marker={"color": PALETTE[0], "size": 5, "opacity": 0.3},
                             hovertemplate="K = %{x}<br>%{y:.2f}<extra>one draw</extra>"))
    fig.add_trace(go.Scatter(x=ks, y=means, mode="lines+markers", name="mean ± 1 s.e.",
                             error_y={"type": "data", "array": errors, "visible": True, "thickness": 1.5},
                             line={"color": PALETTE[0], "width": 2}, marker={"size": 8},
                             hovertemplate="K = %{x}<br>mean %{y:.2f}<extra></extra>"))
    span = [ks[0] / 1.6, ks[-1] * 1.6]
    fig.add_trace(go.Scatter(x=span, y=[exact, exact], mode="lines", name="exact log p(x)",
                             line={"color": PALETTE[1], "width": 2, "dash": "dash"},
                             hovertemplate=f"exact log p(x) = {exact:.2f}<extra></extra>"))
    fig.update_xaxes(type="log", title_text="K (importance samples)", tickvals=ks, ticktext=[f"{k:,}" for k in ks],
                     range=[math.log10(span[0]), math.log10(span[1])])
    fig.update_yaxes(title_text="bound (nats)")
    fig.update_layout(title=title, margin={**MARGIN, "b": 60}, height=460, legend=BOTTOM_LEGEND)
    return fig


def gap_curve(steps: Sequence[int], gaps: Sequence[float], title: str | None = None) -> go.Figure:
    """The mean ELBO gap (nats) against the training step."""
    if len(steps) != len(gaps):
        raise ValueError(f"gaps: expected {len(steps)} values (one per step), got {len(gaps)}")
    fig = go.Figure(go.Scatter(x=list(steps), y=list(gaps), mode="lines+markers", name="mean gap",
                               line={"color": PALETTE[0], "width": 2}, marker={"size": 7},
                               hovertemplate="step %{x:,}<br>mean gap %{y:.3f} nats<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="mean gap (nats)", margin=MARGIN,
                      height=300, yaxis_rangemode="tozero")
    return fig


def density_pair(axis: np.ndarray, left: np.ndarray, right: np.ndarray,
                 titles: Sequence[str] = ("aggregate posterior q(z)", "prior p(z) = N(0, I)"),
                 zmax: float | None = None) -> go.Figure:
    """Two densities on the same square grid (``axis`` the cell centres of both z1 and z2; ``[i, j]`` at
    (axis[i], axis[j])) side by side, with one colour scale from 0 to ``zmax`` (default: the larger maximum)."""
    a = np.asarray(axis, dtype=np.float64).reshape(-1)
    grids = [np.asarray(g, dtype=np.float64) for g in (left, right)]
    for name, g in zip(("left", "right"), grids, strict=True):
        if g.shape != (len(a), len(a)):
            raise ValueError(f"{name}: expected shape ({len(a)}, {len(a)}), got {g.shape}")
    top = float(zmax) if zmax is not None else max(float(g.max()) for g in grids)
    fig = make_subplots(1, 2, subplot_titles=list(titles), horizontal_spacing=0.08)
    for col, (name, g) in enumerate(zip(titles, grids, strict=True), start=1):
        fig.add_trace(go.Heatmap(x=a, y=a, z=g.T, coloraxis="coloraxis", name=name,
                                 hovertemplate=f"{name}<br>z = (%{{x:.2f}}, %{{y:.2f}})<br>density %{{z:.4f}}"
                                               "<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="z₁", range=_cell_range(a), constrain="domain", showgrid=False, zeroline=False)
    fig.update_yaxes(title_text="z₂", range=_cell_range(a), constrain="domain", showgrid=False, zeroline=False)
    fig.update_yaxes(scaleanchor="x", row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    fig.update_layout(coloraxis={"colorscale": DENSITY_SCALE, "cmin": 0.0, "cmax": top,
                                 "colorbar": {"title": {"text": "density", "side": "right"}, "thickness": 14}},
                      margin={**MARGIN, "t": 50}, height=400, plot_bgcolor="white")
    return fig


def kl_per_dimension(kl: Sequence[float], variances: Sequence[float], threshold: float,
                     title: str | None = None) -> go.Figure:
    """One bar per latent dimension: its mean KL (nats), coloured when the unit is active (Var_x of its posterior
    mean > ``threshold``) and grey when not."""
    kl, var = np.asarray(kl, dtype=np.float64).reshape(-1), np.asarray(variances, dtype=np.float64).reshape(-1)
    if kl.shape != var.shape:
        raise ValueError(f"variances: expected {len(kl)} values (one per dimension), got {len(var)}")
    names = np.array([f"z{j + 1}" for j in range(len(kl))])
    active = var > threshold
    fig = go.Figure()
    for flag, name, color in ((True, f"active: Var(μⱼ) > {threshold:g}", ACTIVE_COLOR),
                              (False, f"inactive: Var(μⱼ) ≤ {threshold:g}", INACTIVE_COLOR)):
        pick = active == flag
        fig.add_trace(go.Bar(x=names[pick], y=kl[pick], name=name, marker_color=color, customdata=var[pick],
                             showlegend=True,
                             hovertemplate="%{x}<br>KL %{y:.3f} nats<br>Var(μ) %{customdata:.3g}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="latent dimension", yaxis_title="mean KL (nats)", margin=MARGIN,
                      height=340, barmode="overlay", bargap=0.2,
                      xaxis={"categoryorder": "array", "categoryarray": list(names)},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.3, "x": 0})
    return fig
