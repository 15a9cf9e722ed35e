"""The live worker without a browser: its training rate while a page would poll it, against the same Trainer alone.

    .venv/bin/python benchmarks/bench_worker_protocol.py [--pages sparse,vae] [--seconds 10] [--rounds 2]
        [--sessions 1,2]

For each page's config (the same as ``bench_live_ui.py``'s), interleaved round by round:

- plain: ``bench_live_ui.py --cli-worker`` (the Trainer in a plain process, chunks as the worker's) with one torch
  thread;
- worker: a ``LiveWorker`` with one thread (what the app gives a session on 2 cores), polled as the page polls it
  (3 reports a second: the curves' fragment twice, the pictures' once), each report applied to the mirror (rows,
  weights) as the server does.

Prints both wall-clock rates and their ratio: what the worker design itself costs training (reports, the
serialisation of the complete state, the pipe), apart from what a browser and the server's drawing take from the
cores (``bench_live_ui.py``). ``--sessions 1,2`` also trains two sessions' workers at once, polled by one server
process, and prints their combined rate against one session's: how a classroom server scales when the browsers
run on the students' machines (``bench_live_ui.py --sessions 1,2`` puts both browsers on this machine too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_live_ui import EPOCHS, PAGES, run_cli  # noqa: E402

POLLS_PER_SECOND = 3


def worker_rates(page: str, seconds: float, sessions: int = 1) -> list[float]:
    """Wall-clock samples/s of each of ``sessions`` 1-thread LiveWorkers training at once, each polled
    POLLS_PER_SECOND times a second by this process (after a warm-up), as one server polls its sessions' workers."""
    from vaelab.data import load_data
    from vaelab.live_worker import LiveWorker
    from vaelab.training import Trainer
    from vaelab.variants import get_variant

    config = get_variant(page).config_cls.from_preset(None, **PAGES[page][1], epochs=EPOCHS)
    data = load_data("mnist-5k")
    mirrors = [Trainer(page, config, data, seed=i) for i in range(sessions)]
    workers = []
    try:
        for mirror in mirrors:
            workers.append(LiveWorker(mirror, threads=1))
        for worker in workers:
            worker.poll(wait=10.0)  # the first report: the worker runs
        time.sleep(1.0)
        for worker in workers:
            worker.poll(wait=1.0)
        first, started = [m.step for m in mirrors], time.perf_counter()
        while time.perf_counter() - started < seconds:
            time.sleep(1.0 / POLLS_PER_SECOND)
            for worker in workers:
                worker.poll(wait=0.0)
        for worker in workers:
            worker.sync()  # the steps done until now
        wall = time.perf_counter() - started
        return [(m.step - f) * config.batch_size / wall for m, f in zip(mirrors, first, strict=True)]
    finally:
        for worker in workers:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="sparse,vae", help=f"comma-separated, of {', '.join(PAGES)}")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sessions", default="1", help="sessions training at once: 1, or 1,2 to compare")
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}", flush=True)
    counts = [int(n) for n in args.sessions.split(",")]
    if counts[0] != 1:
        parser.error("--sessions: the list starts with 1 (the reference), e.g. 1,2")
    for page in args.pages.split(","):
        plain, combined = [], {n: [] for n in counts}
        for _ in range(args.rounds):
            plain.append(run_cli(page, args.seconds, threads=1)[1])
            for n in counts:
                combined[n].append(sum(worker_rates(page, args.seconds, n)))
        p = statistics.median(plain)
        one = statistics.median(combined[1])
        print(f"{page:7s}: worker polled {POLLS_PER_SECOND}x a second {one:,.0f} samples/s, plain 1-thread process "
              f"{p:,.0f}: {one / p:.0%} (median of {args.rounds} each; load {os.getloadavg()[0]:.2f})", flush=True)
        for n in counts[1:]:
            total = statistics.median(combined[n])
            print(f"{page:7s}: {n} sessions at once, polled by one process: combined {total:,.0f} samples/s = "
                  f"{total / one:.2f}x one session's (goal >= 1.6x; {os.cpu_count()} cores)", flush=True)


if __name__ == "__main__":
    main()
