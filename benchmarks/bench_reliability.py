"""Reliability: hostile inputs against a running app, round after round; prints what was refused and what it cost.

Starts ``streamlit run app.py`` on a free localhost port (``appserver.start_server``: offline dataset, checkpoints in
a temp folder), opens it once in headless Chromium (1280x800) and records the server's idle RSS. Then, per round,
through the real browser (the root URL, then the "Autoencoder" sidebar link):

1. hostile uploads, each set on the file uploader of the page's "Save / load" expander: a config claiming
   ``input_dim = 250000`` and ``hidden_sizes = [2048]``, a trainer state with ``seed = "x"``, a weight full of NaN,
   4,000 random bytes, a pickle of a non-tensor object (a ``pathlib.Path``). The four edited files come from a tiny
   ``ae`` trained on ``digits`` (16 hidden units, a 4-unit code, 1 epoch). Refused = an error box "Not uploaded".
2. an oversized config: twelve hidden layers of 4,096 typed into "Hidden layers". Refused = an error naming the
   "memory budget" and a disabled Start button; the field goes back to 400 afterwards.
3. kill -9 during a save: ``python -m vaelab train ae ... --set hidden_sizes=2048,2048 --name victim --overwrite``
   into the server's checkpoint folder, which already holds a valid ``ae/victim.pt`` (a kill must leave the old
   file whole). The CLI spends its first 8-25 s (a busy 2-core machine) importing torch and training, so the kill
   is aimed at the save: SIGKILL at a random moment in the first ``KILL_WINDOW_S`` after its temp file appears.
   Afterwards every ``*.pt`` in the folder must load with ``load_checkpoint``; leftover hidden temp files
   (``.*.tmp``, ``.*.upload``) are counted, not deleted (the app deletes stale ones at its next start).

Before the rounds, once: the payloads of the hostile-data report, each uploaded through the same expander with the
server's settled RSS before and after it (the growth that stays) and its high-water mark while refusing it: a history
of 6 million rows, a config nested 100,000 levels deep, a mixture claiming a billion components. Then, on the command
line, each as a fresh process that reports its own peak RSS: ``train --dataset idx:DIR`` on a gzip bomb of 2.6
million images, on headers whose sizes overflow and on links to /dev/zero; ``eval`` of the three checkpoints;
``pretrain --ray auto`` with Ray hidden. Each must end with one line (no traceback), exit 1 or 2, and leave the server
within 100 MB of where it was.

The server's RSS is sampled after every hostile input; the peak is the larger of those samples and the kernel's
high-water mark (``VmHWM``, reset after the idle sample), so a short spike between samples counts too.
Exit status 0 when the server survived (alive, health endpoint "ok"), every hostile input was refused and every
checkpoint is intact; 1 otherwise. ``--seconds`` caps the whole run: no round starts after it.

    .venv/bin/python benchmarks/bench_reliability.py [--rounds 3] [--seconds 300]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import ROOT, launch_browser, load_average, open_page, rss_mb, start_server  # noqa: E402

sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tests.hostile_files import (  # noqa: E402
    deep_config,
    huge_mixture,
    idx_bomb,
    idx_device_links,
    idx_overflow,
    long_history,
    small_checkpoint,
)
from vaelab.checkpoints import load_checkpoint, save_trainer_to  # noqa: E402
from vaelab.data import load_data  # noqa: E402
from vaelab.training import Trainer  # noqa: E402
from vaelab.variants import get_variant  # noqa: E402

PAGE = "Autoencoder"
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 60_000
OVERSIZED = ",".join(["4096"] * 12)
DEFAULT_HIDDEN = "400"
KILL_WINDOW_S = 0.2  # the kill lands this long at most after the save's temp file appears (the save: 0.3-0.5 s)
SAVE_WAIT_S = 120.0  # at most this long for the CLI to reach its save
VICTIM = ["-m", "vaelab", "train", "ae", "--dataset", "digits", "--epochs", "1", "--set", "hidden_sizes=2048,2048",
          "--name", "victim", "--overwrite", "-q"]

# the newest upload feedback box ("Not uploaded: ..." / "Uploaded ...") whose text differs from the previous one
FEEDBACK = """previous => {
  for (const box of document.querySelectorAll('[data-testid^="stAlertContent"]')) {
    const text = box.innerText.trim();
    if (/uploaded/i.test(text) && text !== previous)
      return {error: box.dataset.testid === 'stAlertContentError', text: text};
  }
  return null;
}"""


@dataclass
class Tally:
    uploads: int = 0
    uploads_refused: int = 0
    configs: int = 0
    configs_refused: int = 0
    kills: int = 0
    kills_in_save: int = 0
    exceptions: int = 0  # exception boxes (tracebacks) seen in the page
    rss: list[float] = field(default_factory=list)  # MB, one sample after each hostile input
    problems: list[str] = field(default_factory=list)  # one line per input not refused, or a round stopped by an error


# -- the hostile files -----------------------------------------------------------------------------------------
def train_small() -> Trainer:
    """A tiny ae (64-16-4) trained for 1 epoch on digits."""
    config = get_variant("ae").config_cls(hidden_sizes=(16,), code_size=4, epochs=1)
    trainer = Trainer("ae", config, load_data("digits"), seed=0)
    trainer.run()
    return trainer


def hostile_files(folder: Path, small: Path) -> dict[str, bytes]:
    """{kind: file bytes} of the five hostile uploads, written to ``folder`` from the valid checkpoint ``small``."""
    def edited(name: str, edit) -> Path:
        payload = torch.load(small, weights_only=True)
        edit(payload)
        torch.save(payload, folder / name)
        return folder / name

    def huge(p: dict) -> None:
        p["input_dim"] = 250_000
        p["config"]["hidden_sizes"] = [2048]

    def nan_weight(p: dict) -> None:
        next(v for v in p["model_state"].values() if v.is_floating_point()).fill_(float("nan"))

    (folder / "random.pt").write_bytes(os.urandom(4000))
    torch.save({"x": pathlib.Path("a")}, folder / "object.pt")
    paths = {"huge-config": edited("huge.pt", huge),
             "bad-seed": edited("seed.pt", lambda p: p["trainer_state"].update(seed="x")),
             "nan-weight": edited("nan.pt", nan_weight),
             "random-bytes": folder / "random.pt",
             "python-object": folder / "object.pt"}
    return {kind: path.read_bytes() for kind, path in paths.items()}


def payload_files(folder: Path, small: Path) -> dict[str, Path]:
    """The reported hostile-data checkpoints: {kind: path}."""
    gmm = small_checkpoint(folder / "small-gmm.pt", "ae-gmm")
    return {"history-6M-rows": long_history(small, folder / "history.pt"),
            "config-nested-100k": deep_config(small, folder / "deep.pt"),
            "mixture-1e9-components": huge_mixture(gmm, folder / "mixture.pt")}


@dataclass
class PayloadResult:
    kind: str
    refused: bool
    line: str  # the feedback or the last line on stderr
    before_mb: float = 0.0  # the server's settled RSS before (uploads) / 0 (command lines)
    after_mb: float = 0.0  # ... after
    peak_mb: float = 0.0  # the server's high-water mark while refusing / the command's own peak RSS
    seconds: float = 0.0


# `python -m vaelab ARGS` that writes its own peak RSS (VmHWM, kB) to $VAELAB_PEAK_FILE as it exits (a child's
# ru_maxrss would include the high-water mark it inherits from this process at fork)
PEAK_WRAPPER = """import os, runpy
try:
    runpy.run_module("vaelab", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status, open(os.environ["VAELAB_PEAK_FILE"], "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM")).split()[1])
