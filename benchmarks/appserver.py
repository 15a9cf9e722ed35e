"""Shared by the browser benchmarks: start ``streamlit run app.py`` on a free port, open headless Chromium.

Not a benchmark itself. The server runs with the offline dataset (``VAELAB_DATASET=mnist-5k``) and checkpoints in a
temporary folder; the browser is Debian's ``/usr/bin/chromium`` driven by Python Playwright, started with the flags
the project's browser test uses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
SERVER_FLAGS = ["--server.headless", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
HEALTH_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> float:
    """The 1-minute load average (what every figure is printed with)."""
    return os.getloadavg()[0]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path
    started: float  # time.perf_counter() just before the process was spawned
    healthy_after: float  # seconds from spawn to the first /_stcore/health answer

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def server_command(port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
            "--server.address", "127.0.0.1", *SERVER_FLAGS]


def start_server(workdir: Path, env: Mapping[str, str] | None = None) -> Server:
    """Spawn the app and wait for its health endpoint; ``env`` adds to the environment (e.g. VAELAB_TORCH_THREADS)."""
    port = free_port()
    log = workdir / f"streamlit-{port}.log"
    full_env = {**os.environ, "VAELAB_DATASET": "mnist-5k", "VAELAB_CHECKPOINT_DIR": str(workdir / "checkpoints"),
                **(env or {})}
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(server_command(port), cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    deadline = started + HEALTH_TIMEOUT_S
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return Server(process, url, log, started, time.perf_counter() - started)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"no health answer within {HEALTH_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def launch_browser(playwright):
    launch = {"args": LAUNCH_ARGS}
    if CHROMIUM.exists():
        launch["executable_path"] = str(CHROMIUM)
    return playwright.chromium.launch(**launch)


def sidebar_link(page, title: str):
    """The navigation link of a page, by its exact title."""
    nav = page.locator(".st-key-vaelab-nav")  # the app's own links (vaelab/ui/pages.py draw_navigation)
    return nav.locator("a").filter(has=page.get_by_text(title, exact=True))


def open_page(page, url: str, title: str, timeout_ms: int = 60_000) -> None:
    """From the ROOT url (a deep link as first request once showed the legacy page list), click the page's link."""
    page.goto(f"{url}/")
    sidebar_link(page, title).wait_for(timeout=timeout_ms)
    sidebar_link(page, title).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_ms)


def set_epochs(page, epochs: int) -> None:
    """Type ``epochs`` into the page's form (a run that outlasts the measurement) and wait for its rerun."""
    box = page.get_by_label("Epochs", exact=True)
    box.fill(str(epochs))
    box.press("Enter")
    page.wait_for_timeout(1500)  # the rerun that takes the value


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command name, CPU seconds used) of a process, from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), name, (int(fields[11]) + int(fields[12])) / ticks


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by the process ``pid`` alone (0 once it is gone)."""
    stat = _stat(pid)
    return stat[2] if stat else 0.0


def process_tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and all its living descendants."""
    stats = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][2]
        todo.extend(children.get(pid, []))
    return total


def browser_pids() -> list[int]:
    """Chromium processes started by this Python process (through Playwright's driver)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and (s := _stat(int(p.name))) and "chrom" in s[1].lower():
            parent = s[0]
            while parent > 1:
                if parent == os.getpid():
                    out.append(int(p.name))
                    break
                up = _stat(parent)
                parent = up[0] if up else 0
    return out


def browser_cpu() -> float:
    return sum(_stat(pid)[2] for pid in browser_pids() if _stat(pid))
