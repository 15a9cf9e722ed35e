"""One real-browser test: the app served by ``streamlit run`` and driven by Playwright in Debian's headless Chromium.

From the root URL, open a page through its sidebar link, press Start, and see the live loss chart (a Plotly chart
with lines) and the page's picture appear: the filter grid on the Sparse autoencoder page, the latent map of test
codes on the VAE page. A failing run leaves a screenshot and the server's
log in ``test-artifacts/``. Skipped where /usr/bin/chromium or the playwright package is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
SERVER_START_S = 60
WAIT_MS = 45_000  # generous: a busy CI machine renders slowly, a quiet one takes a few seconds

# the filter grid: an image captioned "...encoder weights...", loaded, at least 12 tiles of 28 px wide
FILTER_GRID_LOADED = """() => Array.from(document.querySelectorAll('[data-testid="stImageContainer"]')).some(
    box => box.innerText.includes("encoder weights")
        && Array.from(box.querySelectorAll("img")).some(img => img.complete && img.naturalWidth >= 12 * 28))"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"no /_stcore/health answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    url: str
    log: Path
    process: subprocess.Popen
    port: int
    tmp_path: Path


def _launch(port: int, tmp_path: Path, log: Path) -> subprocess.Popen:
    """``streamlit run app.py`` on ``port`` with the offline dataset and checkpoints under ``tmp_path``."""
    env = {**os.environ, "VAELAB_DATASET": "mnist-5k", "VAELAB_CHECKPOINT_DIR": str(tmp_path / "checkpoints")}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]
    with log.open("a") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def app_server(tmp_path):
    """The app served on a free localhost port with the offline dataset; the server always stops afterwards."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian's chromium; .ci/run installs it)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    port = _free_port()
    log = tmp_path / "streamlit.log"
    server = _launch(port, tmp_path, log)
    state = Server(f"http://127.0.0.1:{port}", log, server, port, tmp_path)
    try:
        _wait_healthy(state.url, server, log)
        yield state
    finally:
        server = state.process  # a test may have restarted it
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _open_from_root_and_start(page, url: str, title: str, epochs: int | None = None) -> None:
    """From the root URL, click the page's sidebar link, type ``epochs`` into the form if given, press Start."""
    page.goto(f"{url}/")  # the root: a deep link as first request once showed the legacy pages
    page.get_by_text("Lab settings").wait_for(timeout=WAIT_MS)  # app.py ran: its navigation is up
    page.get_by_role("heading", name="Compare", exact=True).wait_for(timeout=WAIT_MS)  # Home is drawn
    page.wait_for_timeout(1000)  # let Home's first run end before navigating
    sidebar = page.locator(".st-key-vaelab-nav")  # the app's own links (vaelab/ui/pages.py draw_navigation)
    sidebar.locator("a").filter(has=page.get_by_text(title, exact=True)).click()
    page.get_by_role("heading", name=title).wait_for(timeout=WAIT_MS)
    if epochs is not None:
        box = page.get_by_label("Epochs", exact=True)
        box.fill(str(epochs))
        box.press("Enter")
        page.wait_for_timeout(1500)  # the rerun that takes the value
    start = page.get_by_role("button", name="Start")
    start.wait_for(timeout=WAIT_MS)
    start.click()


LIVE_CHART = 'iframe[title$="vaelab_live_chart"]'  # a chart drawn while a run trains (vaelab/ui/live_chart.py)
_LIVE_INDEX = """text => Array.from(document.querySelectorAll('iframe[title$="vaelab_live_chart"]')).findIndex(
    f => Boolean(f.contentDocument && f.contentDocument.body && f.contentDocument.body.textContent.includes(text)))"""
_ANY_CHART = """text => (""" + _LIVE_INDEX.split("=> ", 1)[1] + """) >= 0 || Array.from(
    document.querySelectorAll('[data-testid="stPlotlyChart"]')).some(c => c.textContent.includes(text))"""


def _chart(page, text: str):
    """The chart that shows ``text``, once one does: a live chart's frame while a run trains, else the still chart."""
    page.wait_for_function(_ANY_CHART, arg=text, timeout=WAIT_MS)
    index = page.evaluate(_LIVE_INDEX, text)
    if index >= 0:
        return page.frame_locator(LIVE_CHART).nth(index).locator("#chart")
    return page.locator('[data-testid="stPlotlyChart"]').filter(has_text=text)


STREAM = 'iframe[title$="vaelab_live_stream"]'  # a live region while a run trains (vaelab/ui/live_stream.py)
# the text of ``selector`` in every live region's frame (null where a frame has none)
STREAM_TEXTS = """selector => Array.from(document.querySelectorAll('iframe[title$="vaelab_live_stream"]')).map(f => {
    try { const el = f.contentDocument.querySelector(selector); return el ? el.textContent : null; }
    catch (e) { return null; } }).filter(t => t)"""
STREAM_CURVE = """() => Array.from(document.querySelectorAll('iframe[title$="vaelab_live_stream"]')).some(f => {
    try { return Array.from(f.contentDocument.querySelectorAll('#view-losses path.js-line')).some(
        p => (p.getAttribute('d') || '').length > 10); } catch (e) { return false; } })"""