"""


def cli_payloads(folder: Path, checkpoints: dict[str, Path]) -> list[PayloadResult]:
    """Each payload on the command line as a fresh process: exit status 1 or 2, one stderr line, no traceback."""
    runs = {"train idx: gzip bomb (2.6M images)": ["train", "ae", "--dataset", f"idx:{idx_bomb(folder / 'bomb')}"],
            "train idx: overflowing header": ["train", "ae", "--dataset", f"idx:{idx_overflow(folder / 'over')}"],
            "train idx: links to /dev/zero": ["train", "ae", "--dataset", f"idx:{idx_device_links(folder / 'zero')}"],
            **{f"eval {kind}": ["eval", str(path), "-q"] for kind, path in checkpoints.items()},
            "pretrain --ray without Ray": ["pretrain", "--only", "ae", "--ray", "auto", "--no-metrics", "-q",
                                                   "--dataset", "digits", "--dir", str(folder / "classroom")]}
    no_ray = folder / "no-ray"
    no_ray.mkdir()
    (no_ray / "ray.py").write_text("raise ImportError('hidden by the benchmark')\n")
    results = []
    for kind, argv in runs.items():
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*([str(no_ray)] if "--ray" in argv else []), str(ROOT)])}
        peak_file = folder / "peak-kb"
        env["VAELAB_PEAK_FILE"] = str(peak_file)
        began = time.monotonic()
        child = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *argv], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        stderr = child.stderr
        lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("preparing")]
        one_line = len(lines) == 1 and "Traceback" not in stderr and "unexpected" not in stderr
        results.append(PayloadResult(kind, child.returncode in (1, 2) and one_line,
                                     f"exit {child.returncode}: {(lines or [''])[-1][:150]}",
                                     peak_mb=int(peak_file.read_text()) / 1024, seconds=time.monotonic() - began))
    return results


def payload_uploads(page, pid: int, files: dict[str, Path]) -> list[PayloadResult]:
    """Upload each payload once: refused, and the server's settled RSS before and after (the growth that stays)."""
    expander = save_load_expander(page)
    previous, results = "", []
    for kind, path in files.items():
        before = settled_rss_mb(page, pid)
        reset_peak_rss(pid)
        began = time.monotonic()
        result = upload(page, expander, f"payload-{kind}.pt", path.read_bytes(), previous)
        seconds = time.monotonic() - began
        peak = peak_rss_mb(pid)
        after = settled_rss_mb(page, pid)
        if result is None:
            results.append(PayloadResult(kind, False, "no feedback", before, after, peak, seconds))
            continue
        error, previous = result
        results.append(PayloadResult(kind, error and previous.startswith("Not uploaded"), previous[:150], before,
                                     after, peak, seconds))
    return results


