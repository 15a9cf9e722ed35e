"""Feed mutated checkpoints and IDX folders to ``eval``, the app's Load (upload, load, restore) and ``train --dataset``
in this one process, and print a JSON summary: every outcome, every breach, and the process's peak memory.

A breach is an exit status other than 0/1/2, a traceback or an "unexpected" line on stderr (the command line's
last-resort handler), or an exception type the app does not expect from Load. The mutations are drawn from a seeded
generator, so a failure is reproduced by rerunning with the same seed.

    python tests/mutation_runner.py WORKDIR [--checkpoints 200] [--idx 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import random
import shutil
import struct
import sys
import traceback
import zipfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tests.hostile_files import idx_header, nested_list, small_checkpoint  # noqa: E402
from vaelab import cli  # noqa: E402
from vaelab.checkpoints import CheckpointError, load_checkpoint, restore_trainer  # noqa: E402
from vaelab.data import load_data  # noqa: E402
from vaelab.ui.checkpoint_panel import store_upload  # noqa: E402

HOSTILE_VALUES = [
    -1, 0, 1, 2**31, 2**63 - 1, -(2**63), 1e308, float("nan"), float("inf"), "x", "", None, True, [], {}, [1] * 10,
    [2**31] * 3, "ae-gmm", "vae", "mnist", "idx:/dev", {"train": "idx:/dev/zero"},
]


def hostile_value(rng: random.Random):
    pick = rng.randrange(len(HOSTILE_VALUES) + 7)
    if pick < len(HOSTILE_VALUES):
        return HOSTILE_VALUES[pick]
    return [
        lambda: nested_list(rng.choice([20, 40, 200])),
        lambda: torch.zeros(0),
        lambda: torch.zeros(3, 3),
        lambda: torch.zeros(1).expand(rng.choice([10**6, 10**9])),
        lambda: torch.full((2,), float("nan")),
        lambda: torch.zeros(2, dtype=torch.int64),
        lambda: {str(i): i for i in range(rng.choice([10, 1000]))},
    ][pick - len(HOSTILE_VALUES)]()


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- checkpoint mutations ------------------------------------------------------------------------------------------
def _rezip(source: Path, target: Path, change) -> None:
    """Copy a checkpoint's zip entry by entry, ``change(name, bytes) -> bytes | None`` on each (None drops it)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = change(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)


def _flip(data: bytes, rng: random.Random, count: int, within: int | None = None) -> bytes:
    raw = bytearray(data)
    for _ in range(count):
        if raw:
            i = rng.randrange(min(len(raw), within or len(raw)))
            raw[i] = rng.randrange(256)
    return bytes(raw)


def _edit_payload(payload: dict, rng: random.Random) -> str:
    """Replace (or delete) one value somewhere in the payload; says where."""
    area = rng.choice(["config", "top", "model_state", "trainer_state", "history"])
    if area == "top":
        holder, key = payload, rng.choice(["input_dim", "n_classes", "variant", "format_version", "dataset",
                                           "image_shape", "metrics", "epochs", "config", "model_state"])
    elif area == "history" and payload.get("history"):
        row = rng.choice(payload["history"])
        holder, key = row, rng.choice([*row, "extra"])
    else:
        holder = payload.get(area) if isinstance(payload.get(area), dict) else payload
        key = rng.choice(sorted(holder, key=str))
    if rng.random() < 0.15:
        holder.pop(key, None)
        return f"{area}.{key} deleted"
    holder[key] = value = hostile_value(rng)
    shown = f"tensor{list(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)[:40]
    return f"{area}.{key} = {shown}"


