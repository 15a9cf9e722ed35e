"""The one way a page draws a Plotly chart: ``show_chart(figure, key=..., name=...)``.

``key`` names the chart for good (no per-redraw counter); ``name`` is the exported file's name. Every chart of the
app goes through here, so live drawing, the toolbar's placement and the export formats are decided once:

- Live: a chart redrawn while a run trains (``live=True``) is drawn by :mod:`vaelab.ui.live_chart`, which updates it
  in place. ``st.plotly_chart`` (Streamlit 1.67) identifies a chart by a hash of its figure, key or not, and the
  browser re-creates the chart whenever that id changes: with new data every redraw, the chart was removed and
  rebuilt, blank until Plotly had drawn it again (the empty charts seen during training on a busy machine). A chart
  that does not change (a still page) keeps ``st.plotly_chart``, drawn in the same house style
  (:func:`vaelab.ui.live_chart.house_style`, without Streamlit's theme): Pause restyles nothing.

- Plotly's toolbar (modebar) shows at the top right of a chart on hover, over whatever is there. Here a chart with
  a title gets a band of ``TOOLBAR_BAND`` px at its top for the toolbar alone (the title pinned below it), and a
  chart with a legend above its plot, whose rows are not known before the browser lays it out, gets the toolbar as a
  column of buttons in a band at its right instead; so no title or legend is covered (:func:`clear_of_toolbar`).
- Export: the toolbar's camera saves a 2x PNG named after ``name``; a second button beside it saves the same chart as
  SVG, written by Plotly.js in the browser: no server work, nothing to install (kaleido would need a Chrome on the
  server), and it works offline. A live chart has it in its own toolbar (:mod:`vaelab.ui.live_chart`); for
  ``st.plotly_chart``, whose config cannot take a button (a custom button needs a JavaScript function),
  :func:`install_figure_helpers` puts a small script on the page that adds one to every chart's toolbar. The app calls
  it once per run (``app.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from vaelab.figure_export import file_stem
from vaelab.ui.live_chart import house_style

__all__ = ["TOOLBAR_BAND", "chart_config", "clear_of_toolbar", "file_stem", "install_figure_helpers", "live_key",
           "show_chart"]

TOOLBAR_BAND = 30  # px at the top of a chart kept for Plotly's toolbar (a 22 px row of buttons and its padding)
TITLE_LINE = 18  # px: each further line of a title (a <br> in it)
DEFAULT_TOP = 40  # px: top margin of a chart whose figure sets none (the house margin, plots.MARGIN)
DEFAULT_RIGHT = 10  # px: right margin of a chart whose figure sets none (plots.MARGIN)
SVG_BUTTON_TITLE = "Download plot as SVG"


def chart_config(name: str) -> dict[str, Any]:
    """Plotly's client config: the camera button saves a 2x PNG named after ``name``; the lasso and box selection
    buttons go (no chart here selects areas), so the toolbar is short."""
    return {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
            "toImageButtonOptions": {"format": "png", "filename": file_stem(name), "scale": 2}}


def _has_title(figure: go.Figure) -> bool:
    return bool(figure.layout.title.text)


def _legend_on_top(figure: go.Figure) -> bool:
    legend = figure.layout.legend
    return legend.y is not None and legend.y >= 1.0 and legend.yanchor in ("bottom", None)


def clear_of_toolbar(figure: go.Figure, band: int = TOOLBAR_BAND) -> go.Figure:
    """Keep the toolbar off a chart's title and legend. A legend above the plot (its rows, as many as the chart's
    width makes them, are unknown here) keeps the top: the toolbar becomes a column of buttons in a band of ``band``
    px added at the chart's right, beside the plot and its legend. Otherwise a chart with a title keeps its top
    ``band`` px for the toolbar: the title pinned just below it, the plot ``band`` px lower. A title of several lines
    gets ``TITLE_LINE`` px more for each further line; the height grows as the margins do when the figure sets one.
    Changes ``figure`` in place (once: a second call leaves it) and returns it."""
    on_top, titled = _legend_on_top(figure), _has_title(figure)
    if not (titled or on_top) or figure.layout.meta == "clear-of-toolbar":
        return figure
    top = figure.layout.margin.t if figure.layout.margin.t is not None else DEFAULT_TOP
    lines = TITLE_LINE * str(figure.layout.title.text or "").count("<br>")  # a title of several lines
    figure.update_layout(meta="clear-of-toolbar")
    if on_top:
        right = figure.layout.margin.r if figure.layout.margin.r is not None else DEFAULT_RIGHT
        figure.update_layout(modebar={"orientation": "v"}, margin={"r": right + band, "t": top + lines})
        extra = lines
    else:  # Plotly anchors a title of several lines a line too high per further line: the pad makes up for it
        extra = band + 2 * lines
        figure.update_layout(margin={"t": top + extra},
                             title={"yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": band + lines}})
    if figure.layout.height is not None and extra:
        figure.update_layout(height=figure.layout.height + extra)
    return figure


def live_key(key: str) -> str:
    """The key of a chart's live (component) form: distinct from its still form's, whose state is another kind."""
    return f"{key}.live"


def show_chart(figure: go.Figure, *, key: str, name: str, live: bool = False,
               on_select: Callable[[], None] | str = "ignore", **kwargs: Any) -> Any:
    """Draw ``figure`` under the stable ``key``, clear of the toolbar; ``name`` names its exported files.

    ``live``: the chart is redrawn while a run trains (pass ``session.running``): it is drawn by
    :func:`vaelab.ui.live_chart.live_chart`, which updates it in place, instead of ``st.plotly_chart``, which
    re-creates it (blank meanwhile) whenever its data change. A callable ``on_select`` then runs on a click on a point
    (the point's customdata in ``st.session_state[live_key(key)]["point"]``)."""
    figure = clear_of_toolbar(figure)
    if live:
        from vaelab.ui.live_chart import live_chart  # writes the component's files on first use

        clickable = callable(on_select)
        return live_chart(figure, key=live_key(key), config=chart_config(name), clickable=clickable,
                          on_click=on_select if clickable else None)
    return st.plotly_chart(house_style(figure), key=key, on_select=on_select, config=chart_config(name), theme=None,
                           **kwargs)


# Adds an "SVG" button beside the camera of every Plotly toolbar on the page, now and whenever a toolbar is (re)built
# (Plotly rebuilds it when a chart's buttons change). A click saves the chart as SVG through the camera's own code:
# the chart's toImageButtonOptions format is "svg" for the length of that one synchronous click, so the file gets
# the same name (``chart_config``). Installed once per browser tab (window flag).
_SVG_EXPORT_SCRIPT = """
<script>
(() => {
  if (window.__vaelabSvgExport) return;
  window.__vaelabSvgExport = true;
  const TITLE = "__TITLE__";
  const NS = "http://www.w3.org/2000/svg";
  function icon() {  // built node by node: Streamlit's sanitiser drops a script whose text holds markup
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 30 16"); svg.setAttribute("width", "24"); svg.setAttribute("height", "13");
    const text = document.createElementNS(NS, "text");
    text.setAttribute("x", "0"); text.setAttribute("y", "12.5"); text.setAttribute("font-size", "12");
    text.setAttribute("font-family", "sans-serif"); text.setAttribute("font-weight", "700");
    text.setAttribute("fill", "currentColor");
    text.textContent = "SVG";
    svg.appendChild(text);
    return svg;
  }
  function addButton(camera) {
    const group = camera.parentElement;
    if (!group || group.querySelector('[data-vaelab-svg]')) return;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'modebar-btn';
    button.setAttribute('rel', 'tooltip');
    button.setAttribute('data-title', TITLE);
    button.setAttribute('aria-label', TITLE);
    button.setAttribute('data-vaelab-svg', '1');
    button.style.color = getComputedStyle(camera.querySelector('path') || camera).fill || 'rgba(68,68,68,0.3)';
    button.appendChild(icon());
    button.addEventListener('click', (event) => {
      event.preventDefault();
      event.stopPropagation();
      const chart = button.closest('.js-plotly-plot');
      const options = chart && chart._context && chart._context.toImageButtonOptions;
      if (!options) return;
      const format = options.format;
      options.format = 'svg';
      try { camera.click(); } finally { options.format = format; }
    });
    camera.insertAdjacentElement('afterend', button);
  }
  function scan() {
    document.querySelectorAll('.js-plotly-plot .modebar-btn[data-title^="Download plot"]').forEach((camera) => {
      if (!camera.hasAttribute('data-vaelab-svg')) addButton(camera);
    });
  }
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; scan(); });
  }).observe(document.body, {childList: true, subtree: true});
  scan();
})();
</script>
""".replace("__TITLE__", SVG_BUTTON_TITLE)


def install_figure_helpers() -> None:
    """Put the SVG export script and the inline pictures' size rule (``images.IMAGE_STYLE``) on the page, in the
    sidebar, where their empty element takes no room from a page. Call once per full run of the app, outside
    fragments."""
    from vaelab.ui.images import IMAGE_STYLE

    with st.sidebar:
        st.html(IMAGE_STYLE + _SVG_EXPORT_SCRIPT, unsafe_allow_javascript=True)
