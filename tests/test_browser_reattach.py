"""Runs outlive their tab, in a real headless Chromium against ``streamlit run``: a reload mid-run comes back to the
same run, training on; a tab closed mid-run lets the run end, another tab's Start does not hang and the old run is
listed as an autosave (the issue: one such run hung the whole server); leaving the page and coming back finds it.

The server runs with a short grace period (``VAELAB_UNWATCHED_GRACE_S``), so the keeper of unwatched runs acts
within seconds. A failing run leaves a screenshot and the server's log in ``test-artifacts/``.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.test_browser import (
    STREAM_TEXTS,
    WAIT_MS,
    _chart,
    _in_browser,
    _loss_chart_drawn,
    _open_from_root_and_start,
    _stream_step,
    app_server,
)

__all__ = ["app_server"]  # the fixture, used by name

GRACE_S = 6
ENDING_GRACE_S = 60  # long enough that the closed tab's run ends before the keeper would pause it
pytestmark = pytest.mark.browser
STEP = re.compile(r"step ([\d,]+)/")


@pytest.fixture
def short_grace(monkeypatch):
    monkeypatch.setenv("VAELAB_UNWATCHED_GRACE_S", str(GRACE_S))  # before app_server launches the server


@pytest.fixture
def ending_grace(monkeypatch):
    monkeypatch.setenv("VAELAB_UNWATCHED_GRACE_S", str(ENDING_GRACE_S))


def _step(page) -> int:
    """The step on the progress line ("Epoch 1/500 · step 123/16,000 · ..."): the stream's while the run trains."""
    page.wait_for_function(f"() => ({STREAM_TEXTS})('.progress .text').some(t => /step/.test(t)) || "
                           "/step [\\d,]+\\//.test(document.body.innerText)", timeout=WAIT_MS)
    streamed = _stream_step(page, ".progress .text")
    if streamed is not None:
        return streamed
    text = page.get_by_text(STEP).first.inner_text()
    return int(STEP.search(text).group(1).replace(",", ""))


def _status(page, name: str) -> None:
    page.get_by_text(re.compile(rf"{name}$")).filter(visible=True).first.wait_for(timeout=WAIT_MS)


def _nav(page, title: str) -> None:
    page.locator(".st-key-vaelab-nav").locator("a").filter(has=page.get_by_text(title, exact=True)).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=WAIT_MS)


@pytest.mark.usefixtures("short_grace")
def test_a_reload_mid_run_comes_back_to_the_same_run_which_trains_on(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Autoencoder", epochs=500)  # outlasts the test
        _loss_chart_drawn(page)
        page.wait_for_timeout(2000)
        assert "run=" in page.url  # the private token, in the address bar only
        before = _step(page)
        page.reload()
        page.get_by_role("heading", name="Autoencoder").first.wait_for(timeout=WAIT_MS)
        _status(page, "Training")
        _loss_chart_drawn(page)  # its curves come back with its history
        first = _step(page)
        assert first >= before
        page.wait_for_timeout(3000)
        assert _step(page) > first  # training goes on, one worker
        assert page.get_by_role("button", name="Pause").is_enabled()

    _in_browser(app_server, "reload", check)


@pytest.mark.usefixtures("ending_grace")
def test_a_run_that_ends_in_a_closed_tab_is_kept_and_the_next_start_does_not_hang(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Autoencoder", epochs=10)  # about 6 s on a quiet machine
        _loss_chart_drawn(page)
        old_address = page.url
        page.goto("about:blank")  # the tab goes: nobody watches the run, which ends on its own
        page.wait_for_timeout(25_000)  # it ended, and nothing has read its end (the keeper waits 30 s)
        page.goto(f"{app_server.url}/")  # a new tab, without the token
        page.get_by_text("Lab settings").wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(1000)
        _nav(page, "Sparse autoencoder")
        page.get_by_role("button", name="Start").click()  # the Start that hung the server
        _loss_chart_drawn(page)
        autosaves = app_server.tmp_path / "checkpoints" / "ae"
        deadline = time.monotonic() + 120
        while not list(autosaves.glob("autosave-*.pt")):  # the keeper saw the end, and kept the run
            assert time.monotonic() < deadline, "no autosave of the run that ended unwatched"
            time.sleep(1)
        _nav(page, "Autoencoder")
        page.get_by_text("Save / load").first.click()
        page.wait_for_function(  # the old run is listed, all 10 epochs of it
            """() => Array.from(document.querySelectorAll('[data-testid="stSelectbox"]')).some(
                box => /autosave-\\w+ · mnist-5k · 10 epochs/.test(box.innerHTML))""", timeout=WAIT_MS)
        page.goto(old_address)  # the old tab's address: its run, finished
        page.get_by_role("heading", name="Autoencoder").first.wait_for(timeout=WAIT_MS)
        _status(page, "Finished")
        _chart(page, "train · reconstruction")

    _in_browser(app_server, "closed-tab", check)


@pytest.mark.usefixtures("short_grace")
def test_leaving_a_training_page_and_coming_back_finds_the_run_trained_on(app_server):
    def check(page):
        _open_from_root_and_start(page, app_server.url, "Autoencoder", epochs=500)
        _loss_chart_drawn(page)
        page.wait_for_timeout(1000)
        before = _step(page)
        _nav(page, "Variational autoencoder")
        page.wait_for_timeout(2 * GRACE_S * 1000)  # twice the grace period: the open tab keeps the run watched
        _nav(page, "Autoencoder")
        _status(page, "Training")
        _loss_chart_drawn(page)
        assert _step(page) > before

    _in_browser(app_server, "navigate", check)
