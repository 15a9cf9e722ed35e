"""The live chart's page (vaelab/ui/live_chart.py) in headless Chromium, without Streamlit: a parent page holds two
chart frames, one on screen and one far below, and sends them Streamlit's render messages.

- Plotly.js is fetched once per tab, however many charts there are (Streamlit serves component files with no cache
  lifetime: each chart used to download its 4.6 MB again);
- a chart draws a figure once: the same figure sent again is not drawn again;
- a chart off screen is drawn once, then keeps its drawing until it comes on screen, where it draws the newest
  figure it was sent.
"""

from __future__ import annotations

import functools
import http.server
import threading

import plotly.graph_objects as go
import pytest

from tests.test_browser import CHROMIUM, LAUNCH_ARGS, WAIT_MS
from vaelab.ui.charts import chart_config
from vaelab.ui.live_chart import component_dir, figure_spec

pytestmark = pytest.mark.browser

PARENT = """<!doctype html><html><body style="margin:0">
<iframe id="top" src="index.html" style="width:600px;height:400px;border:0"></iframe>
<div style="height:4000px"></div>
<script>  // the second chart comes later, as charts appear on a page during training
  document.getElementById("top").addEventListener("load", () => setTimeout(() => {
    const frame = document.createElement("iframe");
    frame.id = "below"; frame.src = "index.html"; frame.style.cssText = "width:600px;height:400px;border:0";
    document.body.appendChild(frame);
  }, 500));
</script></body></html>"""