def report_payloads(uploads: list[PayloadResult], commands: list[PayloadResult]) -> bool:
    """Print both tables; True when every payload was refused in one line and no upload left 100 MB behind."""
    print("\nhostile-data payloads uploaded to the app (server RSS, MB):")
    print(f"  {'payload':<24} {'refused':<8} {'before':>7} {'after':>7} {'stays':>6} {'peak':>7} {'s':>5}  feedback")
    for r in uploads:
        print(f"  {r.kind:<24} {'yes' if r.refused else 'NO':<8} {r.before_mb:>7.0f} {r.after_mb:>7.0f} "
              f"{r.after_mb - r.before_mb:>+6.0f} {r.peak_mb:>7.0f} {r.seconds:>5.1f}  {r.line}")
    print("hostile-data payloads on the command line (each a fresh process):")
    print(f"  {'command':<38} {'one line':<9} {'peak MB':>8} {'s':>5}  result")
    for r in commands:
        print(f"  {r.kind:<38} {'yes' if r.refused else 'NO':<9} {r.peak_mb:>8.0f} {r.seconds:>5.1f}  {r.line}")
    return all(r.refused for r in [*uploads, *commands]) and all(r.after_mb - r.before_mb < 100 for r in uploads)


# -- the server --------------------------------------------------------------------------------------------------
def reset_peak_rss(pid: int) -> None:
    """Reset the kernel's resident-memory high-water mark of ``pid`` (Linux clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of ``pid``'s resident memory (VmHWM) since the last reset, in MB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return 0.0


def settled_rss_mb(page, pid: int, most_s: float = 30.0) -> float:
    """The server's RSS once it stops moving (under 2 MB over 3 s; at most ``most_s``): the page keeps loading for
    several seconds after it is drawn (about +80 MB between 2 s and 10 s after opening it)."""
    samples = [rss_mb(pid)]
    while len(samples) < most_s and (len(samples) < 4 or max(samples[-4:]) - min(samples[-4:]) >= 2.0):
        page.wait_for_timeout(1000)
        samples.append(rss_mb(pid))
    return samples[-1]


def server_survived(server) -> bool:
    """The process is alive and its health endpoint answers "ok"."""
    if server.process.poll() is not None:
        return False
    try:
        with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=10) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


# -- one round in the browser ------------------------------------------------------------------------------------
def save_load_expander(page):
    """The "Save / load" expander, opened, with its file input attached."""
    expander = page.locator('[data-testid="stExpander"]').filter(has_text="Save / load")
    expander.locator("summary").click()
    expander.locator('input[type="file"]').wait_for(state="attached", timeout=WAIT_MS)
    return expander


def upload(page, expander, name: str, data: bytes, previous: str) -> tuple[bool, str] | None:
    """Set the uploader's file and wait for new feedback: (shown as an error box, its text), or None if none came."""
    expander.locator('input[type="file"]').set_input_files(
        files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}])
    try:
        found = page.wait_for_function(FEEDBACK, arg=previous, timeout=WAIT_MS).json_value()
    except Exception:  # Playwright's TimeoutError
        return None
    return found["error"], found["text"]


