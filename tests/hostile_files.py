"""Crafted files a hostile or careless user could hand the lab: IDX folders and checkpoints that claim far more memory
than they hold, nest without end, or point at devices. Shared by the tests and benchmarks/bench_reliability.py."""

from __future__ import annotations

import gzip
import struct
import sys
import threading
from pathlib import Path

import torch

from vaelab.checkpoints import save_trainer_to
from vaelab.data import load_data
from vaelab.training import Trainer
from vaelab.variants import get_variant

SMALL_CONFIGS = {
    "ae": {"hidden_sizes": (16,), "code_size": 4, "epochs": 1},
    "ae-gmm": {"hidden_sizes": (16,), "code_size": 2, "epochs": 1, "n_components": 3},
    "vae": {"hidden_sizes": (16,), "latent_dim": 2, "epochs": 1},
}


def idx_header(dims: tuple[int, ...]) -> bytes:
    """0x00 0x00 0x08 ndim, then each size as a big-endian uint32."""
    return bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def small_checkpoint(path: Path, variant: str = "ae", seed: int = 0) -> Path:
    """A tiny valid checkpoint trained for one epoch on scikit-learn's 8x8 digits (a second or two)."""
    config = get_variant(variant).config_cls.from_preset(None, **SMALL_CONFIGS[variant])
    trainer = Trainer(variant, config, load_data("digits"), seed=seed)
    trainer.run()
    return save_trainer_to(trainer, path, overwrite=True)


def edited_checkpoint(base: Path, path: Path, edit) -> Path:
    """``base`` loaded (weights only), changed by ``edit(payload)`` and saved as ``path`` (no checks)."""
    payload = torch.load(base, weights_only=True)
    edit(payload)
    _save_deep(payload, path)
    return path


def _save_deep(payload, path: Path) -> None:
    """torch.save in a thread with a deep stack: the pickler recurses once per level of nesting."""
    limit = sys.getrecursionlimit()
    old_stack = threading.stack_size(512 * 2**20)
    failure: list[BaseException] = []

    def save() -> None:
        try:
            torch.save(payload, path)
        except BaseException as e:  # handed to the caller below
            failure.append(e)

    try:
        sys.setrecursionlimit(1_000_000)
        thread = threading.Thread(target=save)
        thread.start()
        thread.join()
    finally:
        sys.setrecursionlimit(limit)
        threading.stack_size(old_stack)
    if failure:
        raise failure[0]


def nested_list(depth: int) -> list:
    top = current = []
    for _ in range(depth - 1):
        inner: list = []
        current.append(inner)
        current = inner
    return top


def deep_config(base: Path, path: Path, depth: int = 100_000) -> Path:
    """The config's hidden_sizes is a list nested ``depth`` levels deep."""
    return edited_checkpoint(base, path, lambda p: p["config"].update(hidden_sizes=nested_list(depth)))


def huge_mixture(base_gmm: Path, path: Path, components: int = 10**9) -> Path:
    """An ae-gmm checkpoint whose mixture claims ``components`` Gaussians (expanded views: the file stays small)."""

    def edit(payload) -> None:
        state, d = payload["model_state"], payload["config"]["code_size"]
        state["mixture_weights"] = torch.zeros(1).expand(components)
        state["mixture_means"] = torch.zeros(1, 1).expand(components, d)
        state["mixture_covariances"] = torch.zeros(1, 1, 1).expand(components, d, d)

    return edited_checkpoint(base_gmm, path, edit)


def long_history(base: Path, path: Path, rows: int = 6_000_000) -> Path:
    """The history repeats its first row ``rows`` times (one row, many references: about 5 bytes a row on disk)."""
    return edited_checkpoint(base, path, lambda p: p.update(history=[p["history"][0]] * rows))


def idx_bomb(folder: Path, images: int = 2_600_000, shape: tuple[int, int] = (28, 28)) -> Path:
    """A gzipped IDX train split whose header and body really hold ``images`` blank images (zeros compress about
    1000:1: 2.6 million MNIST-sized images are 2 GB unpacked, 2 MB on disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    chunk = bytes(shape[0] * shape[1] * 10_000)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(idx_header((images, *shape)))
        left = images * shape[0] * shape[1]
        while left > 0:
            f.write(chunk[:left])
            left -= len(chunk)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_header((images,)) + bytes(images))
    return folder


def idx_overflow(folder: Path) -> Path:
    """Headers only: 2^31 images of 2^31 x 4 pixels (their product overflows 64 bits) and 2^31 labels."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train-images-idx3-ubyte").write_bytes(idx_header((2**31, 2**31, 4)))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_header((2**31,)))
    return folder


def idx_device_links(folder: Path, target: str = "/dev/zero") -> Path:
    """The IDX files of a train split are symbolic links to a device that never ends."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (folder / name).symlink_to(target)
    return folder
