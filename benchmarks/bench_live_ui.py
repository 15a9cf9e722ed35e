"""Live UI: time from pressing Start to the first drawn loss curve, the redraw interval while training, and the
training throughput inside the app against the same Trainer in a plain process.

Starts ``streamlit run app.py`` on a free port (``VAELAB_DATASET=mnist-5k``), opens the ROOT url in headless Chromium
(Playwright), clicks the page's sidebar link, types a long run into the Epochs field, and per page:

1. warms up: Start, wait for the first curve, Stop / Reset (the first run pays one-off costs);
2. ``--runs`` measured runs: an in-page poller (every 20 ms) timestamps the click on Start, the first loss chart
   (the Plotly chart titled "loss per image") with a drawn line, every change of the progress text and every new
   loss-chart element (a redraw: each redraw draws the chart under a fresh key); after ``--seconds`` of training
   it reads the steps done and presses Stop / Reset.

Figures per page: first curve after the click (median over runs), redraw interval (median and 90th percentile of
the gaps between redraws, over all runs), samples/s inside the app (the median of the rates the progress text
shows: the session history's train rows), the wall-clock training rate (steps done x batch / seconds, which also
counts the redraw time between chunks; the goal is set on this one), each against the same rate of the Trainer in a
plain process (``--cli-worker``: the same config, chunks of the same length, run before and after the app on the same
machine; with torch's default threads and with one thread), and the cores the server and the browser kept busy while
training (CPU time from /proc / wall time).
``--env NAME=VALUE[,NAME=VALUE]`` (repeatable) runs one server per setting, interleaved round by round, e.g. to
compare thread settings (app.py only sets OMP_NUM_THREADS / OMP_WAIT_POLICY where the environment has none);
``--sessions 1,2`` trains in one, then two browser sessions of one server at once and prints the combined
throughput of two against one. The app trains in a worker process per session (``vaelab/live_worker.py``) with
its share of the cores (one torch thread each on 2 cores): the fair plain-process reference is the 1-thread one.

    .venv/bin/python benchmarks/bench_live_ui.py [--pages sparse,vae] [--runs 3] [--seconds 12] [--rounds 1]
        [--env default --env OMP_NUM_THREADS=2 --env OMP_NUM_THREADS=2,OMP_WAIT_POLICY=ACTIVE] [--sessions 1]
        [--viewport 1400x1800]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import appserver  # noqa: E402
from appserver import ROOT, launch_browser, load_average, open_page, set_epochs, start_server  # noqa: E402

# page key -> (sidebar title, the config overrides the page's training_panel passes as defaults / fixed)
PAGES = {
    "sparse": ("Sparse autoencoder", {}),
    "ksparse": ("k-sparse autoencoder", {}),
    "vae": ("Variational autoencoder", {"beta": 1.0}),
    "cvae": ("Conditional VAE", {}),
    "ae": ("Autoencoder", {}),
}
EPOCHS = 500  # typed into the form: the run outlasts the measurement
WAIT_MS = 60_000
GOAL_FIRST_CURVE_S, GOAL_REDRAW_S, GOAL_THROUGHPUT = 1.0, 1.0, 0.8

POLLER = """() => {
  const w = window; w.__bench = {click: null, firstCurve: null, texts: [], charts: []};
  let lastText = null, lastChart = null;
  document.addEventListener('click', e => {
    const b = e.target.closest('button');
    if (b && b.innerText.trim().endsWith('Start')) { w.__bench = {click: performance.now(), firstCurve: null,
      texts: [], charts: []}; lastText = null; lastChart = null; }
  }, true);
  setInterval(() => {
    const now = performance.now(), b = w.__bench;
    const bar = document.querySelector('[data-testid="stProgress"]');
    const text = bar ? bar.innerText : null;
    if (text !== lastText) { b.texts.push([now, text]); lastText = text; }
    const chart = Array.from(document.querySelectorAll(
      '[data-testid="stPlotlyChart"], iframe[title$="vaelab_live_chart"]')).map(
      c => c.tagName === 'IFRAME' ? (c.contentDocument && c.contentDocument.body) : c).find(
      c => c && (c.textContent || '').includes('loss per image'));
    const line = chart && Array.from(chart.querySelectorAll('path.js-line')).some(
      p => (p.getAttribute('d') || '').length > 10);
    if (line && chart !== lastChart) { b.charts.push(now); lastChart = chart;
      if (b.click !== null && b.firstCurve === null) b.firstCurve = now; }
  }, 20);
}"""


# ---------------------------------------------------------------- the plain-process reference
def cli_worker(page: str, seconds: float) -> None:
    """Train the page's config in this process for ``seconds`` in chunks; print the history's median samples/s
    (inside steps) and the wall-clock rate (steps done x batch / seconds: the test pass at each epoch end counts)."""
    sys.path.insert(0, str(ROOT))
    from vaelab.data import load_data
    from vaelab.live_worker import CHUNK_SECONDS  # the worker's chunks: the plain process trains in the same
    from vaelab.training import Trainer
    from vaelab.variants import get_variant

    overrides = PAGES[page][1]
    config = get_variant(page).config_cls.from_preset(None, **overrides, epochs=EPOCHS)
    trainer = Trainer(page, config, load_data("mnist-5k"), seed=0)
    trainer.advance(max_seconds=CHUNK_SECONDS)  # warm-up chunk, not counted
    first, first_step = len(trainer.history), trainer.step
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        trainer.advance(max_seconds=CHUNK_SECONDS)
    wall = (trainer.step - first_step) * config.batch_size / (time.perf_counter() - started)
    rates = [r["samples_per_s"] for r in trainer.history[first:] if r["kind"] == "train"]
    print(json.dumps({"samples_per_s": statistics.median(rates), "wall_samples_per_s": wall, "rows": len(rates)}))


def run_cli(page: str, seconds: float, threads: int | None = None) -> tuple[float, float]:
    """samples/s of the plain process inside steps and on the wall clock (torch's default threads, or ``threads``
    through OMP_NUM_THREADS)."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    out = subprocess.run([sys.executable, __file__, "--cli-worker", page, "--seconds", str(seconds)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["samples_per_s"], result["wall_samples_per_s"]


