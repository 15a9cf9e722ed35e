"""The live worker without a browser: its training rate while a page would poll it, against the same Trainer alone.

    .venv/bin/python benchmarks/bench_worker_protocol.py [--pages sparse,vae] [--seconds 10] [--rounds 2]

For each page's config (the same as ``bench_live_ui.py``'s), interleaved round by round:

- plain: ``bench_live_ui.py --cli-worker`` (the Trainer in a plain process, chunks as the worker's) with one torch
  thread;
- worker: a ``LiveWorker`` with one thread (what the app gives a session on 2 cores), polled as the page polls it
  (3 reports a second: the curves' fragment twice, the pictures' once), each report applied to the mirror (rows,
  weights) as the server does.

Prints both wall-clock rates and their ratio: what the worker design itself costs training (reports, the
serialisation of the complete state, the pipe), apart from what a browser and the server's drawing take from the
cores (``bench_live_ui.py``).
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


def worker_rate(page: str, seconds: float) -> float:
    """Wall-clock samples/s of a 1-thread LiveWorker polled POLLS_PER_SECOND times a second (after a warm-up)."""
    from vaelab.data import load_data
    from vaelab.live_worker import LiveWorker
    from vaelab.training import Trainer
    from vaelab.variants import get_variant

    config = get_variant(page).config_cls.from_preset(None, **PAGES[page][1], epochs=EPOCHS)
    mirror = Trainer(page, config, load_data("mnist-5k"), seed=0)
    worker = LiveWorker(mirror, threads=1)
    try:
        worker.poll(wait=10.0)  # the first report: the worker runs
        time.sleep(1.0)
        worker.poll(wait=1.0)
        first, started = mirror.step, time.perf_counter()
        while time.perf_counter() - started < seconds:
            time.sleep(1.0 / POLLS_PER_SECOND)
            worker.poll(wait=0.0)
        worker.sync()  # the steps done until now
        return (mirror.step - first) * config.batch_size / (time.perf_counter() - started)
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="sparse,vae", help=f"comma-separated, of {', '.join(PAGES)}")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}", flush=True)
    for page in args.pages.split(","):
        plain, worker = [], []
        for _ in range(args.rounds):
            plain.append(run_cli(page, args.seconds, threads=1)[1])
            worker.append(worker_rate(page, args.seconds))
        p, w = statistics.median(plain), statistics.median(worker)
        print(f"{page:7s}: worker polled {POLLS_PER_SECOND}x a second {w:,.0f} samples/s, plain 1-thread process "
              f"{p:,.0f}: {w / p:.0%} (median of {args.rounds} each; load {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
