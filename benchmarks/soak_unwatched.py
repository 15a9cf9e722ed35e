"""Soak: runs started and abandoned in every way a class abandons them, for N minutes; prints hangs, lost runs and
the server's memory.

Starts ``streamlit run app.py`` on a free localhost port (offline dataset ``mnist-5k``, checkpoints in a temp folder,
a short grace period: ``--grace``) and drives headless Chromium (Playwright). Each cycle opens a variant page in a
new tab, sets a short (ends while nobody watches) or a long run (outlasts the grace period), presses Start and then
abandons the run one way, in turn:

- ``reload``: reloads mid-run (the run must come back, training on), then closes the tab;
- ``close``: closes the tab mid-run;
- ``navigate``: goes to another variant page, starts a run there too, comes back (the first run must still be
  there), then closes the tab;
- ``kill``: kills the run's worker process (SIGKILL; the page must say so and keep the run), then closes the tab.

Every abandoned run is checked once it has been unwatched for the grace period and more: its old address (its
private token) opened in a new tab must show it (training, paused, finished or stopped, restored from its autosave
when the keeper archived it) at no earlier step than last seen; else it counts as lost. Every action is timed until
the page answers it (the heading, the progress line, the status); one that takes longer than ``--answer-s`` is slow,
one with no answer within 60 s is a hang. The server's RSS is printed every cycle; at the end, after every run has
been archived, its growth since the first cycle. Exit status 1 on a hang or a lost run.

    .venv/bin/python benchmarks/soak_unwatched.py                     # 30 minutes, grace period 20 s
    .venv/bin/python benchmarks/soak_unwatched.py --minutes 3 --grace 10
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import launch_browser, load_average, rss_mb, set_epochs, sidebar_link, start_server  # noqa: E402

HANG_MS = 60_000
MODES = ("reload", "close", "navigate", "kill")
PAGES = ("Autoencoder", "Sparse autoencoder", "Denoising autoencoder", "k-sparse autoencoder")
SHORT_EPOCHS, LONG_EPOCHS = 3, 500
STEP = re.compile(r"step ([\d,]+)/|([\d,]+) steps")
STREAM_PROGRESS = "() => { const e = document.querySelector('.progress .text'); return e ? e.textContent : ''; }"


def progress_text(page, timeout_ms: float) -> str:
    """The progress line: the live stream's while the run trains (in its component's frame), else the page's."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        for frame in page.frames:
            if "vaelab_live_stream" in frame.url:
                try:
                    text = frame.evaluate(STREAM_PROGRESS)
                except Exception:  # noqa: BLE001 (a frame that went away meanwhile)
                    continue
                if STEP.search(text or ""):
                    return text
        shown = page.get_by_text(STEP).filter(visible=True)
        if shown.count():
            return shown.first.inner_text(timeout=timeout_ms)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no progress line within {timeout_ms / 1000:.0f} s")
        page.wait_for_timeout(100)
STATUSES = ("Training", "Paused", "Finished", "Stopped")
NOT_STARTED = "Not started"


class RunLost(Exception):
    """The page answered, without the run it should show."""


@dataclass
class Abandoned:
    address: str
    title: str
    step: int
    mode: str
    at: float  # time.monotonic() when its tab went