def hostile_uploads(page, files: dict[str, bytes], round_no: int, pid: int, tally: Tally) -> None:
    """Upload each hostile file once (a fresh name per round); count refusals, sample the server's RSS."""
    expander = save_load_expander(page)
    previous = ""
    for kind, data in files.items():
        name = f"r{round_no}-{kind}.pt"
        result = upload(page, expander, name, data, previous)
        tally.uploads += 1
        tally.rss.append(rss_mb(pid))
        if result is None:
            tally.problems.append(f"upload {name}: no feedback within {WAIT_MS // 1000} s")
            continue
        error, previous = result
        if error and previous.startswith("Not uploaded"):
            tally.uploads_refused += 1
        else:
            tally.problems.append(f"upload {name}: not refused: {previous[:200]!r}")


def oversized_config(page, pid: int, tally: Tally) -> None:
    """Type twelve 4096-unit layers: refused when the form shows a "memory budget" error and Start is disabled;
    then type the default back and wait for the error to go."""
    from playwright.sync_api import expect

    form = page.locator('[data-testid="stExpander"]').filter(has_text="Hyper-parameters")  # not the upload's box
    box = form.get_by_label("Hidden layers", exact=True)
    budget_error = form.locator('[data-testid="stAlertContentError"]').filter(has_text="memory budget")
    box.fill(OVERSIZED)
    box.press("Enter")
    tally.configs += 1
    try:
        expect(budget_error).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_role("button", name="Start")).to_be_disabled(timeout=WAIT_MS)
        tally.configs_refused += 1
    except AssertionError as error:
        tally.problems.append(f"oversized config not refused: {str(error).splitlines()[0]}")
    tally.rss.append(rss_mb(pid))
    box.fill(DEFAULT_HIDDEN)
    box.press("Enter")
    expect(budget_error).to_have_count(0, timeout=WAIT_MS)


def browser_round(page, url: str, files: dict[str, bytes], round_no: int, pid: int, tally: Tally) -> None:
    """Open the page from the root URL, then the hostile uploads and the oversized config."""
    open_page(page, url, PAGE, WAIT_MS)
    hostile_uploads(page, files, round_no, pid, tally)
    oversized_config(page, pid, tally)
    tally.exceptions += page.locator('[data-testid="stException"]').count()


# -- kill -9 during a save ---------------------------------------------------------------------------------------
def kill_during_save(checkpoints: Path, rng: random.Random, wait_s: float) -> tuple[bool, bool]:
    """Run the victim CLI, SIGKILL it at a random moment in the first KILL_WINDOW_S of its save (or when ``wait_s``
    runs out first): (killed while running, a temp file of this run existed at the kill)."""
    folder = checkpoints / "ae"
    old = set(folder.glob(".victim.pt.*.tmp"))  # left by earlier kills

    def saving() -> bool:
        return bool(set(folder.glob(".victim.pt.*.tmp")) - old)

    env = {**os.environ, "VAELAB_CHECKPOINT_DIR": str(checkpoints), "PYTHONPATH": str(ROOT)}
    victim = subprocess.Popen([sys.executable, *VICTIM], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + wait_s
    try:
        while victim.poll() is None and time.monotonic() < deadline and not saving():
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, KILL_WINDOW_S))
        in_save, alive = saving(), victim.poll() is None
        if alive:
            victim.send_signal(signal.SIGKILL)
        return alive, alive and in_save
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()


def check_files(checkpoints: Path) -> tuple[int, list[str], int]:
    """(``*.pt`` files, the broken ones as "name: why", leftover hidden temp files of saves and uploads)."""
    broken = []
    paths = sorted(checkpoints.rglob("*.pt"))
    for path in paths:
        try:
            load_checkpoint(path)
        except Exception as error:
            broken.append(f"{path.name}: {error}")
    leftovers = [*checkpoints.rglob(".*.tmp"), *checkpoints.rglob(".*.upload")]
    return len(paths), broken, len(leftovers)


