"""Live probe: what a viewer sees while a page trains, sampled in a real headless Chromium.

Starts ``streamlit run app.py`` (``VAELAB_DATASET=mnist-5k``, training in worker processes as in the app), opens the
ROOT url, goes to each page, types a long run into Epochs, presses Start and then samples the page every
``--every`` seconds for ``--seconds`` seconds:

- broken images: an <img> that finished loading with no picture (``complete && naturalWidth == 0``);
- empty charts: a Plotly chart that had been drawn and is blank again (no ``svg.main-svg``, or the loss chart with no
  curve); a chart appearing (not drawn yet) is reported apart, with when (live charts are iframes of
  ``vaelab/ui/live_chart.py``: their documents are read too);
- redraw gaps: the times between changes of the progress line (an in-page poller every 20 ms); p90 reported;
- caption lag: the pictures of the weights captioned "step N" (reconstructions, filters, prior samples, manifold,
  interpolation, traversal, the CVAE grids, latent maps on screen: issue 12's list; not the summaries worked out
  every few seconds, the mean gap or a clicked image's posterior) against the progress line. At a sample time t
  showing step N, the lag is how long the picture has been behind the progress line: t minus the time the progress
  line first showed a step past N (0 while the progress line still shows N: a picture is not behind a progress line
  that stands still, e.g. in a run's first seconds). The goal is set on this one ("the caption's step within 2 s of
  the progress line"). Also printed: the picture's age, t minus the time the progress line first showed a step >= N
  (the lag plus the time the progress line showed N itself, about one 0.5 s redraw); maximum and p90 of each.

Each page runs once quiet and once with a second process keeping one core busy (``--load``: a Python busy loop
that ends with the probe). Goals (issue 12): 0 broken, 0 empty, p90 gap <= 1.5 s, lag <= 2 s in both conditions.

    .venv/bin/python benchmarks/probe_live_ui.py [--pages sparse,ksparse,vae,cvae] [--seconds 60] [--every 0.25]
        [--conditions quiet,load]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import launch_browser, load_average, open_page, set_epochs, start_server  # noqa: E402

PAGES = {"sparse": "Sparse autoencoder", "ksparse": "k-sparse autoencoder", "vae": "Variational autoencoder",
         "cvae": "Conditional VAE", "ae": "Autoencoder", "ae-gmm": "Autoencoder + Gaussian mixture",
         "binary-vae": "Binary-latent VAE", "denoising": "Denoising autoencoder",
         "contractive": "Contractive autoencoder"}
EPOCHS = 2000
WAIT_MS = 60_000
GOAL_GAP_S, GOAL_LAG_S = 1.5, 2.0
STEP_IN_CAPTION = re.compile(r"step ([\d,]+)(?!\s*/)")  # "step 1,234" but not the progress line's "step 1,234/5,000"

POLLER = """() => {
  const w = window; w.__probe = {texts: []};
  let last = null;
  setInterval(() => {
    const bar = document.querySelector('[data-testid="stProgress"]');
    const text = bar ? bar.innerText : null;
    if (text !== last) { w.__probe.texts.push([performance.now(), text]); last = text; }
  }, 20);
}"""

# The charts of a page: Streamlit's (still) charts and, while a run trains, the live charts (same-origin iframes of
# vaelab/ui/live_chart.py); for each, the document its plot lives in.
CHART_DOCS = """() => [
  ...Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]')).map(c => c),
  ...Array.from(document.querySelectorAll('iframe[title$="vaelab_live_chart"]')).map(
    f => (f.contentDocument && f.contentDocument.body) || null)]"""

SAMPLE = """() => {
  const imgs = Array.from(document.querySelectorAll('[data-testid="stMain"] img'));
  const broken = imgs.filter(i => i.complete && i.naturalWidth === 0).length;
  const charts = Array.from(document.querySelectorAll(
    '[data-testid="stPlotlyChart"], iframe[title$="vaelab_live_chart"]'));
  let blanked = 0, undrawn = 0;
  for (const el of charts) {
    const doc = el.tagName === 'IFRAME' ? (el.contentDocument && el.contentDocument.body) : el;
    // drawn: a plot, and for the loss chart (legend "train · ...") a curve; a chart whose figure has no data yet
    // (the mean gap before its first point) is drawn, with axes
    const drawn = doc && doc.querySelector('svg.main-svg')
      && !((doc.textContent || '').includes('train · ') && !doc.querySelector('.trace'));
    if (drawn) el.dataset.probeDrawn = '1';
    else if (el.dataset.probeDrawn) blanked += 1;  // it had been drawn: it went blank
    else undrawn += 1;  // not drawn yet (a chart appearing: its first drawing)
  }
  // the pictures of the weights of now: image captions and the latent maps' titles. Not: the progress line, chart
  // titles of summaries worked out every few seconds (KL bars, aggregate posterior, estimator variances) or the
  // mean gap (issue 14's curve, a point every few seconds), the mean gap's own progress, a clicked image's posterior
  const NOT_LIVE = ['samples/s', 'Next point', 'p(z|x) and q(z|x)', 'Mean gap'];
  const texts = [...document.querySelectorAll('[data-testid="stCaptionContainer"], [data-testid="stImageCaption"], '
      + 'figcaption, [data-testid="stMarkdownContainer"] p')].map(el => el.textContent || '');
  for (const el of charts) {
    // a live chart off screen keeps its drawing until it comes on screen (vaelab/ui/live_chart.py): only the charts
    // a viewer sees, on screen or within 200 px of it, count
    const box = el.getBoundingClientRect();
    if (box.bottom < -200 || box.top > window.innerHeight + 200) continue;
    const doc = el.tagName === 'IFRAME' ? (el.contentDocument && el.contentDocument.body) : el;
    const title = doc && doc.querySelector('.gtitle');
    if (title && /Posterior means|codes of|latent map|Codes of/.test(title.textContent)) texts.push(title.textContent);
  }
  const captions = texts.filter(t => t.includes('step ') && !NOT_LIVE.some(w => t.includes(w)))
    .map(t => t.slice(0, 160));
  return {t: performance.now(), broken, empty: blanked, undrawn, images: imgs.length, charts: charts.length,
          captions};
}"""


FIRST_CURVE = """() => (""" + CHART_DOCS + """)().some(c => c && c.querySelector('path.js-line'))"""


def busy_core(seconds: float) -> subprocess.Popen:
    """A second process keeping one core busy for at most ``seconds``."""
    return subprocess.Popen([sys.executable, "-c", f"import time\nend = time.time() + {seconds}\n"
                             "while time.time() < end: pass"])


def step_of(text: str | None) -> int | None:
    m = re.search(r"step ([\d,]+)/", text or "")
    return int(m.group(1).replace(",", "")) if m else None


def reset(page) -> None:
    page.get_by_role("button", name="Stop / Reset").click()
    discard = page.get_by_role("button", name="Discard the run")
    try:
        discard.wait_for(timeout=5000)
        discard.click()
    except Exception:  # noqa: BLE001 (a saved or finished run is not asked about)
        pass
    page.wait_for_timeout(1000)


def probe(page, seconds: float, every: float) -> dict:
    page.evaluate("(" + POLLER + ")()")
    page.get_by_role("button", name="Start").click()
    page.wait_for_function(FIRST_CURVE, timeout=WAIT_MS)
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(page.evaluate(SAMPLE))
        page.wait_for_timeout(int(every * 1000))
    texts = page.evaluate("() => window.__probe.texts")
    page.screenshot(path=str(Path(tempfile.gettempdir()) / f"vaelab-probe-{int(time.time())}.png"))
    reset(page)
    return {"samples": samples, "texts": texts}


def p90(values: list[float]) -> float:
    return values[int(0.9 * (len(values) - 1))] if values else float("nan")


def summarize(result: dict) -> dict:
    samples, texts = result["samples"], result["texts"]
    progress = [(t, step_of(x)) for t, x in texts if step_of(x) is not None]
    changes = [t for t, _ in progress]
    gaps = sorted((b - a) / 1000 for a, b in zip(changes, changes[1:], strict=False))
    lags, ages = [], []
    for s in samples:
        for caption in s["captions"]:
            for m in STEP_IN_CAPTION.finditer(caption):
                n = int(m.group(1).replace(",", ""))
                reached = next((t for t, step in progress if step >= n), None)
                if reached is None or reached > s["t"]:
                    continue
                passed = next((t for t, step in progress if step > n), None)  # the picture fell behind
                lags.append((max(0.0, s["t"] - passed) / 1000 if passed is not None else 0.0, caption[:70]))
                ages.append((s["t"] - reached) / 1000)
    lags.sort()
    ages.sort()
    worst = lags[-1][1] if lags else ""
    lags = [lag for lag, _ in lags]
    t0 = samples[0]["t"] if samples else 0.0
    empty_at = [round((x["t"] - t0) / 1000, 1) for x in samples if x["empty"] > 0]
    undrawn_at = [round((x["t"] - t0) / 1000, 1) for x in samples if x["undrawn"] > 0]
    return {"samples": len(samples), "broken": sum(s["broken"] > 0 for s in samples),
            "empty": sum(s["empty"] > 0 for s in samples), "gap_p90": p90(gaps),
            "gap_max": gaps[-1] if gaps else float("nan"), "lag_p90": p90(lags),
            "lag_max": lags[-1] if lags else float("nan"), "lags": len(lags),
            "age_p90": p90(ages), "age_max": ages[-1] if ages else float("nan"),
            "steps": (progress[0][1], progress[-1][1]) if progress else (None, None), "worst": worst,
            "empty_at": empty_at, "undrawn_at": undrawn_at,
            "images": max((s["images"] for s in samples), default=0),
            "charts": max((s["charts"] for s in samples), default=0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="sparse,ksparse,vae,cvae", help=f"comma-separated, of {', '.join(PAGES)}")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of training sampled per page")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between samples")
    parser.add_argument("--conditions", default="quiet,load", help="quiet, load (a second process busy on a core)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"command: python {' '.join(sys.argv)}")
    print(f"{os.cpu_count()} CPUs; load {load_average():.2f}", flush=True)
    ok = True
    with tempfile.TemporaryDirectory(prefix="vaelab-probe-") as tmp, sync_playwright() as p:
        server = start_server(Path(tmp))
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            for key in args.pages.split(","):
                open_page(page, server.url, PAGES[key])
                page.wait_for_timeout(1000)
                set_epochs(page, EPOCHS)
                for condition in args.conditions.split(","):
                    hog = busy_core(args.seconds + 30) if condition == "load" else None
                    load = load_average()
                    try:
                        s = summarize(probe(page, args.seconds, args.every))
                    finally:
                        if hog is not None:
                            hog.kill()
                    met = (s["broken"] == 0 and s["empty"] == 0 and s["gap_p90"] <= GOAL_GAP_S
                           and s["lag_max"] <= GOAL_LAG_S)
                    ok &= met
                    print(f"{key:8s} {condition:5s}: {s['samples']} samples, broken-image samples {s['broken']}, "
                          f"samples with a chart gone blank {s['empty']}, redraw gap p90 {s['gap_p90']:.2f} s (max "
                          f"{s['gap_max']:.2f}), caption lag p90 {s['lag_p90']:.2f} s max {s['lag_max']:.2f} s "
                          f"(age p90 {s['age_p90']:.2f} s max {s['age_max']:.2f} s) "
                          f"({s['lags']} captions), steps {s['steps'][0]} -> {s['steps'][1]}, up to {s['images']} "
                          f"images / {s['charts']} charts on screen; load {load:.2f} -> {load_average():.2f}; "
                          f"{'MET' if met else 'MISSED'}", flush=True)
                    print(f"    most behind: {s['worst']!r}; blank-chart samples at {s['empty_at'][:12]} s; a chart "
                          f"not drawn yet (appearing) at {s['undrawn_at'][:12]} s", flush=True)
        finally:
            browser.close()
            server.stop()
    print(f"\ngoals (0 broken, 0 empty, p90 gap <= {GOAL_GAP_S:g} s, lag <= {GOAL_LAG_S:g} s): "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
