"""The live part of the panel: what a run shows while it trains, and once it stands still.

While the run trains (in its worker process, vaelab/live_worker.py) the page draws its live regions once, as
components the browser feeds from the run's stream (vaelab/ui/live_stream.py): the progress line, the loss curves,
the reconstructions and the page's own live pictures. No script reruns meanwhile; the end of the run reruns the page.
The page's other pictures (``extra_views``) are drawn on demand then ("Explore the model now"), under the run's lease
so that the relay brings no weights in while they are drawn.

Once the run stands still (paused, finished, loaded, failed) the page draws its still pictures: progress, the loss
chart (one live chart for the page's life, vaelab/ui/live_chart.py), reconstructions and ``extra_views``. An
``extra_views`` that returns True has work left (a reference model catching up beside the page's own): it is drawn
again every ``BUSY_REFRESH_SECONDS`` in a fragment of its own until it returns False.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import streamlit as st
import torch

from vaelab import plots
from vaelab.live_frames import LiveView, fixed_test_indices, run_model, views_for
from vaelab.ui.charts import show_chart
from vaelab.ui.images import show_image_rows
from vaelab.ui.lease import RunBusy
from vaelab.ui.live_stream import Region, live_region
from vaelab.ui.progress import progress_text
from vaelab.ui.session import TrainingSession, get_session

ExtraViews = Callable[[TrainingSession], bool | None]  # True: work left, redraw again soon
BUSY_REFRESH_SECONDS = 1.0  # how often views with work left are drawn again once the run stands still
# The loss chart is narrower than 1,000 px: more points only make every redraw slower as the run grows (the
# figure of 5,000 train rows: 330 kB of JSON and 0.1 s to build, drawn again twice a second). Test rows are capped
# too: on mnist-5k an epoch is 32 steps, so a 10-minute run logs about 2,000 of them.
MAX_DRAWN_ROWS = 1000  # per kind of row (train, test)


def _progress(session: TrainingSession) -> None:
    trainer = session.trainer
    if trainer is not None:
        st.progress(trainer.progress, text=progress_text(trainer, session.running))
    elif session.checkpoint is not None:
        meta = session.checkpoint.meta
        st.caption(f"Stored run: {meta.get('epochs', '?')} epochs, {meta.get('steps', '?')} steps.")


def curve_terms(history: list[dict], exclude: Sequence[str] = ()) -> list[str]:
    """Every loss term but ``exclude`` (a model's ``diagnostic_terms``), and without a 'total' that only repeats
    the single other term (e.g. a plain autoencoder)."""
    return plots.drawn_terms([t for t in plots.history_terms(history) if t not in exclude])


def _thinned(rows: list[dict], max_rows: int) -> list[dict]:
    """At most ``max_rows`` rows, each the mean of consecutive rows (every numeric field; ``step`` the group's last)."""
    if len(rows) <= max_rows:
        return rows
    size = math.ceil(len(rows) / max_rows)
    merged = []
    for start in range(0, len(rows), size):
        group = rows[start:start + size]
        row = dict(group[-1])
        for name, value in group[-1].items():
            if name != "step" and isinstance(value, int | float) and all(name in r for r in group):
                row[name] = sum(r[name] for r in group) / len(group)
        merged.append(row)
    return merged


def drawn_history(history: list[dict], max_rows: int = MAX_DRAWN_ROWS) -> list[dict]:
    """The rows the loss chart draws: the train rows, then the test rows, each kind thinned to at most ``max_rows``
    (see :func:`_thinned`); other rows as they are. A history within the cap is returned unchanged."""
    kinds = ("train", "test")
    by_kind = {kind: [r for r in history if r.get("kind") == kind] for kind in kinds}
    if all(len(rows) <= max_rows for rows in by_kind.values()):
        return history
    return [row for kind in kinds for row in _thinned(by_kind[kind], max_rows)] + \
        [r for r in history if r.get("kind") not in kinds]


def _loss_chart(session: TrainingSession, key_prefix: str) -> None:
    """The loss curves of a run that stands still: one live chart for the page's whole life, drawn empty before a
    run (a live chart's first load, its own copy of Plotly.js, took 1.5 s), that Pause / Stop leave in place."""
    log_y = st.toggle("Log scale", key=f"{key_prefix}.log_y", help="Loss axis on a log scale.")
    terms = curve_terms(session.history, exclude=getattr(session.model, "diagnostic_terms", ()))
    figure = plots.loss_curves(drawn_history(session.history), terms=terms, log_y=log_y)
    if not session.history:
        figure.add_annotation(text="Loss curves appear after the first steps.", showarrow=False, x=0.5, y=0.5,
                              xref="paper", yref="paper")
    show_chart(figure, key=f"{key_prefix}.curves", name=f"{session.variant} loss curves", live=True)


def reconstruction_rows(session: TrainingSession, n_images: int) -> list[torch.Tensor] | None:
    """[originals (n, D), reconstructions (n, D)] of fixed test images, or None without a model."""
    model, data = session.model, session.data
    if model is None or data is None:
        return None
    idx = fixed_test_indices(data.test.labels, n_images)
    x, y = data.test.images[idx], data.test.labels[idx]  # (n, D), (n,)
    recon = run_model(model, model.reconstruct, x, y if model.uses_labels else None)  # (n, D)
    return [x, recon]


def _reconstructions(session: TrainingSession, n_images: int) -> None:
    rows = reconstruction_rows(session, n_images)
    if rows is not None:
        show_image_rows(rows, session.data.image_shape, row_names=["test images", "reconstructions"],
                        caption=f"step {session.step:,}")


def live_view(variant: str, *, key_prefix: str, extra_views: ExtraViews | None = None, n_images: int = 10,
              show_reconstructions: bool = True) -> None:
    """The run streamed while it trains; else its still pictures, then ``extra_views`` (module docstring)."""
    session = get_session(variant)
    if session.running:
        _streamed(session, key_prefix, extra_views, show_reconstructions)
        return
    _still(session, key_prefix, n_images, show_reconstructions)
    if extra_views is None:
        return
    busy = session.views_busy

    @st.fragment(run_every=BUSY_REFRESH_SECONDS if busy else None)
    def _views() -> None:
        current = get_session(variant)
        current.views_busy = bool(extra_views(current)) if current.has_model else False
        if current.views_busy != busy or current.running:
            st.rerun(scope="app")  # register the fragment again with (or without) its timer

    _views()


STREAMED_TITLES = {"reconstructions": "Top: test images; bottom: reconstructions",
                   "denoised": "Top to bottom: test images, corrupted, cleaned",
                   "filters": "First-layer filters", "samples": "Samples", "codes": "Codes of",
                   "activations": "Mean activation ρ̂ⱼ of the code units", "manifold": "Manifold: z = Φ⁻¹(p)"}


def lesson_regions(views: list[LiveView]) -> list[Region]:
    """The page's own live views among ``views`` (filters, activations, the code map, the manifold, samples)."""
    regions = []
    for view in views:
        if view.name == "filters":
            regions.append(Region("filters", "images", STREAMED_TITLES["filters"], ncols=16, scale=2))
        elif view.name == "codes":
            regions.append(Region("codes", "scatter", STREAMED_TITLES["codes"], height=360))
        elif view.name == "samples":
            regions.append(Region("samples", "images", STREAMED_TITLES["samples"], ncols=5, scale=2))
        elif view.name == "activations":
            regions.append(Region("activations", "bars", STREAMED_TITLES["activations"], height=260))
        elif view.name == "manifold":
            regions.append(Region("manifold", "images", STREAMED_TITLES["manifold"], ncols=15, scale=1))
    return regions


def _streamed(session: TrainingSession, key_prefix: str, extra_views: ExtraViews | None,
              show_reconstructions: bool) -> None:
    """A worker run that trains: progress, curves and pictures come from its stream, drawn by the browser; the
    page's other views are drawn once, from the weights of now (a widget redraws them, and so does the end of the
    run)."""
    log_y = st.toggle("Log scale", key=f"{key_prefix}.log_y", help="Loss axis on a log scale.")
    main = [Region("progress", "progress", span=2), Region("losses", "losses", "Loss curves", height=380,
                                                             waiting="Loss curves appear after the first steps.")]
    views = views_for(session.variant, session.model)
    if show_reconstructions or session.variant == "denoising":
        first = views[0].name  # reconstructions (denoising: its three rows)
        main.append(Region(first, "images", STREAMED_TITLES[first], scale=2))
    live_region(session, main, key=f"{key_prefix}.stream.{session.version}", columns=(3, 2), log_y=log_y)
    lesson = lesson_regions(views)
    if lesson:
        live_region(session, lesson, key=f"{key_prefix}.stream_lesson.{session.version}",
                    columns=tuple(2 if r.kind == "scatter" else 1 for r in lesson))
    if extra_views is None or not session.has_model:
        return
    explore = st.toggle("Explore the model now", key=f"{key_prefix}.explore_live",
                        help="Draw the page's other pictures (and their controls) from the weights of this moment. "
                             "They are drawn once, and again at each change of a control; Pause or the end of "
                             "the run draws them all.")
    if explore:
        try:
            with session.lease.driving():  # the relay brings no weights in while they are drawn from
                st.caption(f"Drawn at step {session.step:,}: a control you change draws them again at the step of "
                           "then.")
                extra_views(session)
        except RunBusy as busy:
            st.info(f"Not drawn now: {busy}.")
    else:
        st.caption("The pictures above follow training as it runs. The page's other pictures are drawn when "
                   "training pauses or ends, or now with **Explore the model now**.")


def _still(session: TrainingSession, key_prefix: str, n_images: int, show_reconstructions: bool) -> None:
    """Progress, curves and reconstructions of a run that stands still. The same elements in every state: the loss
    chart is one live chart for the page's life, never re-created."""
    with st.empty():
        _progress(session)
    curves, pictures = st.columns([3, 2])
    with curves:
        _loss_chart(session, key_prefix)
    with pictures:
        if not session.has_model:
            _press_start()
        elif show_reconstructions:
            _reconstructions(session, n_images)


def _press_start() -> None:
    st.info("Press **Start** to train with the settings above, or load a saved model below.",
            icon=":material/play_circle:")
