"""The live regions of a page while its run trains: a component mounted once, fed by the run's stream.

    live_region(session, [Region("progress", "progress"), Region("losses", "losses")], key="vae.live.main")

The component (``live_stream.js``, a Streamlit v1 component) subscribes to the run's frames over the app server's
WebSocket route (:data:`vaelab.frame_stream.LIVE_PATH`) with the session's subscription token, and draws them in
the browser: Plotly for the loss curves, canvases for image grids and code maps. The server relays the worker's
frames (:mod:`vaelab.ui.live_relay`); no script reruns while the run trains. When the run stops training, the
component sets its value once, which reruns the page: the page then draws its still pictures.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import streamlit.components.v1 as components

from vaelab.frame_stream import LIVE_PATH
from vaelab.plots import CLASS_COLORS, TERM_COLORS
from vaelab.ui.live_chart import FONT, LOAD_FONT_JS, _white_template, component_dir
from vaelab.ui.live_relay import stream_token
from vaelab.ui.session import TrainingSession

NAME = "vaelab_live_stream"
KINDS = ("progress", "losses", "images", "scatter", "bars")


@dataclass(frozen=True)
class Region:
    """One drawn view: ``view`` (the frame's name), how it is drawn (``kind``), its caption's start, and for
    images the upscale, the tiles per row and the names of the rows."""

    view: str
    kind: str
    title: str = ""
    span: int = 1  # grid columns it covers
    scale: int | None = None
    ncols: int | None = None
    height: int | None = None
    axes: tuple[str, str] | None = None
    waiting: str | None = None  # the caption before the first frame

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)} (got {self.kind!r})")


@cache
def page_html() -> str:
    script = (Path(__file__).with_name("live_stream.js").read_text(encoding="utf-8")
              .replace("__CLASS_COLORS__", json.dumps(list(CLASS_COLORS)))
              .replace("__TERM_COLORS__", json.dumps(list(TERM_COLORS)))
              .replace("__LOAD_FONT__", LOAD_FONT_JS))
    return f"""<!doctype html>
<html><head><meta charset="utf-8">
<style>
html, body {{ margin: 0; padding: 0; overflow: hidden; background: transparent; font-family: {FONT};
  color: rgb(49, 51, 63); }}
#root {{ display: grid; gap: 12px; align-items: start; }}
.caption {{ font-size: 14px; color: rgba(49, 51, 63, 0.6); margin-top: 4px; }}
.progress .text {{ font-size: 14px; margin-bottom: 6px; }}
.progress .bar {{ height: 8px; border-radius: 4px; background: rgba(151, 166, 195, 0.25); }}
.progress .bar div {{ height: 8px; border-radius: 4px; background: rgb(255, 75, 75); width: 0; }}
canvas {{ image-rendering: pixelated; display: block; }}
</style></head><body><div id="root"></div>
<script>{script}</script></body></html>
"""


_component: Any = None


def _declared() -> Any:
    global _component
    if _component is None:
        _component = components.declare_component(NAME, path=str(component_dir("live-stream", page_html())))
    return _component


def live_region(session: TrainingSession, regions: list[Region], *, key: str, columns: tuple[int, ...] = (1,),
                log_y: bool = False, name: str = "") -> Any:
    """Draw ``regions`` of ``session``'s live stream in one component (a grid of ``columns`` relative widths).
    Its value changes once, when the run stops training (the page reruns)."""
    return _declared()(
        token=stream_token(session), path=LIVE_PATH, regions=[asdict(r) for r in regions], columns=list(columns),
        version=session.version, log_y=log_y, template=_white_template(), font=FONT, name=name or session.variant,
        key=key, default=None)
