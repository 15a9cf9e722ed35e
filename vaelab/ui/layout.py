"""Small layout helpers the pages share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from vaelab.training import Trainer
from vaelab.ui.progress import progress_text
from vaelab.ui.session import TrainingSession

T = TypeVar("T")


def side_by_side(session: TrainingSession, *views: Callable[[TrainingSession], None]) -> None:
    """Draw each ``view(session)`` in its own column, the columns equally wide, left to right."""
    for column, view in zip(st.columns(len(views)), views, strict=True):
        with column:
            view(session)


def train_under_progress_bar(train: Callable[[Callable[[Trainer], None]], T], start_text: str,
                             text: Callable[[Trainer], str] = progress_text) -> T:
    """Train a model in place (a companion or baseline beside the page's own) and return what ``train`` returns.

    ``train(on_progress)`` must call ``on_progress(trainer)`` after each chunk: the bar follows ``trainer.progress``
    with ``text(trainer)``. The bar goes away when training ends, also when ``train`` raises."""
    bar = st.progress(0.0, text=start_text)
    try:
        return train(lambda trainer: bar.progress(trainer.progress, text=text(trainer)))
    finally:
        bar.empty()