# ---------------------------------------------------------------- the browser side
def no_loss_chart(page) -> None:
    """No loss curve on the page (with workers the loss chart stays, empty, between runs)."""
    page.wait_for_function("""() => !Array.from(document.querySelectorAll(
        '[data-testid="stPlotlyChart"], iframe[title$="vaelab_live_chart"]')).some(c => {
          const doc = c.tagName === 'IFRAME' ? c.contentDocument && c.contentDocument.body : c;
          return doc && (doc.textContent || '').includes('loss per image') && Array.from(
            doc.querySelectorAll('path.js-line')).some(p => (p.getAttribute('d') || '').length > 10); })
        """, timeout=WAIT_MS)


def start(page) -> None:
    button = page.get_by_role("button", name="Start")
    button.wait_for(timeout=WAIT_MS)
    page.wait_for_function("""() => Array.from(document.querySelectorAll('button')).some(
        b => b.innerText.trim().endsWith('Start') && !b.disabled)""", timeout=WAIT_MS)
    button.click()


ASK_MS = 15_000  # how long Stop / Reset may take to ask before the benchmark reports a miss and clicks again


def status_badge(page) -> str:
    """The run's status as the button row shows it ("Training", "Paused", "Not started", ...)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stMarkdownContainer"]'))
        .map(e => e.innerText).find(t => /Training|Paused|Not started|Finished|Stopped/.test(t)) || ''""")


