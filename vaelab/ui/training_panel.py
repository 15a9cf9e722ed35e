"""The one training panel every page uses: config form, controls, live view, save / load.

    session = training_panel("sparse", extra_views=draw_filters)   # extra_views(session) redraws live
    if session.has_model: ...                                         # the page's non-live views

Split into: :mod:`vaelab.ui.session` (state), :mod:`vaelab.ui.controls` (buttons),
:mod:`vaelab.ui.live_view` (the fragment), :mod:`vaelab.ui.checkpoint_panel` (save / load),
:mod:`vaelab.ui.config_form` (hyper-parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from vaelab.budget import check_budget
from vaelab.config import BaseConfig, ConfigError
from vaelab.data import DataBundle
from vaelab.live_worker import warm_up_in_background
from vaelab.ui.checkpoint_panel import checkpoint_panel
from vaelab.ui.classroom_panel import lesson_model_button
from vaelab.ui.config_form import config_form, default_prefix
from vaelab.ui.controls import render_controls
from vaelab.ui.live_relay import start_relay
from vaelab.ui.live_view import ExtraViews, live_view
from vaelab.ui.run_downloads import run_downloads
from vaelab.ui.session import TrainingSession, get_session
from vaelab.ui.sidebar import current_settings


def panel_prefix(variant_key: str) -> str:
    return f"panel.{variant_key}"


def within_budget(variant_key: str, config: BaseConfig, data: DataBundle) -> BaseConfig | None:
    """The config, or None after an error naming the fields when training it would exceed the memory budget."""
    try:
        check_budget(variant_key, config, data.input_dim, data.n_classes)
    except ConfigError as error:
        st.error(str(error), icon=":material/memory:")
        return None
    return config


def training_panel(variant_key: str, *, extra_views: ExtraViews | None = None,
                   defaults: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None,
                   n_images: int = 10, show_reconstructions: bool = True) -> TrainingSession:
    """Draw the panel for one variant and return its session (``session.model`` is None until trained/loaded).

    extra_views: ``f(session)`` drawn below the curves once a model exists: while the run trains, on demand
        ("Explore the model now"; the stream shows the live pictures), else at every page run.
    defaults / fixed: passed to :func:`config_form` (starting values / values the page sets with its own widgets).
    n_images: fixed test images shown as original-over-reconstruction rows (one per class first).
    show_reconstructions: False when the page draws its own (e.g. the denoising page's three rows).
    """
    settings = current_settings()
    session = get_session(variant_key)
    warm_up_in_background()  # the first Start then needs no imports
    start_relay()  # once per process: the reports of every run that trains are brought in and relayed
    prefix = panel_prefix(variant_key)
    form_prefix = default_prefix(variant_key)
    locked = session.trainer is not None
    lesson_model_button(session, prefix, form_prefix)
    with st.expander("Hyper-parameters", expanded=not locked, icon=":material/tune:"):
        if locked:
            st.caption("Read-only while a run exists: **Stop / Reset** to change them.")
        config = config_form(variant_key, form_prefix, defaults=defaults, fixed=fixed, disabled=locked)
        if config is not None and not locked:
            config = within_budget(variant_key, config, settings.data)
    render_controls(session, config, settings, prefix)
    live_view(variant_key, key_prefix=prefix, extra_views=extra_views, n_images=n_images,
              show_reconstructions=show_reconstructions)
    with st.expander("Save / load", icon=":material/save:"):
        checkpoint_panel(session, prefix, form_prefix)
    run_downloads(session, prefix)
    return session
