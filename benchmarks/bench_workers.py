"""Parallel training on worker processes: the combined throughput of N runs at once against one run alone.

    .venv/bin/python benchmarks/bench_workers.py --variant vae --epochs 5 --runs 2

Prints the wall-clock time and the combined training samples per second (samples of every run / wall time, a
worker's start-up included; the forkserver is started before either is timed) of one run alone (its worker takes
every core, as a sweep of one run does), one run alone on one thread (what the app gives one session on 2 cores:
the cores but one) and all the runs at once (one worker each, the cores shared); the core count and the load.
Issue 12's goal on this 2-core machine: 2 runs at once >= 1.6x one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaelab.variants import get_variant  # noqa: E402
from vaelab.workers import RunSpec, free_cores, run_local  # noqa: E402


def timed(specs: list[RunSpec], workers: int, threads: int | None = None) -> tuple[float, float]:
    """(wall seconds, combined samples per second) of running the specs with ``workers`` at once."""
    started = time.perf_counter()
    results = run_local(specs, workers=workers, threads=threads)
    wall = time.perf_counter() - started
    bad = [r.error for r in results if not r.ok]
    if bad:
        raise SystemExit(f"a run failed: {bad[0]}")
    samples = sum(r.steps * r.spec.config["batch_size"] for r in results)
    return wall, samples / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vae")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--dataset", default="mnist-5k")
    args = parser.parse_args()
    config = get_variant(args.variant).config_cls(epochs=args.epochs).to_dict()
    specs = [RunSpec(args.variant, config, args.dataset, seed=s) for s in range(args.runs)]
    timed([RunSpec(args.variant, {**config, "epochs": 1}, args.dataset)], workers=1)  # start the forkserver first
    load = os.getloadavg()[0]
    one_wall, one_rate = timed(specs[:1], workers=1)
    single_wall, single_rate = timed(specs[:1], workers=1, threads=1)
    all_wall, all_rate = timed(specs, workers=args.runs)
    print(f"{args.runs} x {args.variant} ({args.epochs} epochs on {args.dataset}), {free_cores()} cores, "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"  one run alone (all cores):    {one_wall:.1f} s, {one_rate:,.0f} samples/s")
    print(f"  one run alone (1 thread):     {single_wall:.1f} s, {single_rate:,.0f} samples/s  (an app session's "
          "share on 2 cores)")
    print(f"  all at once ({args.runs} workers):     {all_wall:.1f} s, {all_rate:,.0f} samples/s")
    print(f"  speed-up: {all_rate / one_rate:.2f}x one run on all cores, {all_rate / single_rate:.2f}x one run on "
          "1 thread (goal >= 1.6x for 2 runs on 2 cores)")


if __name__ == "__main__":
    main()
