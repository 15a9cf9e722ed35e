"""Nothing wider than its column, at projector sizes, in the normal and the presenter view (real headless Chromium).

Every page is opened at rest (and the VAE page once more with a saved model loaded through a link, so its charts,
pictures and maths are drawn) in both views, each at 1280x800 and 1920x1080, with every expander open. Checked in
the browser's layout: the page never scrolls sideways; no element reaches past its column; no box that clips or
scrolls its content (a maths box above all: KaTeX display math) holds content wider than itself; no chart title
runs out of its chart; no chart toolbar covers a chart's title or legend. The presenter view also hides the sidebar
and the form and draws the page larger. One server and one browser for all of it; failures keep screenshots in
``test-artifacts/``. Helpers come from tests/test_browser.py.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import mnist_5k_subset
from tests.test_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, WAIT_MS, app_server  # noqa: F401 (a fixture)
from vaelab.ui.pages import HOME_FILE, existing_pages

pytestmark = pytest.mark.browser

SIZES = ((1280, 800), (1920, 1080))
VIEWS = {"normal": "", "presenter": "present=1"}
CHECKPOINT = "overflow-check"
TOLERANCE_PX = 1  # sub-pixel rounding
TEXT_BOX_SLACK_PX = 3  # a text's box includes its font's line gap: boxes overlapping this little leave the glyphs clear

# Every problem as a line of text naming the element (its text, else its test id) and the sizes involved.
OVERFLOW_JS = """([tol, slack]) => {
  const problems = [];
  const describe = el => ((el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 50)
      || el.getAttribute('data-testid') || el.className.toString().slice(0, 50));
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + tol)
    problems.push(`the page scrolls sideways: ${root.scrollWidth} px in a ${root.clientWidth} px window`);
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  const box = r => `${Math.round(r.left)}..${Math.round(r.right)} x ${Math.round(r.top)}..${Math.round(r.bottom)} px`;
  const visible = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const columnOf = el => el.parentElement.closest(
      '[data-testid="stColumn"], [data-testid="stExpanderDetails"], [data-testid="stMainBlockContainer"]');
  for (const el of main.querySelectorAll('[data-testid="stElementContainer"]')) {
    if (!visible(el)) continue;
    const box = el.getBoundingClientRect(), column = columnOf(el).getBoundingClientRect();
    if (box.width > 0 && (box.right > column.right + tol || box.left < column.left - tol))
      problems.push(`"${describe(el)}" (${Math.round(box.width)} px) reaches past its column `
                    + `(${Math.round(column.left)}..${Math.round(column.right)} px)`);
  }
  for (const el of main.querySelectorAll('*')) {
    // charts, tables and text boxes scroll or clip inside by design; 0-2 px boxes are screen-reader text (KaTeX's
    // MathML)
    const skipped = el.closest('.js-plotly-plot, [data-testid="stDataFrame"], .katex-mathml, input, textarea');
    if (!visible(el) || el.clientWidth <= 2 || skipped) continue;
    const overflow = getComputedStyle(el).overflowX;
    if (!['hidden', 'auto', 'scroll', 'clip'].includes(overflow) && !el.classList.contains('katex-display')) continue;
    if (el.scrollWidth > el.clientWidth + tol) {
      const maths = el.querySelector('.katex') || el.closest('.katex-display');
      problems.push(`${maths ? 'maths box' : 'box'} cut: "${describe(el)}" holds ${el.scrollWidth} px `
                    + `in ${el.clientWidth} px`);
    }
  }
  for (const chart of main.querySelectorAll('.js-plotly-plot')) {
    if (!visible(chart)) continue;
    const frame = chart.getBoundingClientRect();
    const title = chart.querySelector('.gtitle'), legend = chart.querySelector('.legend');
    const bar = chart.querySelector('.modebar');
    const entries = legend ? Array.from(legend.querySelectorAll('.legendtext')).map(t => t.textContent) : [];
    const name = title && title.textContent ? title.textContent.slice(0, 50)
      : `untitled chart, legend: ${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}`;
    if (title) {
      const t = title.getBoundingClientRect();
      if (t.left < frame.left - tol || t.right > frame.right + tol)
        problems.push(`chart title cut: "${name}" (${Math.round(t.width)} px) in a ${Math.round(frame.width)} px `
                      + 'chart');
    }
    if (bar && bar.getClientRects().length) {
      const b = bar.getBoundingClientRect();
      for (const [what, item] of [['title', title], ['legend', legend]]) {
        if (!item) continue;
        const r = item.getBoundingClientRect();
        const s = slack;
        if (r.width && b.left < r.right - s && r.left < b.right - s && b.top < r.bottom - s && r.top < b.bottom - s)
          problems.push(`the toolbar covers the ${what} of "${name}" (toolbar ${box(b)}, ${what} ${box(r)})`);
      }
    }
  }
  return problems;
}"""

OPEN_EXPANDERS_JS = """() => document.querySelectorAll(
    '[data-testid="stMainBlockContainer"] details:not([open]) > summary').forEach(s => s.click())"""


def _save_small_vae(checkpoint_dir) -> None:
    """A VAE with a 2-D latent trained a few steps: the VAE page then draws its map, manifold and charts."""
    from vaelab.checkpoints import save_trainer
    from vaelab.training import Trainer
    from vaelab.variants import get_variant

    config = get_variant("vae").config_cls(hidden_sizes=(32,), latent_dim=2, batch_size=50, epochs=1)
    trainer = Trainer("vae", config, mnist_5k_subset(400, 100), seed=0)
    trainer.advance(max_steps=8)  # the whole epoch: a test row too
    save_trainer(trainer, CHECKPOINT, directory=checkpoint_dir)


def _open(page, url: str) -> None:
    page.goto(url)
    page.locator("h1").first.wait_for(timeout=WAIT_MS)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=WAIT_MS)
    page.evaluate(OPEN_EXPANDERS_JS)
    page.wait_for_timeout(700)  # charts draw and expanders open


def _copied_link(page) -> str:
    """The first link under "Copy link" (the normal view's), as its copy button copies it."""
    page.get_by_role("button", name="Copy link").click()
    code = page.locator('[data-testid="stPopoverBody"] [data-testid="stCode"] code').first
    code.wait_for(timeout=WAIT_MS)
    text = code.inner_text().strip()
    page.keyboard.press("Escape")
    return text


def _presenter_problems(page) -> list[str]:
    problems = []
    if page.locator('[data-testid="stSidebar"]').is_visible():
        problems.append("the sidebar is visible")
    if page.get_by_text("Hyper-parameters", exact=True).is_visible():
        problems.append("the hyper-parameter form is visible")
    return problems


def test_no_page_is_wider_than_its_window_or_column_in_either_view(app_server):  # noqa: F811 (the fixture)
    from playwright.sync_api import sync_playwright

    _save_small_vae(app_server.tmp_path / "checkpoints")
    targets = [("" if spec.file == HOME_FILE else spec.url_path, "") for spec in existing_pages()]
    targets.append(("vae", f"checkpoint={CHECKPOINT}"))
    problems: list[str] = []
    copied = ""
    title_heights: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": SIZES[0][0], "height": SIZES[0][1]})
        try:
            page.goto(f"{app_server.url}/")  # the root first: the app's navigation is up for the deep links
            page.get_by_text("Lab settings").wait_for(timeout=WAIT_MS)
            for path, query in targets:
                for view, view_query in VIEWS.items():
                    page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
                    _open(page, f"{app_server.url}/{path}?{'&'.join(q for q in (query, view_query) if q)}")
                    for width, height in SIZES:
                        page.set_viewport_size({"width": width, "height": height})
                        page.wait_for_timeout(500)  # reflow, charts resize
                        where = f"{width}x{height} {view} /{path}{' (model loaded)' if query else ''}"
                        found = page.evaluate(OVERFLOW_JS, [TOLERANCE_PX, TEXT_BOX_SLACK_PX])
                        if view == "presenter":
                            found += _presenter_problems(page)
                        if found:
                            ARTIFACTS.mkdir(exist_ok=True)
                            page.screenshot(path=str(ARTIFACTS / f"overflow-{path or 'home'}-{view}-{width}.png"),
                                            full_page=True)
                        problems += [f"{where}: {problem}" for problem in found]
                    if path == "":
                        title_heights[view] = page.locator("h1").first.bounding_box()["height"]
                    if query and view == "normal":
                        copied = _copied_link(page)
            _open(page, copied)  # the copied link, opened: the page again, with the checkpoint loaded
            latent_map = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="Posterior means")
            loaded_shown = latent_map.count() > 0  # drawn only when a model is there
        finally:
            browser.close()
    assert re.fullmatch(rf"{re.escape(app_server.url)}/vae\?.*checkpoint={CHECKPOINT}.*", copied), copied
    assert "server=" not in copied
    assert loaded_shown, f"the copied link {copied} did not load {CHECKPOINT}"
    assert not problems, "\n".join(problems)
    assert title_heights["presenter"] > 1.2 * title_heights["normal"]  # the presenter view draws larger
