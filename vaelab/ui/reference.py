"""A reference model trained beside a page's own (e.g. the same net without its penalty), kept in
``st.session_state`` and advanced a bounded time per redraw towards the page model's step.

    reference = reference_beside(session, "contractive", mean_jacobian, lam=0.0)   # None without data
    if reference is not None and not reference.caught_up(session.step): ...        # keep the views' timer on

The reference is keyed on (its config, the data, the seed, the device), so it trains once for a given setting and a
rerun, a reset or a new run of the same setting finds it again; it only ever trains forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from vaelab.baselines import ReferenceRun, reference_run
from vaelab.ui.session import TrainingSession
from vaelab.ui.sidebar import current_settings
from vaelab.variants.base import Variant

# Seconds of reference training per redraw of the page's views: little while the page's model trains (the views
# redraw every 1.5 s then, and the model should keep most of the time), more once it is paused or finished.
RUNNING_SECONDS = 0.3
STOPPED_SECONDS = 1.5


def state_key(name: str) -> str:
    return f"vaelab.reference.{name}"


def reference_beside(session: TrainingSession, name: str, measure: Callable[[Variant], float],
                     **changes: Any) -> ReferenceRun | None:
    """The reference of ``session``'s model: its variant with ``session.config.replace(**changes)``, on the same
    data, seed and device, advanced towards ``session.step`` for up to ``RUNNING_SECONDS`` / ``STOPPED_SECONDS``.

    ``measure(model)`` is recorded along the way (see :class:`~vaelab.baselines.ReferenceRun`). None when the
    model's data is not loaded here (a view-only checkpoint)."""
    if session.data is None or session.config is None:
        return None
    settings = current_settings()
    trainer = session.trainer
    seed = trainer.seed if trainer is not None else settings.seed
    device = str(trainer.device) if trainer is not None else settings.device
    config = session.config.replace(**changes)
    key = repr((session.variant, config.to_dict(), session.data.spec, seed, device))
    found = st.session_state.get(state_key(name))
    if not (isinstance(found, dict) and found.get("key") == key):
        found = {"key": key, "run": reference_run(session.variant, session.config, session.data, measure,
                                                  seed=seed, device=device, **changes)}
        st.session_state[state_key(name)] = found
    run: ReferenceRun = found["run"]
    run.extend_to(session.step, RUNNING_SECONDS if session.running else STOPPED_SECONDS)
    return run
