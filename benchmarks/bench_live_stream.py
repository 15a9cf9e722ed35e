"""The live stream in a real browser: what a training page costs the server, its workers and the browser, how far
the pictures lag behind training, and how fast the app trains against a plain process.

Per page: ``streamlit run app.py`` (``VAELAB_DATASET=mnist-5k``), headless Chromium at ``--viewport`` (1280x800),
the page opened from the root by its sidebar link, a long run typed into Epochs, Start; after ``--warm`` seconds,
``--seconds`` of training are measured:

- cores used (CPU seconds / wall seconds) by the server process alone, by its children (the training worker and the
  forkserver), and by the browser's processes;
- frame age: for every frame the page's live components received, its arrival time minus the time the worker (or
  the relay) made it; p50 and p90;
- in-app training rate: the steps the progress line moved x batch size / seconds, against the same config trained
  in a plain process with one torch thread for the same time (run just before, on the same machine).

With ``--load`` a second process keeps one core busy the whole time (a busy laptop).

    .venv/bin/python benchmarks/bench_live_stream.py [--pages vae,sparse,ae] [--seconds 30] [--warm 5] [--load]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import (  # noqa: E402
    ROOT,
    browser_cpu,
    launch_browser,
    load_average,
    open_page,
    process_cpu,
    process_tree_cpu,
    start_server,
)

PAGES = ("ae", "denoising", "sparse", "ksparse", "contractive", "vae", "cvae", "binary-vae", "ae-gmm")
EPOCHS = 500
WAIT_MS = 90_000
STREAM_FRAMES = 'iframe[title$="vaelab_live_stream"]'
AGES = """() => Array.from(document.querySelectorAll('iframe[title$="vaelab_live_stream"]')).flatMap(f => {
  try { const s = f.contentWindow.__vaelabStream; return s ? s.ages.slice() : []; } catch (e) { return []; } })"""
STEP = """() => { for (const f of document.querySelectorAll('iframe[title$="vaelab_live_stream"]')) {
  try { const s = f.contentWindow.__vaelabStream; if (s && s.step !== null) return s.step; } catch (e) {} }
  return null; }"""
BUSY = "import time\nwhile True: time.sleep(0) if False else sum(range(10000))"


def plain_rate(page: str, seconds: float) -> float:
    """samples/s of the page's default config (epochs aside) trained in a plain 1-thread process for ``seconds``."""
    code = f"""
import json, sys, time, torch
sys.path.insert(0, {str(ROOT)!r})
torch.set_num_threads(1)
from vaelab.data import load_data
from vaelab.training import Trainer
from vaelab.variants import get_variant
config = get_variant({page!r}).config_cls.from_preset(None, epochs={EPOCHS})
trainer = Trainer({page!r}, config, load_data("mnist-5k"), seed=0)
trainer.advance(max_seconds=1.0)
step, began = trainer.step, time.perf_counter()
while time.perf_counter() - began < {seconds}:
    trainer.advance(max_seconds=0.2)
print(json.dumps((trainer.step - step) * config.batch_size / (time.perf_counter() - began)))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def batch_size(page: str) -> int:
    sys.path.insert(0, str(ROOT))
    from vaelab.variants import get_variant

    return int(get_variant(page).config_cls.from_preset(None).batch_size)


def page_title(page: str) -> str:
    sys.path.insert(0, str(ROOT))
    from vaelab.variants import VARIANTS

    return VARIANTS[page].title


def measure_page(playwright, page_key: str, args, workdir: Path) -> dict:
    server = start_server(workdir)
    browser = launch_browser(playwright)
    try:
        width, height = (int(v) for v in args.viewport.split("x"))
        page = browser.new_page(viewport={"width": width, "height": height})
        open_page(page, server.url, page_title(page_key))  # from the root: a deep link as first request can fail
        start = page.get_by_role("button", name="Start")
        start.wait_for(timeout=WAIT_MS)
        box = page.get_by_label("Epochs", exact=True).first  # the form's (the binary VAE's companion has one too)
        box.fill(str(EPOCHS))
        box.press("Enter")
        page.wait_for_timeout(1500)
        start.click()
        page.mouse.move(width // 2, height // 2)
        page.mouse.wheel(0, -10_000)  # back to the top (typing into Epochs scrolled): the live regions on screen
        page.wait_for_function(f"() => ({STEP})() !== null", timeout=WAIT_MS)
        page.wait_for_timeout(args.warm * 1000)
        ages_before = len(page.evaluate(AGES))
        step0, began = page.evaluate(STEP), time.perf_counter()
        server0, tree0, browser0 = process_cpu(server.process.pid), process_tree_cpu(server.process.pid), browser_cpu()
        page.wait_for_timeout(args.seconds * 1000)
        server1, tree1, browser1 = process_cpu(server.process.pid), process_tree_cpu(server.process.pid), browser_cpu()
        wall = time.perf_counter() - began
        step1 = page.evaluate(STEP)
        ages = page.evaluate(AGES)[ages_before:]
        errors = page.locator('[data-testid="stException"]').count()
        rate = (step1 - step0) * batch_size(page_key) / wall if step0 is not None and step1 is not None else None
        deciles = statistics.quantiles(ages, n=10) if len(ages) >= 10 else [float("nan")] * 9
        return {"page": page_key, "server": (server1 - server0) / wall,
                "workers": (tree1 - tree0 - (server1 - server0)) / wall, "browser": (browser1 - browser0) / wall,
                "rate": rate, "age_p50": statistics.median(ages) if ages else None, "age_p90": deciles[8],
                "frames": len(ages), "errors": errors}
    finally:
        browser.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default=",".join(PAGES))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warm", type=float, default=5.0)
    parser.add_argument("--viewport", default="1280x800")
    parser.add_argument("--load", action="store_true", help="keep one core busy with another process")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.load else None
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
            for page_key in args.pages.split(","):
                plain = plain_rate(page_key, args.seconds / 2)
                row = measure_page(playwright, page_key, args, Path(tmp))
                row["plain"] = plain
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if busy is not None:
            busy.kill()
    busy_note = " (one core kept busy)" if args.load else ""
    print(f"\nload average {load_average():.2f}{busy_note}, viewport {args.viewport}")
    print("| page | server (cores) | workers | browser | in-app / plain | frame age p50 / p90 (s) | frames | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = f"{r['rate'] / r['plain']:.0%}" if r["rate"] else "?"
        print(f"| {r['page']} | {r['server']:.3f} | {r['workers']:.2f} | {r['browser']:.2f} | {ratio} "
              f"({r['rate'] or 0:,.0f} / {r['plain']:,.0f} samples/s) | {r['age_p50'] or 0:.2f} / {r['age_p90']:.2f} "
              f"| {r['frames']} | {r['errors']} |")


if __name__ == "__main__":
    main()
