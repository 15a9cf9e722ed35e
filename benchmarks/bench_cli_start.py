"""Wall time of the quick commands (`--help`, `variants`, `variants -v`, `list`), each in a fresh interpreter.

    .venv/bin/python benchmarks/bench_cli_start.py [--repeat 5] [--checkpoints N]

Prints the median and range over the repeats, and whether the command imported torch. `list` runs on a temporary
checkpoint folder holding N tiny checkpoints (digits, one epoch), twice: cold (no listing cache: every file is
checked with torch) and warm (from the cache, no torch). The load average is printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("ae", "sparse", "vae", "cvae", "denoising")


def run(args: list[str], env: dict[str, str]) -> tuple[float, bool]:
    """Seconds of one `python -X importtime -m vaelab ARGS`, and whether torch was imported."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "vaelab", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    modules = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    return seconds, "torch" in modules


def measure(label: str, args: list[str], env: dict[str, str], repeat: int, before=None) -> None:
    times, torch_seen = [], False
    for _ in range(repeat):
        if before:
            before()
        seconds, imported = run(args, env)
        times.append(seconds)
        torch_seen |= imported
    print(f"{label:<22} median {statistics.median(times):6.2f} s  (range {min(times):.2f}-{max(times):.2f})  "
          f"torch imported: {'yes' if torch_seen else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--checkpoints", type=int, default=5, help=f"tiny checkpoints to list (at most "
                                                                   f"{len(VARIANTS)})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "VAELAB_CHECKPOINT_DIR": folder}
        for variant in VARIANTS[:args.checkpoints]:
            subprocess.run([sys.executable, "-m", "vaelab", "train", variant, "--dataset", "digits", "--epochs",
                            "1", "--set", "hidden_sizes=16", "--name", "tiny", "-q"], cwd=ROOT, env=env,
                           capture_output=True, check=True)
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs; "
              f"{args.repeat} runs each; {args.checkpoints} checkpoints")
        cache = Path(folder) / ".vaelab-listing.json"
        measure("--help", ["--help"], env, args.repeat)
        measure("variants", ["variants"], env, args.repeat)
        measure("variants -v", ["variants", "-v"], env, args.repeat)
        measure("list (cold, no cache)", ["list"], env, args.repeat, before=lambda: cache.unlink(missing_ok=True))
        run(["list"], env)
        measure("list (warm)", ["list"], env, args.repeat)
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
