"""A Plotly chart that a live redraw updates in place: a small Streamlit component around Plotly.js's ``react``.

Why: in Streamlit 1.67 ``st.plotly_chart`` gives every chart an id hashed from its figure, key or not, and the
browser keys the chart's React component on that id. A figure with new data is therefore a new component: the old
chart is removed and a new one mounted, blank until Plotly has drawn it again. During training every live chart is
rebuilt every redraw; on a busy machine the browser takes long enough over it that screenshots and a probe sampling
the page every 50 ms found charts blank in a quarter of the samples (README, "Steady under load"). Streamlit's own
fix (keyed charts that update in place) is not in 1.67.

This component keeps one iframe per chart key for good (a keyed component's identity is its key) and hands each new
figure to ``Plotly.react`` inside it, which updates the drawn chart in place: nothing is removed, nothing blanks.
Plotly.js comes from the plotly Python package itself (``package_data/plotly.min.js``), copied once next to the
component's page in a cache folder, so it works offline and adds no dependency. Its toolbar has the camera (PNG) and
an SVG button, both named after the chart (``charts.chart_config``). A click on a point reports the point's
``customdata`` (the clickable latent maps).

Used by :func:`vaelab.ui.charts.show_chart` for charts drawn while a run trains (``live=True``); a still page draws
``st.plotly_chart`` (its charts do not change, so they are never rebuilt).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
import plotly.io as pio
import streamlit.components.v1 as components

NAME = "vaelab_live_chart"
DEFAULT_HEIGHT = 450  # px: st.plotly_chart's height for a figure that sets none
# Streamlit's font ("Source Sans" since 1.4x, "Source Sans Pro" before): every chart, live or still, is drawn in it on
# the same white template (``house_style``), so Pause (a live chart becoming a still one) restyles nothing. A live
# chart's frame loads the font from the page's own style sheet (``loadFont``): the frame has none of its own.
FONT = '"Source Sans", "Source Sans Pro", sans-serif'
# Every figure is built on Plotly's plain white template (Plotly applies its default when a figure is made, without
# validating it again); setting it on each still chart instead validated the whole template: 12 ms a chart.
pio.templates.default = "plotly_white"
TITLE_WEIGHT = "bold"
FONT_WAIT_MS = 1500  # a chart waits at most this long for the font before it draws

# The page's "Source Sans" faces in a component's frame (both of this app's components use it).
LOAD_FONT_JS = """
// The page's "Source Sans" faces (Streamlit's style sheet, same origin) added to this frame, whose text would
// otherwise fall back to another font: a live chart then looks as the same chart drawn still. Never waits long.
function loadFont() {
  const faces = [];
  try {
    for (const sheet of window.parent.document.styleSheets) {
      let rules = [];
      try { rules = sheet.cssRules; } catch (error) { continue; }  // a sheet from another origin
      for (const rule of rules) {
        if (rule.type !== 5 || !/Source Sans/.test(rule.style.getPropertyValue("font-family"))) continue;  // @font-face
        const base = sheet.href || window.parent.location.href;
        const src = rule.style.getPropertyValue("src").replace(/url\\((['"]?)([^'")]+)\\1\\)/g,
          (match, quote, url) => 'url("' + new URL(url, base).href + '")');
        const face = new FontFace(rule.style.getPropertyValue("font-family").replace(/["']/g, ""), src, {
          weight: rule.style.getPropertyValue("font-weight") || "normal",
          style: rule.style.getPropertyValue("font-style") || "normal"});
        document.fonts.add(face);
        faces.push(face.load().catch(() => null));
      }
    }
  } catch (error) { /* not inside the app's page: the fallback font */ }
  return Promise.race([Promise.all(faces), new Promise(done => setTimeout(done, __FONT_WAIT_MS__))]);
}
""".replace("__FONT_WAIT_MS__", str(FONT_WAIT_MS))

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8">
<style>html, body { margin: 0; padding: 0; overflow: hidden; background: transparent; }</style>
</head><body><div id="chart"></div>
<script>
// Plotly.js (4.6 MB) once per browser tab: the first chart fetches it and leaves its text on the page that holds
// the charts (same origin); every later chart runs that text. Streamlit serves component files without a cache
// lifetime, so each chart used to download it again (and the server gzipped it again: about 0.4 s of its CPU),
// and a chart appearing during training stayed blank for seconds.
function loadPlotly() {
  let host = null;
  try { host = window.parent.document && window.parent; } catch (error) { host = null; }  // another origin
  const shared = host || {};
  if (!shared.__vaelabPlotly) {
    shared.__vaelabPlotly = fetch("plotly.min.js").then(response => {
      if (!response.ok) throw new Error("plotly.min.js: HTTP " + response.status);
      return response.text();
    });
    shared.__vaelabPlotly.catch(() => { shared.__vaelabPlotly = null; });  // the next chart tries again
  }
  return shared.__vaelabPlotly.then(source => {
    const script = document.createElement("script");
    script.textContent = source;
    document.head.appendChild(script);  // runs now: window.Plotly
  });
}
__LOAD_FONT__
Promise.all([loadPlotly(), loadFont()]).then(start);
function start() {
const chart = document.getElementById("chart");
let frameHeight = 0, clicks = 0, listening = false;
const send = (type, data) => window.parent.postMessage({isStreamlitMessage: true, type, ...data}, "*");
const SVG_ICON = Plotly.Icons.disk;  // the floppy disk: "save", beside the camera's PNG
// Drawing is most of what a training page costs the browser (Plotly.react: 3.6 of every 10 s of its main thread on
// the VAE page, which updates 8 charts; the worker trains on the core the browser leaves). So a chart draws a figure
// only when it differs from the one drawn, and a chart off screen (more than AHEAD px from the window) keeps its
// last drawing and draws the newest figure when it comes on screen: looked at when the page scrolls (Streamlit's
// main area scrolls, not the window) and when the chart's visibility changes (an expander opened).
const AHEAD = 200;
let lastArgs = null, pending = null, drawnOnce = false;
function onScreen() {
  let frame = null, height = 0;
  try { frame = window.frameElement; height = window.parent.innerHeight; } catch (error) { return true; }
  if (!frame) return true;  // not in a page this chart can see: always draw
  const box = frame.getBoundingClientRect();
  return box.width > 0 && box.bottom > -AHEAD && box.top < height + AHEAD;
}
function render(args) {
  const text = JSON.stringify(args);
  if (text === lastArgs) return;  // the same figure again (a summary worked out every few seconds)
  lastArgs = text;
  if (args.height !== frameHeight) {
    frameHeight = args.height;
    send("streamlit:setFrameHeight", {height: frameHeight});
  }
  if (drawnOnce && !onScreen()) { pending = args; return; }  // drawn when it comes on screen
  pending = null;
  draw(args);
}
let looking = false;
function drawIfOnScreen() {
  if (!pending || looking) return;
  looking = true;
  requestAnimationFrame(() => {
    looking = false;
    if (pending && onScreen()) { const args = pending; pending = null; draw(args); }
  });
}
try {
  const page = window.parent.document;
  page.addEventListener("scroll", drawIfOnScreen, {capture: true, passive: true});
  window.addEventListener("pagehide", () => page.removeEventListener("scroll", drawIfOnScreen, {capture: true}));
} catch (error) { /* another origin: every figure is drawn (onScreen) */ }
new IntersectionObserver(drawIfOnScreen).observe(chart);
// Margins that only grow: a redraw starts from the margins the last drawing settled on (its labels fitted them).
// Plotly's automargin otherwise starts each Plotly.react from the figure's own small margins, finds the tick labels
// do not fit and draws the whole chart a second time: half of every redraw (VAE page, in place: loss chart 72 -> 40
// ms, latent map 169 -> 86 ms). Labels that grow still push the margins out.
function grownMargin(margin) {
  const size = chart._fullLayout && chart._fullLayout._size;
  if (!size) return margin;
  const grown = {...margin};
  for (const side of ["l", "r", "t", "b"]) grown[side] = Math.max(margin[side] ?? 0, size[side]);
  return grown;
}
function draw(args) {
  drawnOnce = true;
  const layout = {...args.spec.layout, autosize: true, height: args.height};
  layout.margin = grownMargin(layout.margin || {});
  const config = {...args.config, responsive: true, showSendToCloud: false, showLink: false};
  config.modeBarButtonsToAdd = [{name: "svg", title: "Download plot as SVG", icon: SVG_ICON,
    click: gd => Plotly.downloadImage(gd, {format: "svg", filename: args.config.toImageButtonOptions.filename})}];
  chart.style.height = args.height + "px";
  Plotly.react(chart, args.spec.data, layout, config).then(() => {
    if (!listening && args.clickable) {
      listening = true;
      chart.on("plotly_click", event => {
        const point = event.points && event.points[0];
        if (point && point.customdata !== undefined) {
          clicks += 1;
          send("streamlit:setComponentValue", {value: {point: point.customdata, clicks}, dataType: "json"});
        }
      });
    }
  });
}
window.addEventListener("message", event => {
  if (event.data && event.data.type === "streamlit:render") render(event.data.args);
});
send("streamlit:componentReady", {apiVersion: 1});
}
</script></body></html>
""".replace("__LOAD_FONT__", LOAD_FONT_JS)


def component_dir(name: str = "live-chart", page: str = _PAGE) -> Path:
    """A component's folder (its page ``page`` and Plotly.js), made once per plotly version in the temporary
    folder (``vaelab-<name>-<version>``)."""
    folder = Path(tempfile.gettempdir()) / f"vaelab-{name}-{plotly.__version__}"
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    for file, write in (("plotly.min.js", lambda tmp: shutil.copyfile(source, tmp)),
                        ("index.html", lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))):
        target = folder / file
        if file == "plotly.min.js" and target.exists() and target.stat().st_size == source.stat().st_size:
            continue
        if file == "index.html" and target.exists() and target.read_text(encoding="utf-8") == page:
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{file}.")
        os.close(fd)
        write(tmp)
        os.replace(tmp, target)  # atomic: another server process never reads half a file
    return folder


_component: Callable[..., Any] | None = None


def _declared() -> Callable[..., Any]:
    global _component
    if _component is None:
        _component = components.declare_component(NAME, path=str(component_dir()))
    return _component


@functools.cache
def _white_template() -> dict[str, Any]:
    return json.loads(pio.to_json(go.Figure(layout={"template": "plotly_white"}), validate=False))["layout"]["template"]


def figure_spec(figure: go.Figure) -> dict[str, Any]:
    """The figure as Plotly.js reads it, in the house style (:func:`house_style`). Set on the JSON, not on a copy of
    the figure: copying and re-templating a figure took a quarter of the VAE page's redraw time."""
    spec = json.loads(pio.to_json(figure, validate=False))
    layout = spec.setdefault("layout", {})
    layout["template"] = _white_template()
    layout["font"] = {**layout.get("font", {}), "family": FONT}
    title = layout.get("title")
    if isinstance(title, dict):
        title["font"] = {**title.get("font", {}), "weight": TITLE_WEIGHT}
    return spec


def house_style(figure: go.Figure) -> go.Figure:
    """Every chart's look, live or still: Plotly's plain white template (the default this module sets) in
    Streamlit's font, the title in bold (as Streamlit's theme had it). A still chart is drawn with it and without
    Streamlit's own theme (``theme=None``), which restyled a chart (font, sizes, colours) the moment Pause turned it
    from live to still. Changes ``figure`` in place and returns it."""
    return figure.update_layout(font_family=FONT, title_font_weight=TITLE_WEIGHT)


def live_chart(figure: go.Figure, *, key: str, config: dict[str, Any], clickable: bool = False,
               on_click: Callable[[], None] | None = None) -> Any:
    """Draw ``figure`` in the chart component under ``key`` (the same iframe for every redraw). With ``clickable``,
    a click on a point sets the component's value to {"point": customdata, "clicks": n} and calls ``on_click``."""
    height = int(figure.layout.height or DEFAULT_HEIGHT)
    return _declared()(spec=figure_spec(figure), config=config, height=height, clickable=clickable, key=key,
                       default=None, on_change=on_click)
