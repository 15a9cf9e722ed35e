"""Property-style: 200 mutated checkpoints (byte flips, truncations, edited pickles, edited values, cut tensors) to
``eval`` and the app's Upload + Load, and 100 mutated IDX folders (header edits, flips, truncations, devices, missing
files) to ``train --dataset``, in one child process under a small memory budget. No call may end in a traceback or
an exit status other than 0, 1 or 2, and the child's peak memory stays under the budget + 512 MB."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUDGET_MB = 512


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
@pytest.mark.timeout(600)
def test_mutated_checkpoints_and_idx_folders_end_in_one_line_within_the_budget(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "VAELAB_MEMORY_BUDGET_MB": str(BUDGET_MB)}
    run = subprocess.run([sys.executable, str(REPO / "tests" / "mutation_runner.py"), str(tmp_path), "--checkpoints",
                          "200", "--idx", "100", "--seed", "0"], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=540)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    outcomes = summary["outcomes"]
    assert summary["breaches"] == [], json.dumps(summary["breaches"], indent=1)[:4000]
    assert sum(n for k, n in outcomes.items() if k.startswith("eval")) == 200
    assert sum(n for k, n in outcomes.items() if k.startswith("train")) == 100
    # the mutations reach past the first check: some files still load and train, most are refused
    assert outcomes.get("eval exit 0", 0) >= 10 and outcomes.get("eval exit 1", 0) >= 100
    assert outcomes.get("train exit 0", 0) >= 5 and outcomes.get("train exit 1", 0) >= 50
    assert summary["peak_mb"] < BUDGET_MB + 512, f"peak {summary['peak_mb']:.0f} MB"
