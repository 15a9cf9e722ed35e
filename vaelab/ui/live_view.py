"""The live part of the panel: a fragment that takes the newest training state, then redraws.

With the worker backend (the app's default) training runs in a worker process and each run of the fragment only
takes the reports that have arrived (``session.advance``) and draws: every ``WORKER_REFRESH_SECONDS`` for the
progress, curves and reconstructions, every ``WORKER_VIEWS_REFRESH_SECONDS`` for the page's own pictures. Nothing
in the server trains, so nothing here takes a lock.

With the inline backend (AppTest's page tests) the fragment trains too. While the run is ``running`` the fragment
is registered with ``run_every``: each run trains for about
``chunk_seconds`` and redraws the progress bar, the loss curves and the reconstructions. Its timer
(``refresh_seconds``) is shorter than a run, so the next run is already queued when one ends and the runs follow
each other back to back (see ``REFRESH_SECONDS``). The page's own ``extra_views(session)`` live in a second fragment
with a slower timer (``VIEWS_REFRESH_SECONDS``). When the run stops (finished, error, paused elsewhere) the first
fragment asks for a full rerun, which registers both again without a timer. ``extra_views`` may return True when
it has work left (a reference model still training beside the page's own): its fragment then keeps its timer after
the run stops, until it returns False. No thread ever calls Streamlit.

Under ``streamlit.testing`` (AppTest) fragments do not tick on their own: every ``at.run()`` executes the whole
page, fragments included, so each ``run()`` advances one chunk.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import streamlit as st
import torch

from vaelab import plots
from vaelab.live_frames import fixed_test_indices, run_model, views_for
from vaelab.ui import session as state
from vaelab.ui.charts import show_chart
from vaelab.ui.images import show_image_rows
from vaelab.ui.lease import RunBusy
from vaelab.ui.live_stream import Region, live_region
from vaelab.ui.progress import progress_text
from vaelab.ui.session import TrainingSession, get_session

ExtraViews = Callable[[TrainingSession], bool | None]  # True: work left, redraw again soon
FIRST_CHUNK_SECONDS = 0.1  # a fresh run's first chunk: its loss curve is drawn sooner after Start
# Streamlit queues a timer rerun that arrives while the fragment runs (a click on a button still interrupts it at
# the next Streamlit call). With the timer shorter than a run (chunk + ~0.06 s of redraw), a run starts as soon as
# the last one ends: about 0.5 s per redraw, 85% of it training. With the earlier 0.5 s timer and 0.3 s chunks the
# server sat idle for ~0.25 s of every 0.6 s cycle (benchmarks/bench_live_ui.py, benchmarks/README.md).
REFRESH_SECONDS = 0.25
CHUNK_SECONDS = 0.45
# A page's own live pictures (filters, histograms, maps) change slowly; redrawing them with every chunk kept the
# browser's core busy re-creating charts (about 1.0 core while a page trained, on 2 cores), time the trainer lacked.
VIEWS_REFRESH_SECONDS = 1.5
# One live view trains or redraws at a time in this process. A redraw is Python work that holds the GIL, and a
# training step hands the GIL over at every torch call: a step that has to win it back from a busy thread each
# time ran 140x slower (two sessions training at once in one server: 7% of the single session's rate per step).
# Taking turns keeps every step at full speed; two sessions then share the time.
# Lock rules: a turn lock, for the inline backend only (tests; the app's workers never take it): held across one
# redraw with its chunk of training, the documented exception to "never across a call that may block". Order:
# LIVE_LOCK, then a run's lease (vaelab/ui/session.py), then training's GLOBAL_RNG_LOCK; none of them is ever
# taken the other way round.
LIVE_LOCK = threading.Lock()
# The loss chart is narrower than 1,000 px: more points only make every redraw slower as the run grows (the
# figure of 5,000 train rows: 330 kB of JSON and 0.1 s to build, drawn again twice a second). Test rows are capped
# too: on mnist-5k an epoch is 32 steps, so a 10-minute run logs about 2,000 of them.
MAX_DRAWN_ROWS = 1000  # per kind of row (train, test)
# With a worker the fragments only draw: the curves twice a second, the page's pictures every second (their
# caption's step stays within about 1.5 s of the progress line's).
WORKER_REFRESH_SECONDS = float(os.environ.get("VAELAB_REFRESH_SECONDS", 0.5))
WORKER_VIEWS_REFRESH_SECONDS = float(os.environ.get("VAELAB_VIEWS_REFRESH_SECONDS", 1.0))


def _lock_for(session: TrainingSession):
    """The inline backend trains in this process: its live views take turns (LIVE_LOCK); a worker's do not."""
    return LIVE_LOCK if session.backend == "inline" else nullcontext()


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
    terms = [t for t in plots.history_terms(history) if t not in exclude]
    return terms[:1] if len(terms) == 2 and terms[-1] == "total" else terms


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
    """The loss curves. With a worker the chart is one live chart for the page's whole life, drawn empty before a
    run: Start then fills the chart already loaded (a live chart's first load, its own copy of Plotly.js, took
    1.5 s of the first curve's 2 to 3 s), and Pause / Stop leave it in place."""
    log_y = st.toggle("Log scale", key=f"{key_prefix}.log_y", help="Loss axis on a log scale.")
    always = session.backend == "worker"
    if not session.history and not always:
        st.caption("Loss curves appear after the first steps.")
        return
    terms = curve_terms(session.history, exclude=getattr(session.model, "diagnostic_terms", ()))
    figure = plots.loss_curves(drawn_history(session.history), terms=terms, log_y=log_y)
    if not session.history:
        figure.add_annotation(text="Loss curves appear after the first steps.", showarrow=False, x=0.5, y=0.5,
                              xref="paper", yref="paper")
    show_chart(figure, key=f"{key_prefix}.curves", name=f"{session.variant} loss curves",
               live=always or session.running)


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


