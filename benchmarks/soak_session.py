"""Soak: one live training session in a real browser for N minutes; prints the server's memory over time, its idle
figure before and its figure after Stop / Reset.

Starts ``streamlit run app.py`` on a free localhost port (offline dataset ``mnist-5k``, checkpoints in a temp
folder), opens the root URL in headless Chromium (Playwright), goes to a page, sets a long run, presses Start and
leaves the live charts redrawing. Every ``--every`` seconds it prints the server's RSS (from /proc), the step shown
in the progress bar and whether an exception box is on screen. At the end: RSS after warm-up and at the end, the
growth per hour, and an exit status of 1 if the page showed an exception or training stopped.

    .venv/bin/python benchmarks/soak_session.py                    # 30 minutes on the Autoencoder page
    .venv/bin/python benchmarks/soak_session.py --minutes 2 --every 10
    .venv/bin/python benchmarks/soak_session.py --minutes 10 --more-runs 3 --more-minutes 1   # + 3 short runs

``--more-runs N`` then trains N more runs of ``--more-minutes`` each on the same page, each ended by Stop / Reset,
and prints the server's RSS after each Stop: whether what stays after a Stop is the session's (it would grow run by
run) or the server's once (imports and caches the first run loaded, the same after every run).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import launch_browser, open_page, rss_mb, set_epochs, start_server  # noqa: E402

WAIT_MS = 60_000


def open_page_and_start(page, url: str, title: str, epochs: int) -> None:
    open_page(page, url, title, WAIT_MS)
    set_epochs(page, epochs)
    page.get_by_role("button", name="Start").click()
    page.locator('[data-testid="stPlotlyChart"], iframe[title$="vaelab_live_chart"]').first.wait_for(timeout=WAIT_MS)


def current_step(page) -> int | None:
    bars = page.locator('[data-testid="stProgress"]')
    if bars.count() == 0:
        return None
    match = re.search(r"step ([\d,]+)", bars.first.inner_text())
    return int(match.group(1).replace(",", "")) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to keep training (default 30)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--page", default="Autoencoder", help="the sidebar link to open (default Autoencoder)")
    parser.add_argument("--epochs", type=int, default=10000, help="epochs typed into the form (a run that lasts)")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the reference RSS sample")
    parser.add_argument("--after-stop", type=float, default=15.0, help="seconds after Stop / Reset before the last "
                        "RSS sample")
    parser.add_argument("--more-runs", type=int, default=0, help="further runs after the first Stop (default 0)")
    parser.add_argument("--more-minutes", type=float, default=1.0, help="minutes of each further run")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="vaelab-soak-") as tmp:
        server = start_server(Path(tmp))
        pid = server.process.pid
        rows: list[tuple[float, float, int | None, int]] = []
        try:
            with sync_playwright() as p:
                browser = launch_browser(p)
                page = browser.new_page(viewport={"width": 1400, "height": 2000})
                open_page(page, server.url, args.page, WAIT_MS)
                page.wait_for_timeout(5000)
                idle = rss_mb(pid)  # the page open, nothing trained: torch, the data and the page's imports loaded
                print(f"server pid {pid}, RSS idle (the page open, before Start): {idle:.0f} MB", flush=True)
                open_page_and_start(page, server.url, args.page, args.epochs)
                started = time.monotonic()
                print(f"{'minutes':>8} {'RSS MB':>8} {'step':>9} {'exceptions':>10}", flush=True)
                while True:
                    elapsed = time.monotonic() - started
                    errors = page.locator('[data-testid="stException"]').count()
                    rows.append((elapsed, rss_mb(pid), current_step(page), errors))
                    t, mb, step, errors = rows[-1]
                    print(f"{t / 60:8.2f} {mb:8.0f} {step if step is not None else '-':>9} {errors:>10}", flush=True)
                    if elapsed >= args.minutes * 60:
                        break
                    page.wait_for_timeout(int(min(args.every, args.minutes * 60 - elapsed + 0.5) * 1000))
                page.screenshot(path=str(Path(tempfile.gettempdir()) / "vaelab-soak.png"), full_page=True)
                page.get_by_role("button", name="Stop / Reset").click()
                page.get_by_role("button", name="Discard the run").click(timeout=WAIT_MS)  # unsaved: it asks
                page.wait_for_timeout(int(args.after_stop * 1000))
                stopped = rss_mb(pid)
                after_more = []
                for _ in range(args.more_runs):  # Start again, train, Stop / Reset, the RSS after it
                    page.get_by_role("button", name="Start").click()
                    page.wait_for_timeout(int(args.more_minutes * 60_000))
                    page.get_by_role("button", name="Stop / Reset").click()
                    page.get_by_role("button", name="Discard the run").click(timeout=WAIT_MS)
                    page.wait_for_timeout(int(args.after_stop * 1000))
                    after_more.append(rss_mb(pid))
                browser.close()
        finally:
            server.stop()
    code = report(rows, args.warmup)
    print(f"idle {idle:.0f} MB; {args.after_stop:g} s after Stop / Reset: {stopped:.0f} MB ({stopped - idle:+.0f} MB "
          f"against idle; goal within 100 MB); growth over the session {rows[-1][1] - idle:+.0f} MB against idle "
          f"(goal < 200 MB)")
    if after_more:
        print(f"after each of {len(after_more)} more runs of {args.more_minutes:g} min and Stop / Reset: "
              + ", ".join(f"{mb:.0f} MB ({mb - idle:+.0f})" for mb in after_more) + " against idle")
    return code


def report(rows: list[tuple[float, float, int | None, int]], warmup: float) -> int:
    after = [r for r in rows if r[0] >= warmup] or rows[-1:]
    first, last = after[0], rows[-1]
    hours = max(last[0] - first[0], 1e-9) / 3600
    steps = [r[2] for r in rows if r[2] is not None]
    moving = len(steps) >= 2 and steps[-1] > steps[0]
    print(f"\nRSS after {first[0] / 60:.1f} min: {first[1]:.0f} MB; at the end ({last[0] / 60:.1f} min): "
          f"{last[1]:.0f} MB; max {max(r[1] for r in rows):.0f} MB; growth {(last[1] - first[1]) / hours:+.0f} MB/h")
    print(f"steps: {steps[0] if steps else '-'} -> {steps[-1] if steps else '-'} "
          f"({'still training' if moving else 'NOT advancing'}); exception boxes seen: {max(r[3] for r in rows)}")
    return 0 if moving and max(r[3] for r in rows) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