# -- the run -----------------------------------------------------------------------------------------------------
def report(tally: Tally, rounds: int, asked: int, seconds: float, loads: tuple[float, float], idle: float,
           peak: float, files: tuple[int, list[str], int], survived: bool) -> int:
    """Print the block of figures; the exit status."""
    n_files, broken, leftovers = files
    done = f"{rounds} rounds" if rounds == asked else f"{rounds} of {asked} rounds (the --seconds cap or an error)"
    print(f"\nreliability: {done} in {seconds:.0f} s (load {loads[0]:.1f} -> {loads[1]:.1f})")
    print(f"hostile uploads: {tally.uploads} attempts, {tally.uploads_refused} refused")
    print(f"oversized configs: {tally.configs} attempts, {tally.configs_refused} refused")
    print(f"kill -9 during save: {tally.kills} kills ({tally.kills_in_save} during the save), {n_files} .pt files, "
          f"all intact: {'no' if broken else 'yes'}, leftover temp files: {leftovers}")
    print(f"server RSS: idle {idle:.0f} MB, peak {peak:.0f} MB ({peak - idle:+.0f} MB)")
    print(f"exception boxes in the page: {tally.exceptions}")
    print(f"server survived: {'yes' if survived else 'no'}")
    for line in [*tally.problems, *broken]:
        print(f"  problem: {line}")
    refused = tally.uploads_refused == tally.uploads and tally.configs_refused == tally.configs
    return 0 if survived and refused and not broken and rounds > 0 else 1


def run_rounds(page, server, files: dict[str, bytes], checkpoints: Path, args: argparse.Namespace, began: float,
               tally: Tally) -> int:
    """Rounds until ``--rounds`` are done or ``--seconds`` have passed; how many were completed. An error (e.g. the
    server gone) ends the run as a problem, not a traceback."""
    rng, pid, done = random.Random(), server.process.pid, 0
    while done < args.rounds and time.monotonic() - began < args.seconds:
        try:
            browser_round(page, server.url, files, done + 1, pid, tally)
            left = args.seconds - (time.monotonic() - began)
            killed, in_save = kill_during_save(checkpoints, rng, max(5.0, min(SAVE_WAIT_S, left)))
            tally.kills += killed
            tally.kills_in_save += in_save
            tally.rss.append(rss_mb(pid))
        except Exception as error:
            tally.problems.append(f"round {done + 1} stopped: {type(error).__name__}: {str(error).splitlines()[0]}")
            break
        done += 1
        print(f"round {done}: {time.monotonic() - began:.0f} s, {tally.uploads_refused}/{tally.uploads} uploads and "
              f"{tally.configs_refused}/{tally.configs} configs refused, {tally.kills} kills, server "
              f"{tally.rss[-1]:.0f} MB", flush=True)
    return done


def run(args: argparse.Namespace, tmp: Path, began: float) -> int:
    """Make the hostile files, start the server and the browser, run the rounds, stop both; the exit status."""
    from playwright.sync_api import sync_playwright

    hostile = tmp / "hostile"
    hostile.mkdir()
    trainer = train_small()
    files = hostile_files(hostile, save_trainer_to(trainer, hostile / "small.pt"))
    payloads = payload_files(hostile, hostile / "small.pt")
    commands = cli_payloads(hostile, payloads)
    checkpoints = tmp / "checkpoints"
    save_trainer_to(trainer, checkpoints / "ae" / "victim.pt")  # what a killed overwrite must leave whole
    load_before, tally = load_average(), Tally()
    server = start_server(tmp)
    pid = server.process.pid
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                open_page(page, server.url, PAGE, WAIT_MS)
                uploads = payload_uploads(page, pid, payloads)
                idle = settled_rss_mb(page, pid)
                reset_peak_rss(pid)
                rounds = run_rounds(page, server, files, checkpoints, args, began, tally)
            finally:
                browser.close()
        peak = max([peak_rss_mb(pid), *tally.rss])
        survived = server_survived(server)
    finally:
        server.stop()
    payloads_ok = report_payloads(uploads, commands)
    status = report(tally, rounds, args.rounds, time.monotonic() - began, (load_before, load_average()), idle, peak,
                    check_files(checkpoints), survived)
    return status if payloads_ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of hostile inputs (default 3)")
    parser.add_argument("--seconds", type=float, default=300.0, help="cap on the whole run (default 300)")
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vaelab-reliability-") as tmp:
        return run(args, Path(tmp), began)


if __name__ == "__main__":
    sys.exit(main())
