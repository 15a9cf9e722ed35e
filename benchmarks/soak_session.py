"""Soak: one live training session in a real browser for N minutes; prints the server's memory over time.

Starts ``streamlit run app.py`` on a free localhost port (offline dataset ``mnist-5k``, checkpoints in a temp
folder), opens the root URL in headless Chromium (Playwright), goes to a page, sets a long run, presses Start and
leaves the live charts redrawing. Every ``--every`` seconds it prints the server's RSS (from /proc), the step shown
in the progress bar and whether an exception box is on screen. At the end: RSS after warm-up and at the end, the
growth per hour, and an exit status of 1 if the page showed an exception or training stopped.

    .venv/bin/python benchmarks/soak_session.py                    # 30 minutes on the Autoencoder page
    .venv/bin/python benchmarks/soak_session.py --minutes 2 --every 10
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
WAIT_MS = 60_000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def start_server(port: int, checkpoints: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "VAELAB_DATASET": "mnist-5k", "VAELAB_CHECKPOINT_DIR": str(checkpoints)}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    server.kill()
    raise SystemExit(f"no health answer within 90 s:\n{log.read_text()[-3000:]}")


def open_page_and_start(page, url: str, title: str, epochs: int) -> None:
    page.goto(f"{url}/")  # from the root: a deep link as first request once showed the legacy page list
    page.get_by_text("Lab settings").wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(1000)
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.locator("a").filter(has=page.get_by_text(title, exact=True)).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=WAIT_MS)
    epochs_box = page.get_by_label("Epochs", exact=True)
    epochs_box.fill(str(epochs))
    epochs_box.press("Enter")
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Start").click()
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=WAIT_MS)


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
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="vaelab-soak-") as tmp:
        port, log = free_port(), Path(tmp) / "streamlit.log"
        server = start_server(port, Path(tmp) / "checkpoints", log)
        rows: list[tuple[float, float, int | None, int]] = []
        try:
            with sync_playwright() as p:
                launch = {"args": LAUNCH_ARGS}
                if CHROMIUM.exists():
                    launch["executable_path"] = str(CHROMIUM)
                browser = p.chromium.launch(**launch)
                page = browser.new_page(viewport={"width": 1400, "height": 2000})
                print(f"server pid {server.pid}, RSS before the page: {rss_mb(server.pid):.0f} MB", flush=True)
                open_page_and_start(page, f"http://127.0.0.1:{port}", args.page, args.epochs)
                started = time.monotonic()
                print(f"{'minutes':>8} {'RSS MB':>8} {'step':>9} {'exceptions':>10}", flush=True)
                while True:
                    elapsed = time.monotonic() - started
                    errors = page.locator('[data-testid="stException"]').count()
                    rows.append((elapsed, rss_mb(server.pid), current_step(page), errors))
                    t, mb, step, errors = rows[-1]
                    print(f"{t / 60:8.2f} {mb:8.0f} {step if step is not None else '-':>9} {errors:>10}", flush=True)
                    if elapsed >= args.minutes * 60:
                        break
                    page.wait_for_timeout(int(min(args.every, args.minutes * 60 - elapsed + 0.5) * 1000))
                page.screenshot(path=str(Path(tempfile.gettempdir()) / "vaelab-soak.png"), full_page=True)
                browser.close()
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    return report(rows, args.warmup)


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
