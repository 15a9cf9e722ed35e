"""The one way a page draws a Plotly chart: ``show_chart(figure, key=..., name=...)``.

``key`` names the chart for good (no per-redraw counter), so a live redraw updates the same element; ``name`` is the
exported file's name (the toolbar's camera button). Every chart of the app goes through here, so toolbar placement,
export formats and presenter sizing are decided in one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import streamlit as st


def file_stem(name: str) -> str:
    """'Loss curves (step 1,200)' -> 'loss-curves-step-1200': a portable file name."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", name.replace(",", "")).strip("-").lower()
    return stem or "figure"


def chart_config(name: str) -> dict[str, Any]:
    """Plotly's client config: the camera button saves a 2x PNG named after ``name``."""
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": file_stem(name), "scale": 2}}


def show_chart(figure: go.Figure, *, key: str, name: str, on_select: Callable[[], None] | str = "ignore",
               **kwargs: Any) -> Any:
    """Draw ``figure`` under the stable ``key``; ``name`` names its exported file."""
    return st.plotly_chart(figure, key=key, on_select=on_select, config=chart_config(name), **kwargs)