class _Files(http.server.SimpleHTTPRequestHandler):
    """The component's folder and the parent page, counting the requests for plotly.min.js."""

    fetched: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.startswith("/parent.html"):
            body = PARENT.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if "plotly.min.js" in self.path:
            _Files.fetched.append(self.path)
        super().do_GET()

    def send_header(self, keyword, value):  # as Streamlit serves component files: no validator, no lifetime
        if keyword != "Last-Modified":
            super().send_header(keyword, value)

    def end_headers(self):
        if "plotly.min.js" in self.path:
            super().send_header("Cache-Control", "public")
        super().end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def chart_server():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian's chromium; .ci/run installs it)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    _Files.fetched = []
    handler = functools.partial(_Files, directory=str(component_dir()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _args(title: str) -> dict:
    figure = go.Figure(go.Scatter(x=[0, 1, 2], y=[2, 1, 0]), layout={"title": title})
    return {"spec": figure_spec(figure), "config": chart_config(title), "height": 300, "clickable": False}


def _send(page, frame_id: str, title: str) -> None:
    page.evaluate("([id, args]) => document.getElementById(id).contentWindow.postMessage("
                  "{type: 'streamlit:render', args}, '*')", [frame_id, _args(title)])


def _title(page, frame_id: str) -> str:
    return page.evaluate("id => { const t = document.getElementById(id).contentDocument.querySelector('.gtitle');"
                         " return t ? t.textContent : ''; }", frame_id)


def _draws(page, frame_id: str) -> int:
    return page.evaluate("id => document.getElementById(id).contentWindow.__draws || 0", frame_id)


def test_plotly_is_fetched_once_and_a_chart_off_screen_draws_when_it_comes_on_screen(chart_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.goto(f"{chart_server}/parent.html")
            for frame_id in ("top", "below"):  # each chart ready: Plotly loaded in it
                page.wait_for_function("id => { const f = document.getElementById(id), w = f && f.contentWindow;"
                                       " return w && w.Plotly; }", arg=frame_id, timeout=WAIT_MS)
                page.evaluate("id => { const w = document.getElementById(id).contentWindow, react = w.Plotly.react;"
                              " w.__draws = 0; w.Plotly.react = (...a) => { w.__draws += 1; return react(...a); }; }",
                              frame_id)
            assert len(_Files.fetched) == 1, _Files.fetched  # one download for both charts

            for frame_id in ("top", "below"):  # the first figure: drawn on screen or not
                _send(page, frame_id, "first")
            for frame_id in ("top", "below"):
                page.wait_for_function("id => (document.getElementById(id).contentDocument.querySelector('.gtitle')"
                                       " || {}).textContent === 'first'", arg=frame_id, timeout=WAIT_MS)

            _send(page, "top", "first")  # the same figure again: not drawn again
            _send(page, "top", "second")
            _send(page, "below", "second")  # off screen: kept for later
            page.wait_for_function("() => (document.getElementById('top').contentDocument.querySelector('.gtitle')"
                                   " || {}).textContent === 'second'", timeout=WAIT_MS)
            page.wait_for_timeout(300)
            assert _draws(page, "top") == 2 and _title(page, "top") == "second"
            assert _draws(page, "below") == 1 and _title(page, "below") == "first"

            page.evaluate("() => document.getElementById('below').scrollIntoView()")
            page.wait_for_function("() => (document.getElementById('below').contentDocument.querySelector('.gtitle')"
                                   " || {}).textContent === 'second'", timeout=WAIT_MS)
            assert _draws(page, "below") == 2
        finally:
            browser.close()


def _figure_args(title: str, y: list[float]) -> dict:
    """A chart with the house margins (plots.MARGIN: 10 px left and bottom), whose tick labels push them out."""
    figure = go.Figure(go.Scatter(x=list(range(len(y))), y=y), layout={
        "title": title, "xaxis_title": "step", "yaxis_title": "loss", "margin": {"l": 10, "r": 10, "t": 40, "b": 10}})
    return {"spec": figure_spec(figure), "config": chart_config(title), "height": 300, "clickable": False}


def test_a_redraw_lays_the_chart_out_once_and_its_labels_still_fit(chart_server):
    """Plotly's automargin starts each Plotly.react from the figure's own margins; tick labels that do not fit them
    make it lay the chart out a second time (half of every live redraw's cost). The chart keeps the margins its
    last drawing settled on: a redraw with new data lays the plot area out once, at its settled width, and labels
    that grow still push the margins out."""
    from playwright.sync_api import sync_playwright

    labels_inside = """() => { const d = document.getElementById('top').contentDocument;
        const svg = d.querySelector('.main-svg').getBoundingClientRect();
        return Array.from(d.querySelectorAll('.ytick text, .ytitle, .xtick text, .xtitle')).every(t => {
            const b = t.getBoundingClientRect();
            return b.left >= svg.left - 0.5 && b.bottom <= svg.bottom + 0.5; }); }"""
    # every width the plot area's clip rectangle takes while the chart draws (a layout pass each)
    watch_widths = """() => { const w = document.getElementById('top').contentWindow;
        const gd = w.document.getElementById('chart');
        w.__widths = [];
        if (w.__watch) return;
        w.__watch = new w.MutationObserver(changes => { for (const c of changes) { const t = c.target;
            if (t.tagName === 'rect' && t.parentNode.id.includes('xyplot'))  // the width each change replaced
                w.__widths.push(c.oldValue === null ? null : Number(c.oldValue)); } });
        w.__watch.observe(gd, {subtree: true, attributeFilter: ['width'], attributeOldValue: true}); }"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.goto(f"{chart_server}/parent.html")
            page.wait_for_function("() => { const w = document.getElementById('top').contentWindow;"
                                   " return w && w.Plotly; }", timeout=WAIT_MS)

            def draw(title: str, y: list[float]) -> list[float]:
                """Send a figure and wait for it; the plot area's widths while it was drawn."""
                page.evaluate(watch_widths)
                page.evaluate("([id, args]) => document.getElementById(id).contentWindow.postMessage("
                              "{type: 'streamlit:render', args}, '*')", ["top", _figure_args(title, y)])
                page.wait_for_function(f"() => (document.getElementById('top').contentDocument.querySelector("
                                       f"'.gtitle') || {{}}).textContent === '{title}'", timeout=WAIT_MS)
                page.wait_for_timeout(300)  # a second layout, if any, comes after the first
                final = page.evaluate("() => document.getElementById('top').contentDocument.getElementById('chart')"
                                      "._fullLayout._size.w")
                return [*page.evaluate("() => document.getElementById('top').contentWindow.__widths"), final]

            draw("step 1", [5000.0, 4000.0, 3500.0])  # the first drawing finds its margins
            assert page.evaluate(labels_inside)
            settled = page.evaluate("() => document.getElementById('top').contentDocument.getElementById('chart')"
                                    "._fullLayout._size.w")
            widths = draw("step 2", [5000.0, 4000.0, 3500.0, 3200.0, 3100.0])  # new data, labels as wide
            assert set(widths) <= {settled, None}, widths  # never laid out at another width: once, as settled
            assert page.evaluate(labels_inside)
            draw("step 3", [100_000.0, 100_000.4, 100_000.8, 100_001.2])  # wider labels ("100,000.4")
            grown = page.evaluate("() => document.getElementById('top').contentDocument.getElementById('chart')"
                                  "._fullLayout._size.w")
            assert grown < settled and page.evaluate(labels_inside)  # the margins grew to fit them
        finally:
            browser.close()