def mutate_checkpoint(base: Path, target: Path, rng: random.Random) -> str:
    kind = rng.choice(["flip", "truncate", "pickle-flip", "pickle-truncate", "edit", "edit", "storage"])
    if kind == "flip":
        target.write_bytes(_flip(base.read_bytes(), rng, rng.randint(1, 8)))
    elif kind == "truncate":
        data = base.read_bytes()
        target.write_bytes(data[:rng.randrange(len(data))])
    elif kind == "pickle-flip":
        count = rng.randint(1, 4)
        _rezip(base, target, lambda name, data: _flip(data, rng, count) if name.endswith("data.pkl") else data)
    elif kind == "pickle-truncate":
        _rezip(base, target, lambda name, data: data[:rng.randrange(len(data))] if name.endswith("data.pkl")
               else data)
    elif kind == "storage":  # one tensor's bytes cut short, doubled or dropped
        entries = [n for n in zipfile.ZipFile(base).namelist() if "/data/" in n]
        victim, how = rng.choice(entries), rng.choice(["short", "long", "drop"])
        _rezip(base, target, lambda name, data: data if name != victim else
               (data[:len(data) // 2] if how == "short" else data * 2 if how == "long" else None))
        return f"storage {victim} {how}"
    else:
        payload = torch.load(base, weights_only=True)
        where = _edit_payload(payload, rng)
        torch.save(payload, target)
        return f"edit {where}"
    return kind


# -- IDX mutations -------------------------------------------------------------------------------------------------
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def write_base_idx(folder: Path, compressed: bool) -> Path:
    """200 train and 50 test images of scikit-learn's 8x8 digits, as IDX files (gzipped or plain)."""
    data = load_data("digits")
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, split, n in (("train", data.train, 200), ("t10k", data.test, 50)):
        images = (split.images[:n] * 255).round().to(torch.uint8).numpy().reshape(n, 8, 8)
        labels = split.labels[:n].to(torch.uint8).numpy()
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            raw = idx_header(array.shape) + np.ascontiguousarray(array).tobytes()
            name = f"{prefix}-{kind}-ubyte" + (".gz" if compressed else "")
            (folder / name).write_bytes(gzip.compress(raw) if compressed else raw)
    return folder


def mutate_idx(base: Path, target: Path, rng: random.Random) -> str:
    shutil.copytree(base, target)
    path = rng.choice(sorted(target.iterdir()))
    compressed = path.suffix == ".gz"
    raw = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
    kind = rng.choice(["flip-header", "flip", "truncate", "dims", "ndim", "trailing", "device", "folder", "missing",
                       "gzip-bytes"])
    if kind == "flip-header":
        raw = _flip(raw, rng, rng.randint(1, 3), within=16)
    elif kind == "flip":
        raw = _flip(raw, rng, rng.randint(1, 8))
    elif kind == "truncate":
        raw = raw[:rng.randrange(len(raw))]
    elif kind == "dims":
        ndim = raw[3]
        i = rng.randrange(ndim)
        value = rng.choice([0, 1, 7, 255, 65535, 2**31, 2**32 - 1, rng.randrange(2**32)])
        raw = raw[:4 + 4 * i] + struct.pack(">I", value) + raw[8 + 4 * i:]
        kind = f"dims[{i}]={value}"
    elif kind == "ndim":
        raw = raw[:2] + bytes([rng.choice([8, 9, 0x0B, 0x0D]), rng.choice([0, 1, 2, 3, 4, 255])]) + raw[4:]
    elif kind == "trailing":
        raw = raw + bytes(rng.randrange(1, 5000))
    elif kind in ("device", "folder", "missing"):
        path.unlink()
        if kind == "device":
            path.symlink_to(rng.choice(["/dev/zero", "/dev/null", "/dev/urandom"]))
        elif kind == "folder":
            path.mkdir()
        return f"{path.name}: {kind}"
    if kind == "gzip-bytes" and compressed:
        path.write_bytes(_flip(path.read_bytes(), rng, rng.randint(1, 6)))
    else:
        path.write_bytes(gzip.compress(raw) if compressed else raw)
    return f"{path.name}: {kind}"


# -- running -------------------------------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> tuple[int | None, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = cli.main(argv)
        except SystemExit as done:
            status = done.code
        except BaseException:  # main let an exception through: a traceback a user would see
            traceback.print_exc(file=err)
            status = None
    return status, err.getvalue()


def cli_breach(status, stderr: str) -> str | None:
    if status not in (0, 1, 2):
        return f"exit status {status!r}"
    if "Traceback" in stderr or "error: unexpected" in stderr:
        return "traceback: " + stderr.strip().splitlines()[-1][:300]
    return None


def app_load(variant: str, path: Path, data) -> tuple[str, str | None]:
    """The app's Upload then Load on a file: (outcome, breach or None)."""
    try:
        stored, message = store_upload(variant, path.name, path.read_bytes(), overwrite=True)
        if stored is None:  # store_upload's own last resort names an unforeseen exception "not a usable checkpoint"
            unforeseen = "is not a usable checkpoint (" in message
            return "refused on upload", message[:300] if unforeseen else None
        ckpt = load_checkpoint(stored, expected_variant=variant)
        try:
            restore_trainer(ckpt, data)
        except (CheckpointError, ValueError, RuntimeError):  # the panel opens such a model view-only
            return "loaded view-only", None
        return "loaded", None
    except CheckpointError:
        return "refused on load", None
    except Exception as e:  # anything else reaches the page's last-resort message
        return "breach", f"{type(e).__name__}: {str(e)[:200]}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--idx", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, work = random.Random(args.seed), args.workdir
    os.environ["VAELAB_CHECKPOINT_DIR"] = str(work / "store")
    torch.set_num_threads(1)
    digits = load_data("digits")
    bases = {variant: small_checkpoint(work / f"base-{variant}.pt", variant) for variant in ("ae", "ae-gmm", "vae")}
    outcomes: Counter = Counter()
    breaches: list[dict] = []

    for i in range(args.checkpoints):
        variant = rng.choice(sorted(bases))
        path = work / "ckpt" / f"m{i}.pt"
        path.parent.mkdir(exist_ok=True)
        what = f"{variant} {mutate_checkpoint(bases[variant], path, rng)}"
        status, stderr = run_cli(["eval", str(path), "--dataset", "digits", "-q", "--k", "2", "--n", "20"])
        outcomes[f"eval exit {status}"] += 1
        if (breach := cli_breach(status, stderr)) is not None:
            breaches.append({"file": str(path), "mutation": what, "call": "eval", "breach": breach})
        outcome, breach = app_load(variant, path, digits)
        outcomes[f"load {outcome}"] += 1
        if breach is not None:
            breaches.append({"file": str(path), "mutation": what, "call": "load", "breach": breach})
        path.unlink(missing_ok=True)

    idx_bases = {c: write_base_idx(work / f"base-idx-{'gz' if c else 'plain'}", c) for c in (False, True)}
    for i in range(args.idx):
        folder = work / "idx" / f"m{i}"
        what = mutate_idx(idx_bases[rng.random() < 0.5], folder, rng)
        status, stderr = run_cli(["train", "ae", "--dataset", f"idx:{folder}", "--epochs", "1", "--set",
                                  "hidden_sizes=8", "--set", "code_size=2", "--set", "batch_size=50", "--out",
                                  str(work / "idx-out.pt"), "-q"])
        outcomes[f"train exit {status}"] += 1
        if (breach := cli_breach(status, stderr)) is not None:
            breaches.append({"file": str(folder), "mutation": what, "call": "train", "breach": breach})
        shutil.rmtree(folder, ignore_errors=True)

    print(json.dumps({"outcomes": dict(sorted(outcomes.items(), key=str)), "breaches": breaches,
                      "peak_mb": peak_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