def reset(page) -> None:
    """Stop / Reset, then Discard (an unsaved run asks first). A question that does not come within ``ASK_MS`` is
    reported on stderr with what the page showed (status line, a screenshot) and the click is made again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(2):
        page.get_by_role("button", name="Stop / Reset").click()
        try:
            page.get_by_role("button", name="Discard the run").click(timeout=ASK_MS if attempt == 0 else WAIT_MS)
            break
        except PlaywrightTimeout:
            shot = Path(tempfile.gettempdir()) / f"bench-live-ui-no-question-{int(time.time())}.png"
            page.screenshot(path=str(shot))
            print(f"Stop / Reset asked nothing within {ASK_MS / 1000:g} s; status line then: "
                  f"{status_badge(page)!r}; screenshot {shot}; clicking again", file=sys.stderr, flush=True)
            if "Not started" in status_badge(page):
                break  # the run was reset without asking: nothing left to discard
    no_loss_chart(page)
    page.wait_for_timeout(500)


def first_curve(page) -> None:
    page.wait_for_function("() => window.__bench && window.__bench.firstCurve !== null", timeout=WAIT_MS)


def rates_and_steps(texts: list) -> tuple[list[float], list[tuple[float, int]]]:
    rates, steps = [], []
    for t, text in texts:
        if not text:
            continue
        m = re.search(r"([\d,]+) samples/s", text)
        if m:
            rates.append(float(m.group(1).replace(",", "")))
        m = re.search(r"step ([\d,]+)/", text)
        if m:
            steps.append((t, int(m.group(1).replace(",", ""))))
    return rates, steps


def measure_run(pages: list, seconds: float, batch_size: int, server_pid: int) -> list[dict]:
    """Start on every page (one per browser session) at once; watch for ``seconds``; Stop / Reset."""
    for page in pages:
        no_loss_chart(page)
        start(page)
    for page in pages:
        first_curve(page)
    def cpu_now() -> tuple[float, float, float]:  # server alone, its workers, the browser: CPU seconds so far
        alone = appserver.process_cpu(server_pid)
        return alone, appserver.process_tree_cpu(server_pid) - alone, appserver.browser_cpu()

    cpu0, t0 = cpu_now(), time.perf_counter()
    pages[0].wait_for_timeout(int(seconds * 1000))
    wall = time.perf_counter() - t0
    cpu = tuple((now - before) / wall for now, before in zip(cpu_now(), cpu0, strict=True))  # cores busy
    results = []
    for page in pages:
        b = page.evaluate("() => window.__bench")
        rates, steps = rates_and_steps(b["texts"])
        redraws = [t for t, _ in steps]  # the progress text changes at every redraw (the step moves on)
        gaps = [(t1 - t0) / 1000 for t0, t1 in zip(redraws, redraws[1:], strict=False)]
        (t_a, s_a), (t_b, s_b) = steps[0], steps[-1]
        results.append({"first_curve": (b["firstCurve"] - b["click"]) / 1000, "gaps": gaps, "rates": rates,
                        "wall_rate": (s_b - s_a) * batch_size / max((t_b - t_a) / 1000, 1e-9), "cpu": cpu})
    for page in pages:
        reset(page)
    return results


def bench_server(browser, workdir: Path, env: dict, page_keys: list[str], runs: int, seconds: float,
                 sessions: int, viewport: tuple[int, int] = (1400, 1800)) -> dict:
    server = start_server(workdir, env)
    out = {}
    try:
        contexts = [browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
                    for _ in range(sessions)]
        tabs = [c.new_page() for c in contexts]
        for tab in tabs:
            tab.add_init_script("(" + POLLER + ")()")
        for key in page_keys:
            title, overrides = PAGES[key]
            sys.path.insert(0, str(ROOT))
            from vaelab.variants import get_variant

            batch = get_variant(key).config_cls.from_preset(None, **overrides).batch_size
            for tab in tabs:
                open_page(tab, server.url, title)
                tab.wait_for_timeout(1000)
                set_epochs(tab, EPOCHS)
            load = load_average()
            measure_run(tabs, 3.0, batch, server.process.pid)  # warm-up run
            rows = [measure_run(tabs, seconds, batch, server.process.pid) for _ in range(runs)]
            out[key] = {"rows": [r for run in rows for r in run], "load": (load, load_average())}
        for c in contexts:
            c.close()
    finally:
        server.stop()
    return out


def summarize(key: str, label: str, rows: list[dict], cli: list[tuple[float, float]],
              cli_one: list[tuple[float, float]], load: tuple[float, float]) -> None:
    first = statistics.median(r["first_curve"] for r in rows)
    gaps = sorted(g for r in rows for g in r["gaps"])
    gap_med = statistics.median(gaps) if gaps else float("nan")
    gap_p90 = gaps[int(0.9 * (len(gaps) - 1))] if gaps else float("nan")
    app_rate = statistics.median(x for r in rows for x in r["rates"])
    wall = statistics.median(r["wall_rate"] for r in rows)
    cli_steps, cli_wall = (statistics.median(c[i] for c in cli) for i in (0, 1))
    one_steps, one_wall = (statistics.median(c[i] for c in cli_one) for i in (0, 1))
    server_cpu, workers_cpu, browser = (statistics.median(r["cpu"][i] for r in rows) for i in (0, 1, 2))
    print(f"{key:7s} {label}: first curve {first:.2f} s (median of {len(rows)} runs; goal < {GOAL_FIRST_CURVE_S:g}); "
          f"redraw every {gap_med:.2f} s (median, p90 {gap_p90:.2f}, {len(gaps)} gaps; goal <= {GOAL_REDRAW_S:g}); "
          f"wall-clock training rate {wall:,.0f} samples/s = {wall / cli_wall:.0%} of the plain process's "
          f"{cli_wall:,.0f} (median of {len(cli)} runs; goal >= {GOAL_THROUGHPUT:.0%}) and {wall / one_wall:.0%} of a "
          f"1-thread plain process's {one_wall:,.0f}; inside steps {app_rate:,.0f} samples/s = "
          f"{app_rate / cli_steps:.0%} of {cli_steps:,.0f} / {app_rate / one_steps:.0%} of {one_steps:,.0f}; "
          f"cores busy: server {server_cpu:.2f}, its workers {workers_cpu:.2f}, browser {browser:.2f}; "
          f"load {load[0]:.2f} -> {load[1]:.2f}",
          flush=True)


def parse_env(text: str) -> dict[str, str]:
    if text in ("", "default"):
        return {}
    return dict(pair.split("=", 1) for pair in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="sparse,vae", help=f"comma-separated, of {', '.join(PAGES)}")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per page and server setting")
    parser.add_argument("--seconds", type=float, default=12.0, help="training time watched per run")
    parser.add_argument("--rounds", type=int, default=1, help="rounds over the --env settings (interleaved)")
    parser.add_argument("--env", action="append", default=None,
                        help="server environment NAME=VALUE[,NAME=VALUE] (repeat for one server per setting)")
    parser.add_argument("--sessions", default="1", help="browser sessions training at once; a list (1,2) runs each "
                        "and prints the combined throughput of n sessions against one")
    parser.add_argument("--viewport", default="1400x1800", help="browser window WIDTHxHEIGHT (1400x1800 holds most of "
                        "a page's charts on screen; a live chart off screen keeps its drawing; 1280x800: a laptop)")
    parser.add_argument("--cli-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cli_worker:
        cli_worker(args.cli_worker, args.seconds)
        return
    from playwright.sync_api import sync_playwright

    page_keys = args.pages.split(",")
    settings = args.env or ["default"]
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{os.cpu_count()} CPUs; load {load_average():.2f}; {args.runs} measured run(s) of {args.seconds:g} s "
          f"per page, setting and round; {args.sessions} session(s) at once; window {args.viewport}", flush=True)
    cli: dict[str, list[tuple[float, float]]] = {k: [] for k in page_keys}
    cli_one: dict[str, list[tuple[float, float]]] = {k: [] for k in page_keys}
    app: dict[tuple[str, str], list[dict]] = {}
    combined: dict[tuple[str, str, int], list[float]] = {}  # (page, setting, sessions) -> summed wall rate per run
    sessions = [int(n) for n in str(args.sessions).split(",")]
    viewport = tuple(int(v) for v in args.viewport.lower().split("x"))
    loads: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="vaelab-live-") as tmp, sync_playwright() as p:
        browser = launch_browser(p)
        for _ in range(args.rounds):
            for key in page_keys:
                cli[key].append(run_cli(key, args.seconds))
                cli_one[key].append(run_cli(key, args.seconds, threads=1))
            for setting in settings:
                for n in sessions:
                    result = bench_server(browser, Path(tmp), parse_env(setting), page_keys, args.runs, args.seconds,
                                          n, viewport)
                    for key, r in result.items():
                        label = setting if n == 1 else f"{setting}, {n} sessions"
                        app.setdefault((key, label), []).extend(r["rows"])
                        loads.setdefault((key, label), []).extend(r["load"])
                        combined.setdefault((key, setting, n), []).extend(
                            sum(row["wall_rate"] for row in r["rows"][i:i + n]) for i in range(0, len(r["rows"]), n))
            for key in page_keys:
                cli[key].append(run_cli(key, args.seconds))
                cli_one[key].append(run_cli(key, args.seconds, threads=1))
        browser.close()
    print()
    for (key, setting), rows in app.items():
        loads_here = loads[(key, setting)]
        summarize(key, f"[{setting}]", rows, cli[key], cli_one[key], (min(loads_here), max(loads_here)))
    for (key, setting, n), totals in combined.items():
        one = combined.get((key, setting, 1))
        if n > 1 and one:
            print(f"{key:7s} [{setting}] {n} sessions at once: combined {statistics.median(totals):,.0f} samples/s "
                  f"= {statistics.median(totals) / statistics.median(one):.2f}x one session's "
                  f"{statistics.median(one):,.0f} (goal >= 1.6x; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
