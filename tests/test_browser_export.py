"""Export and steady drawing in a real browser (headless Chromium, the app served by ``streamlit run``; fixtures and
helpers from tests/test_browser.py):

- while a page trains, its loss chart is drawn by the live stream (vaelab/ui/live_stream.py) and grows in place:
  the same drawn chart from one frame to the next, never blank, with its PNG and SVG downloads;
- the loss chart looks the same streamed and still (``st.plotly_chart``, after Pause): same font, sizes and colours,
  so Pause does not restyle the page a class is looking at;
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

STREAM = 'iframe[title$="vaelab_live_stream"]'
# the streamed loss chart, in the first live region: [whether Plotly has drawn its lines, its element (marked once,
# to see it stay), its caption]
LOSS_CHART = """() => { const frame = document.querySelector('iframe[title$="vaelab_live_stream"]');
    const doc = frame && frame.contentDocument, chart = doc && doc.getElementById('view-losses');
    if (!chart) return [false, null, ''];
    if (!chart.dataset.probe) chart.dataset.probe = String(Math.random());
    const drawn = Array.from(chart.querySelectorAll('path.js-line')).some(p => (p.getAttribute('d') || '').length > 10);
    return [drawn, chart.dataset.probe, doc.getElementById('caption-losses').textContent]; }"""


def test_the_streamed_loss_chart_grows_in_place_and_never_blanks(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Autoencoder", epochs=500)  # outlasts the test
        page.wait_for_function(f"() => ({LOSS_CHART})()[0]", timeout=WAIT_MS)
        samples = []
        for _ in range(30):
            page.wait_for_timeout(200)
            samples.append(page.evaluate(LOSS_CHART))
        assert all(drawn for drawn, _, _ in samples)  # drawn in every sample: never blank
        assert len({probe for _, probe, _ in samples}) == 1  # the same drawn chart, extended in place
        steps = [int(re.search(r"step ([\d,]+)", caption).group(1).replace(",", "")) for _, _, caption in samples]
        assert steps[-1] > steps[0] and steps == sorted(steps)
        frame = page.frame_locator(STREAM).first
        frame.locator("#view-losses .main-svg").first.hover()
        buttons = frame.locator("#view-losses .modebar-btn")
        titles = [buttons.nth(i).get_attribute("data-title") for i in range(buttons.count())]
        assert "Download plot as a PNG" in titles and "Download plot as SVG" in titles

    _in_browser(app_server, "live-charts", check)


# a drawn chart's axis titles: [font family, size, weight, fill] and their widths (the same words in the same font at
# the same size have the same width: the font is really there, not a fallback)
AXIS_TEXT = """chart => {
    const parts = ['.g-xtitle text', '.g-ytitle text'].map(sel => chart.querySelector(sel));
    if (parts.some(el => !el)) return null;
    const style = el => { const s = getComputedStyle(el); return [s.fontFamily, s.fontSize, s.fontWeight, s.fill]; };
    return {style: parts.map(style), widths: parts.map(el => Math.round(el.getBBox().width))};
}"""


def test_the_loss_chart_looks_the_same_streamed_and_still(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Sparse autoencoder", epochs=500)  # outlasts the test
        page.wait_for_function(f"() => ({LOSS_CHART})()[0]", timeout=WAIT_MS)
        live = page.frame_locator(STREAM).first.locator("#view-losses")
        page.wait_for_timeout(2000)  # a font that loads late would change the drawing meanwhile
        live_text = live.evaluate(AXIS_TEXT)
        page.get_by_role("button", name="Pause").click()
        page.wait_for_function("() => !document.querySelector('iframe[title$=\"vaelab_live_stream\"]')",
                               timeout=WAIT_MS)  # the page drawn again, without the stream
        still = _chart(page, "loss per image")  # the page's own chart (vaelab/ui/live_chart.py or st.plotly_chart)
        still.locator(".g-ytitle text").first.wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(1000)
        still_text = still.evaluate(AXIS_TEXT)
        assert live_text is not None and still_text is not None
        assert "Source Sans" in live_text["style"][0][0]
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