def _loss_chart_drawn(page) -> None:
    """A loss curve on screen: drawn by the stream while the run trains, or the still chart."""
    page.wait_for_function("() => (" + STREAM_CURVE + ")() || Array.from(document.querySelectorAll("
                           "'[data-testid=\"stPlotlyChart\"]')).some(c => c.textContent.includes('train · ') && "
                           "c.querySelector('path.js-line'))", timeout=WAIT_MS)


def _stream_step(page, selector: str) -> int | None:
    """The step in a live region's text (``#caption-<view>`` ends "step N"; the progress line "step N/M")."""
    for text in page.evaluate(STREAM_TEXTS, selector):
        found = re.search(r"step ([\d,]+)", text)
        if found:
            return int(found.group(1).replace(",", ""))
    return None


def _filter_grid_step(page) -> int:
    """The training step of the sparse page's streamed filter grid (its caption ends "· step N")."""
    page.wait_for_function(f"() => ({STREAM_TEXTS})('#caption-filters').some(t => /step/.test(t))",
                           timeout=WAIT_MS)
    return _stream_step(page, "#caption-filters")


def _in_browser(app_server, name: str, check) -> None:
    """Run ``check(page)`` in headless Chromium; on failure keep a screenshot and the server log."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        try:
            check(page)
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"test_browser-{name}.png"), full_page=True)
            shutil.copyfile(app_server.log, ARTIFACTS / f"test_browser-{name}-streamlit.log")
            raise
        finally:
            browser.close()


def test_sparse_page_trains_live_in_headless_chromium(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Sparse autoencoder", epochs=500)  # outlasts the test
        _loss_chart_drawn(page)
        assert "mnist-5k" in page.get_by_text("Train:").inner_text()
        # the filters come from the worker's frames, drawn on a canvas: they follow training with no rerun
        first = _filter_grid_step(page)
        page.wait_for_timeout(4000)
        assert _filter_grid_step(page) > first
        assert page.frame_locator(STREAM).nth(1).locator("#view-filters canvas").count() == 1
        assert page.get_by_role("button", name="Pause").is_enabled()

    _in_browser(app_server, "sparse", check)


BROKEN_IMAGES = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] img')).filter(
    img => img.complete && img.naturalWidth === 0).length"""


def test_vae_page_trains_in_a_worker_and_every_picture_follows_in_headless_chromium(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Variational autoencoder", epochs=500)  # outlasts the test
        _loss_chart_drawn(page)
        for view in ("codes", "samples", "reconstructions"):
            page.wait_for_function(f"() => ({STREAM_TEXTS})('#caption-{view}').some(t => /step/.test(t))",
                                   timeout=WAIT_MS)
        assert "1,000 test images" in page.evaluate(STREAM_TEXTS, "#caption-codes")[0]  # the map's test codes
        first = {view: _stream_step(page, f"#caption-{view}") for view in ("codes", "samples")}
        broken = []
        for _ in range(8):
            page.wait_for_timeout(500)
            broken.append(page.evaluate(BROKEN_IMAGES))
        assert all(_stream_step(page, f"#caption-{view}") > step for view, step in first.items())
        assert broken == [0] * len(broken)  # no broken-image icon on the page while the pictures change
        assert page.get_by_role("button", name="Pause").is_enabled()
        page.get_by_role("button", name="Pause").click()  # the still page takes over, with its clickable map
        _chart(page, "Posterior means").locator("path.point").first.wait_for(state="visible", timeout=WAIT_MS)

    _in_browser(app_server, "vae", check)


def test_a_deep_link_as_a_fresh_servers_first_request_shows_the_apps_navigation_and_sidebar(app_server):
    """Streamlit's own menu listed the raw pages/ folder (ae, compare, ...) until a session had run app.py."""
    def check(page):
        page.goto(f"{app_server.url}/compare")  # the very first request this server sees
        page.get_by_role("heading", name="Compare models").first.wait_for(timeout=WAIT_MS)
        nav = page.locator(".st-key-vaelab-nav")
        nav.get_by_text("Variational autoencoder", exact=True).wait_for(timeout=WAIT_MS)
        page.get_by_text("Lab settings").wait_for(timeout=WAIT_MS)
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0

    _in_browser(app_server, "deep-link", check)


def test_a_restart_while_a_page_trains_stops_within_5_s_and_the_open_tab_says_so(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Autoencoder", epochs=500)  # outlasts the test
        _loss_chart_drawn(page)
        page.wait_for_timeout(1000)
        server = app_server.process
        started = time.monotonic()
        server.terminate()  # SIGTERM while a chunk trains
        server.wait(timeout=5)  # raises TimeoutExpired when the server takes longer
        stopped_in = time.monotonic() - started
        app_server.process = _launch(app_server.port, app_server.tmp_path, app_server.log)
        _wait_healthy(app_server.url, app_server.process, app_server.log)
        notice = page.get_by_text("The server restarted")
        notice.wait_for(timeout=60_000)  # the tab reconnects by itself
        # the new session redraws the page from scratch: not greyed on the old progress line
        page.get_by_text("Not started").first.wait_for(timeout=WAIT_MS)
        assert page.get_by_role("button", name="Start").is_enabled()
        assert stopped_in < 5

    _in_browser(app_server, "restart", check)