def chunk_budget(session: TrainingSession, chunk_seconds: float) -> float:
    """Seconds of training before this redraw: ``chunk_seconds``, less for the first chunk of a fresh run."""
    return min(chunk_seconds, FIRST_CHUNK_SECONDS) if session.step == 0 else chunk_seconds


def live_view(variant: str, *, key_prefix: str, extra_views: ExtraViews | None = None,
              refresh_seconds: float = REFRESH_SECONDS, chunk_seconds: float = CHUNK_SECONDS,
              views_refresh_seconds: float = VIEWS_REFRESH_SECONDS, n_images: int = 10,
              show_reconstructions: bool = True) -> None:
    """Progress, curves and reconstructions, advancing training while the run is running; then ``extra_views`` in a
    fragment of their own, redrawn every ``views_refresh_seconds`` while running or while they report work left
    (their widgets rerun only them)."""
    session = get_session(variant)
    if session.backend == "worker" and session.running:
        _streamed(session, key_prefix, extra_views, show_reconstructions)
        return
    registered_running = session.running
    registered_busy = session.views_busy
    if session.backend == "worker":
        refresh_seconds = max(refresh_seconds, WORKER_REFRESH_SECONDS)
        views_refresh_seconds = WORKER_VIEWS_REFRESH_SECONDS

    @st.fragment(run_every=refresh_seconds if registered_running else None)
    def _live() -> None:
        with _lock_for(get_session(variant)):
            _tick(variant, registered_running, key_prefix, chunk_seconds, n_images, show_reconstructions)

    _live()
    if extra_views is None:
        return

    timer = registered_running or registered_busy

    @st.fragment(run_every=views_refresh_seconds if timer else None)
    def _views() -> None:
        session = get_session(variant)
        if session.backend == "worker":
            state.advance(session, 0.0)  # the newest report first: the pictures show the weights of now
        state.new_redraw(session)  # its heavy summaries take turns (session.take_work_slot)
        with _lock_for(session):
            session.views_busy = bool(extra_views(session)) if session.has_model else False
        if (registered_running or session.views_busy) != timer:  # a change of `running` is _tick's to handle
            st.rerun(scope="app")  # register the fragment again with (or without) its timer

    _views()


STREAMED_TITLES = {"reconstructions": "Top: test images; bottom: reconstructions",
                   "denoised": "Top to bottom: test images, corrupted, cleaned",
                   "filters": "First-layer filters", "samples": "Samples", "codes": "Codes of",
                   "activations": "Mean activation ρ̂ⱼ of the code units", "manifold": "Manifold: z = Φ⁻¹(p)"}


def lesson_regions(session: TrainingSession) -> list[Region]:
    """The page's own live views (filters, the code map, samples), as the worker streams them."""
    regions = []
    for view in views_for(session.variant, session.model):
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
    if show_reconstructions or session.variant == "denoising":
        first = views_for(session.variant, session.model)[0].name  # reconstructions (denoising: its three rows)
        main.append(Region(first, "images", STREAMED_TITLES[first], scale=2))
    live_region(session, main, key=f"{key_prefix}.stream.{session.version}", columns=(3, 2), log_y=log_y)
    lesson = lesson_regions(session)
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


def _tick(variant: str, registered_running: bool, key_prefix: str, chunk_seconds: float, n_images: int,
          show_reconstructions: bool) -> None:
    """One run of the live fragment: a chunk of training, then the redraw of progress, curves, reconstructions."""
    session = get_session(variant)
    state.advance(session, chunk_budget(session, chunk_seconds))
    if session.running != registered_running:
        st.rerun(scope="app")  # re-register without (or with) the timer; redraw buttons and form
    session.redraws += 1
    if session.backend == "worker":  # the same elements in every state: the live loss chart is never re-created
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
        return
    _progress(session)
    if not session.has_model:
        _press_start()
        return
    if show_reconstructions:
        curves, pictures = st.columns([3, 2])
        with curves:
            _loss_chart(session, key_prefix)
        with pictures:
            _reconstructions(session, n_images)
    else:
        _loss_chart(session, key_prefix)


def _press_start() -> None:
    st.info("Press **Start** to train with the settings above, or load a saved model below.",
            icon=":material/play_circle:")