class Soak:
    def __init__(self, browser, url: str, answer_s: float) -> None:
        self.browser, self.url, self.answer_s = browser, url, answer_s
        self.timings: list[tuple[str, float]] = []
        self.hangs: list[str] = []
        self.lost: list[str] = []
        self.checked = 0

    # -- timing -----------------------------------------------------------------------------------------------
    def timed(self, what: str, action, answered) -> bool:
        """``action()``, then wait for ``answered(timeout_ms)``; the time is recorded, a timeout is a hang."""
        started = time.perf_counter()
        try:
            action()
            answered(HANG_MS)
        except RunLost as error:
            self.lost.append(f"{what}: {error}")
            return False
        except Exception as error:  # noqa: BLE001 (playwright's TimeoutError and kin: the page did not answer)
            self.hangs.append(f"{what}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
            return False
        self.timings.append((what, time.perf_counter() - started))
        return True

    # -- page helpers -------------------------------------------------------------------------------------------
    @staticmethod
    def step(page) -> int:
        found = STEP.search(progress_text(page, HANG_MS))
        return int((found.group(1) or found.group(2)).replace(",", ""))

    @staticmethod
    def status(page, timeout_ms: int) -> str:
        """The status badge's word (one of STATUSES or NOT_STARTED), read in the row of the Start button (the form
        above it has a "Training" heading of its own)."""
        start = page.get_by_role("button", name="Start")
        row = page.locator('[data-testid="stHorizontalBlock"]').filter(has=start).last
        text = row.inner_text(timeout=timeout_ms)
        found = re.search(rf"({'|'.join((*STATUSES, NOT_STARTED))})", text)
        if found is None:
            raise TimeoutError(f"no status in the button row: {text[:120]!r}")
        return found.group(1)

    def wait_status(self, page, wanted: tuple[str, ...], timeout_ms: int) -> None:
        """Until the status is one of ``wanted``; a page that shows no run any more raises RunLost."""
        deadline = time.monotonic() + timeout_ms / 1000
        while (now := self.status(page, timeout_ms)) not in wanted:
            if now == NOT_STARTED and NOT_STARTED not in wanted:
                raise RunLost("the page shows no run (Not started)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"status {now!r}, wanted {wanted}")
            page.wait_for_timeout(200)

    def heading(self, page, title: str):
        return lambda timeout: page.get_by_role("heading", name=title).first.wait_for(timeout=timeout)

    def open_and_start(self, title: str, epochs: int):
        page = self.browser.new_page(viewport={"width": 1280, "height": 800})

        def go_root() -> None:
            page.goto(f"{self.url}/")

        if not self.timed("open home", go_root, lambda t: sidebar_link(page, title).wait_for(timeout=t)):
            return page, False
        page.wait_for_timeout(500)
        if not self.timed("open page", sidebar_link(page, title).click, self.heading(page, title)):
            return page, False
        set_epochs(page, epochs)
        start = page.get_by_role("button", name="Start")
        ok = self.timed("start", start.click, lambda t: progress_text(page, t))
        return page, ok

    # -- the ways to abandon a run ---------------------------------------------------------------------------
    def abandon(self, mode: str, title: str, other: str, epochs: int, server_pid: int) -> list[Abandoned]:
        page, ok = self.open_and_start(title, epochs)
        runs: list[Abandoned] = []
        try:
            if not ok:
                return runs
            page.wait_for_timeout(3000)
            before = self.step(page)
            if mode == "reload":
                if not self.timed("reload", page.reload, lambda t: self.wait_status(page, STATUSES, t)):
                    return runs  # lost or hung: counted
                self.expect_step(page, before, f"reload of {title}")
            elif mode == "navigate":
                if self.timed("navigate away", sidebar_link(page, other).click, self.heading(page, other)):
                    set_epochs(page, epochs)
                    self.timed("start", page.get_by_role("button", name="Start").click,
                               lambda t: progress_text(page, t))
                    page.wait_for_timeout(2000)
                    runs.append(Abandoned(page.url, other, self.step(page), mode, 0.0))
                    if self.timed("navigate back", sidebar_link(page, title).click, self.heading(page, title)):
                        self.wait_status(page, STATUSES, HANG_MS)
                        self.expect_step(page, before, f"navigation back to {title}")
            elif mode == "kill":
                worker = newest_worker(server_pid)
                if worker is not None:
                    os.kill(worker, signal.SIGKILL)
                    self.timed("killed worker shown", lambda: None,
                               lambda t: self.wait_status(page, ("Stopped", "Finished"), t))
            runs.append(Abandoned(page.url, title, self.step(page), mode, 0.0))
        except RunLost as error:
            self.lost.append(f"{mode} on {title}: {error}")
        except Exception as error:  # noqa: BLE001 (a page that stopped answering mid-cycle)
            self.hangs.append(f"{mode} on {title}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
        finally:
            page.close()  # the tab goes: nobody watches its runs any more
        now = time.monotonic()
        return [Abandoned(r.address, r.title, r.step, r.mode, now) for r in runs]

    def expect_step(self, page, before: int, what: str) -> None:
        after = self.step(page)
        if after < before:
            self.lost.append(f"{what}: step {after} < {before}")

    def check(self, run: Abandoned) -> None:
        """The run's old address, in a new tab: the run must be there, at no earlier step."""
        page = self.browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            self.checked += 1
            if not self.timed("reattach", lambda: page.goto(run.address), self.heading(page, run.title)):
                return
            status = self.status(page, HANG_MS)
            step = self.step(page) if status != NOT_STARTED else -1
            if status == NOT_STARTED or step < run.step:
                self.lost.append(f"{run.mode} run on {run.title}: {status} at step {step} (was {run.step})")
        except Exception as error:  # noqa: BLE001
            self.hangs.append(f"reattach {run.title}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
        finally:
            page.close()


def newest_worker(server_pid: int) -> int | None:
    """The newest training process of the server (a child of its forkserver)."""
    def stat(pid: int) -> tuple[int, int] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = text[text.rindex(")") + 2:].split()
        return int(fields[1]), int(fields[19])  # parent, start time

    procs = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := stat(int(p.name)))}
    forkservers = [pid for pid, (parent, _) in procs.items() if parent == server_pid
                   and "forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    workers = [(start, pid) for pid, (parent, start) in procs.items() if parent in forkservers]
    return max(workers)[1] if workers else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--grace", type=float, default=20.0, help="VAELAB_UNWATCHED_GRACE_S of the server (s)")
    parser.add_argument("--answer-s", type=float, default=5.0, help="an action answered later than this is slow")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="vaelab-soak-unwatched-"))
    server = start_server(workdir, {"VAELAB_UNWATCHED_GRACE_S": str(args.grace)})
    pid = server.process.pid
    print(f"server pid {pid}, grace {args.grace:.0f} s, {args.minutes:.0f} min, load {load_average():.2f}",
          flush=True)
    pending: list[Abandoned] = []
    first_rss: float | None = None
    cycles = 0
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            soak = Soak(browser, server.url, args.answer_s)
            end = time.monotonic() + args.minutes * 60
            plan = itertools.cycle(itertools.product((SHORT_EPOCHS, LONG_EPOCHS), MODES))
            while time.monotonic() < end:
                epochs, mode = next(plan)
                title, other = PAGES[cycles % len(PAGES)], PAGES[(cycles + 1) % len(PAGES)]
                pending += soak.abandon(mode, title, other, epochs, pid)
                cycles += 1
                due = [r for r in pending if time.monotonic() - r.at > args.grace + 15]
                for run in due:
                    soak.check(run)
                pending = [r for r in pending if r not in due]
                rss = rss_mb(pid)
                first_rss = rss if first_rss is None else first_rss
                print(f"cycle {cycles:3d} {mode:8s} {epochs:3d} ep {title:22s} server RSS {rss:7.1f} MB · "
                      f"checked {soak.checked} · slow {sum(t > args.answer_s for _, t in soak.timings)} · "
                      f"hangs {len(soak.hangs)} · lost {len(soak.lost)} · load {load_average():.2f}", flush=True)
            time.sleep(args.grace + 15)  # every run unwatched past its grace period: paused, saved, archived
            for run in pending:
                soak.check(run)
            time.sleep(args.grace + 15)  # the checked runs archived again
            browser.close()
        last_rss = rss_mb(pid)
    finally:
        server.stop()
    times = sorted(t for _, t in soak.timings)
    slow = [(w, round(t, 1)) for w, t in soak.timings if t > args.answer_s]
    print(f"\n{cycles} cycles, {soak.checked} abandoned runs checked, {len(times)} timed actions")
    if times:
        print(f"answer times: median {statistics.median(times):.2f} s, p95 {times[int(0.95 * (len(times) - 1))]:.2f} s,"
              f" max {times[-1]:.2f} s; over {args.answer_s:.0f} s: {len(slow)} {slow[:10]}")
    print(f"hangs (no answer within {HANG_MS // 1000} s): {len(soak.hangs)}")
    for line in soak.hangs:
        print("  ", line)
    print(f"lost runs: {len(soak.lost)}")
    for line in soak.lost:
        print("  ", line)
    print(f"server RSS: {first_rss:.1f} MB after the first cycle, {last_rss:.1f} MB at the end "
          f"({last_rss - first_rss:+.1f} MB)")
    print(f"server log: {server.log}")
    return 1 if soak.hangs or soak.lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
