"""Live views computed beside training (the live stream's worker side): for each variant's default config, train in
chunks for a few seconds with the page's views scheduled between chunks, as a worker will, and print the views'
share of the wall time, each view's cost, and the frames' bytes per second.

    .venv/bin/python benchmarks/bench_live_frames.py [--seconds 10] [--variants ae,vae] [--share 0.15]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vaelab.data import load_data  # noqa: E402
from vaelab.live_frames import ViewSchedule, fixed_batch, views_for  # noqa: E402
from vaelab.training import Trainer  # noqa: E402
from vaelab.variants import VARIANTS, get_variant  # noqa: E402

CHUNK_SECONDS = 0.2  # as the live worker trains between two looks at its pipe


def measure(variant: str, data, seconds: float, share: float) -> dict:
    trainer = Trainer(variant, get_variant(variant).config_cls(), data, seed=0)
    batch = fixed_batch(data, 10)
    schedule = ViewSchedule(views_for(variant, trainer.model), max_share=share)
    costs, nbytes, began = defaultdict(list), 0, time.perf_counter()
    while time.perf_counter() - began < seconds and not trainer.done:
        trainer.advance(max_seconds=CHUNK_SECONDS)
        for frame in schedule.run_due(trainer.model, batch, trainer.step):
            costs[frame.view].append(frame.seconds)
            nbytes += frame.nbytes
    wall = time.perf_counter() - began
    return {"wall": wall, "share": schedule.view_seconds / wall, "steps": trainer.step, "bytes_per_s": nbytes / wall,
            "views": {v: (len(c), 1000 * sum(c) / len(c)) for v, c in costs.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--share", type=float, default=0.15)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a worker's share of a 2-core machine
    data = load_data("mnist-5k")
    print(f"{'variant':<12} {'views share':>11} {'steps':>6} {'frame kB/s':>10}  views: frames x mean ms")
    for variant in args.variants.split(","):
        r = measure(variant, data, args.seconds, args.share)
        views = ", ".join(f"{v} {n} x {ms:.1f}" for v, (n, ms) in r["views"].items())
        print(f"{variant:<12} {100 * r['share']:>10.1f}% {r['steps']:>6} {r['bytes_per_s'] / 1000:>10.1f}  {views}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
