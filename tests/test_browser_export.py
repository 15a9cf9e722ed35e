"""Export and steady drawing in a real browser (headless Chromium, the app served by ``streamlit run``; fixtures and
helpers from tests/test_browser.py):

- while a page trains, its charts are live charts (vaelab/ui/live_chart.py) that update in place: the same drawn
  chart from one redraw to the next, never blank, and its toolbar sits above the title;
- a chart looks the same live (in its frame) and still (``st.plotly_chart``, after Pause): same font, sizes and
  colours, so Pause does not restyle the page a class is looking at;
- a chart downloads as SVG and as PNG, named after the chart; an image grid downloads as a PNG whose metadata holds
  its caption (that a download does not rerun the page is checked in tests/test_pages_live_pictures.py).
"""

from __future__ import annotations

import re

import pytest

from tests.test_browser import WAIT_MS, _chart, _in_browser, _open_from_root_and_start, app_server
from vaelab.figure_export import read_png_text

pytestmark = pytest.mark.browser
__all__ = ["app_server"]  # the fixture, used by name

LIVE_CHART = 'iframe[title$="vaelab_live_chart"]'
# per live chart: [its title, whether Plotly has drawn it, its chart element (marked once, to see it stay)]
LIVE_CHARTS = """() => Array.from(document.querySelectorAll('iframe[title$="vaelab_live_chart"]')).map((frame, i) => {
    const chart = frame.contentDocument && frame.contentDocument.getElementById('chart');
    const svg = chart && chart.querySelector('.main-svg');
    if (chart && !chart.dataset.probe) chart.dataset.probe = String(Math.random());
    const title = chart && chart.querySelector('.gtitle');
    const drawn = Boolean(svg && chart.querySelector('.trace'));
    return [title ? title.textContent : '', drawn, chart ? chart.dataset.probe : null];
})"""


def test_live_charts_update_in_place_and_never_blank(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Autoencoder", epochs=500)  # outlasts the test
        page.wait_for_function(f"() => ({LIVE_CHARTS})().some(c => c[0].startsWith('Code values') && c[1])",
                               timeout=WAIT_MS)
        samples = []
        for _ in range(30):
            page.wait_for_timeout(200)
            samples.append(page.evaluate(LIVE_CHARTS))
        histograms = [next(c for c in s if c[0].startswith("Code values")) for s in samples]
        assert all(drawn for _, drawn, _ in histograms)  # drawn in every sample: never blank
        assert len({probe for _, _, probe in histograms}) == 1  # the same drawn chart, updated in place
        steps = [int(re.search(r"step ([\d,]+)", title).group(1).replace(",", "")) for title, _, _ in histograms]
        assert steps[-1] > steps[0]  # ... with the newest weights' figure
        frame = page.frame_locator(LIVE_CHART).nth(1)
        frame.locator(".main-svg").first.hover()
        buttons = frame.locator(".modebar-btn")
        titles = [buttons.nth(i).get_attribute("data-title") for i in range(buttons.count())]
        assert "Download plot as a PNG" in titles and "Download plot as SVG" in titles
        toolbar = title = None
        for _ in range(10):  # a redraw in place can hide the toolbar until the pointer moves again
            page.mouse.move(0, 0)
            frame.locator(".main-svg").first.hover()
            toolbar, title = frame.locator(".modebar").bounding_box(), frame.locator(".gtitle").bounding_box()
            if toolbar is not None and title is not None:
                break
        assert toolbar["y"] + toolbar["height"] <= title["y"] + 1  # the toolbar sits above the title, not over it

    _in_browser(app_server, "live-charts", check)


# a drawn chart's text: [font family, size, weight, fill] of its title and axis titles, and the axis titles' widths
# (the same words in the same font at the same size have the same width: the font is really there, not a fallback)
CHART_TEXT = """chart => {
    const parts = ['.gtitle', '.g-xtitle text', '.g-ytitle text'].map(sel => chart.querySelector(sel));
    if (parts.some(el => !el)) return null;
    const style = el => { const s = getComputedStyle(el); return [s.fontFamily, s.fontSize, s.fontWeight, s.fill]; };
    return {style: parts.map(style), widths: parts.slice(1).map(el => Math.round(el.getBBox().width))};
}"""
STILL_CHART = '[data-testid="stPlotlyChart"]'


def test_a_chart_looks_the_same_live_and_still(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Sparse autoencoder", epochs=500)  # outlasts the test
        live = _chart(page, "Mean activation")
        assert live.evaluate("chart => window.parent !== window")  # drawn in its frame: live
        live.locator(".g-ytitle text").wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(2000)  # a font that loads late would change the drawing meanwhile
        live_text = live.evaluate(CHART_TEXT)
        page.get_by_role("button", name="Pause").click()
        still = page.locator(STILL_CHART).filter(has_text="Mean activation")
        still.locator(".g-ytitle text").wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(1000)
        still_text = still.locator(".js-plotly-plot").first.evaluate(CHART_TEXT)
        assert live_text is not None and still_text is not None
        assert "Source Sans" in live_text["style"][0][0] and live_text["style"][0][2] == "700"  # the title in bold
        assert live_text["style"] == still_text["style"]
        assert all(abs(a - b) <= 1 for a, b in zip(live_text["widths"], still_text["widths"], strict=True)), \
            (live_text["widths"], still_text["widths"])

    _in_browser(app_server, "live-and-still", check)


def test_a_chart_downloads_as_svg_and_png_and_an_image_grid_as_png_with_its_caption(app_server, tmp_path):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Autoencoder", epochs=1)
        page.get_by_text(re.compile(r"^Finished")).first.wait_for(timeout=WAIT_MS)
        chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="Code values")
        chart.locator(".main-svg").first.wait_for(timeout=WAIT_MS)
        chart.hover()
        svg_button = chart.locator('[data-title="Download plot as SVG"]')
        svg_button.wait_for(timeout=WAIT_MS)  # added by the page's script (charts.install_figure_helpers)
        with page.expect_download(timeout=WAIT_MS) as svg_download:
            svg_button.click()
        with page.expect_download(timeout=WAIT_MS) as png_download:
            chart.locator('[data-title="Download plot as a PNG"]').click()
        svg, png = svg_download.value, png_download.value
        assert svg.suggested_filename == "autoencoder-code-values.svg"
        svg.save_as(tmp_path / "chart.svg")
        svg_text = (tmp_path / "chart.svg").read_text()
        assert svg_text.lstrip().startswith("<svg") and "Code values" in svg_text
        assert png.suggested_filename == "autoencoder-code-values.png"
        png.save_as(tmp_path / "chart.png")
        assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        caption = page.get_by_text(re.compile(r"^Top to bottom: test images, reconstructions")).first.inner_text()
        with page.expect_download(timeout=WAIT_MS) as grid_download:
            page.get_by_role("button", name="PNG", exact=True).first.click()  # the only image grid
        grid = grid_download.value
        assert grid.suggested_filename == "test-images-over-reconstructions.png"
        grid.save_as(tmp_path / "grid.png")
        text = read_png_text((tmp_path / "grid.png").read_bytes())
        assert text["Description"] == caption.strip() and text["Title"] == "test images over reconstructions"

    _in_browser(app_server, "export", check)

