"""The true-posterior view's cost: exact log p(x), p(z|x) on its grid and the ELBO gap for one test image.

    .venv/bin/python benchmarks/bench_posterior.py --images 20

Trains the default VAE (784-512-256-2, 50 epochs on mnist-5k) unless ``--checkpoint`` names a saved one, then times
``vaelab.posterior.model_posterior`` per test image (what a click on the VAE page computes; the page adds the
importance-weighted draws) and prints the median and slowest time, the grid sizes, the quadrature errors, and the
mean exact log p(x), ELBO and gap with the importance-weighted bound at K = 1, 10, 100, 1000. Goal (issue 14):
the posterior view of a clicked image draws in under 0.5 s on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaelab import posterior  # noqa: E402
from vaelab.checkpoints import load_checkpoint  # noqa: E402
from vaelab.data import load_data  # noqa: E402
from vaelab.training import Trainer  # noqa: E402
from vaelab.variants import get_variant  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--checkpoint", help="a saved vae checkpoint instead of training the default")
    parser.add_argument("--dataset", default="mnist-5k")
    args = parser.parse_args()
    data = load_data(args.dataset)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint).model
    else:
        trainer = Trainer("vae", get_variant("vae").config_cls(), data, seed=0)
        trainer.run()
        model = trainer.model
    model.eval()
    load = os.getloadavg()[0]
    x = data.test.images[: args.images]
    times, results = [], []
    for row in x:
        started = time.perf_counter()
        results.append(posterior.model_posterior(model, row))
        times.append(time.perf_counter() - started)
    summary = posterior.exact_summary(model, x)
    print(f"posterior view of {len(x)} test images, load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"  time per image: median {statistics.median(times):.3f} s, slowest {max(times):.3f} s (goal < 0.5 s)")
    print(f"  evidence grid: {min(r.points for r in results)} to {max(r.points for r in results)} points per axis, "
          f"largest quadrature change {max(r.quadrature_error for r in results):.4f} nat")
    print(f"  mean log p(x) {summary.log_px:.3f} = ELBO {summary.elbo:.3f} + gap {summary.gap:.3f} nats")
    for k, bound in summary.bounds.items():
        print(f"  importance-weighted bound K={k}: {bound:.3f} ({summary.log_px - bound:.3f} below)")


if __name__ == "__main__":
    main()
