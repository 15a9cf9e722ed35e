"""Running a trained model on data: eval mode without gradients, images and labels checked and put on the model's
device, codes of a dataset, decodings of codes, evenly spread subsets.

Images are flattened (N, D) in [0, 1]; ``y`` is only needed by label-conditioned models (``model.uses_labels``):
an int (the same label for every row) or a (N,) tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from vaelab.variants.base import Variant

ArrayLike = np.ndarray | torch.Tensor
Labels = torch.Tensor | np.ndarray | int | None


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no gradients inside the block; the model's previous train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def as_images(model: nn.Module, images: ArrayLike, name: str = "images") -> torch.Tensor:
    """(N, D) or a single (D,) image -> float32 (N, D) tensor on the model's device."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"{name}: expected flattened images (N, D), got shape {tuple(x.shape)}")
    input_dim = getattr(model, "input_dim", x.shape[1])
    if x.shape[1] != input_dim:
        raise ValueError(f"{name}: expected {input_dim} pixels per image, got {x.shape[1]}")
    return x.to(device=model_device(model), dtype=torch.float32)


def as_labels(model: nn.Module, y: Labels, n: int) -> torch.Tensor | None:
    """None for unconditional models; else an int64 (n,) tensor on the model's device."""
    if not getattr(model, "uses_labels", False):
        return None
    if y is None:
        raise ValueError(f"y: {type(model).__name__} is conditioned on labels; pass an int or ({n},) labels")
    if isinstance(y, int | np.integer):
        return torch.full((n,), int(y), dtype=torch.long, device=model_device(model))
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long().reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"y: expected {n} labels, got {y.shape[0]}")
    return y.to(model_device(model))


def one_image(model: Variant, image: ArrayLike) -> torch.Tensor:
    x = as_images(model, image, "image")
    if x.shape[0] != 1:
        raise ValueError(f"image: expected one image, got {x.shape[0]}")
    return x  # (1, D)


def encode_dataset(model: Variant, images: ArrayLike, labels: Labels = None, batch_size: int = 1000
                   ) -> np.ndarray:
    """Codes of all images, in batches. (N, D) -> (N, code_dim) float32."""
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1 (got {batch_size})")
    x = as_images(model, images)
    y = as_labels(model, labels, x.shape[0])
    chunks = []
    with evaluating(model):
        for start in range(0, x.shape[0], batch_size):
            yb = None if y is None else y[start:start + batch_size]
            chunks.append(model.encode(x[start:start + batch_size], yb).float().cpu())
    if not chunks:
        return np.zeros((0, model.code_dim), dtype=np.float32)
    return torch.cat(chunks).numpy()


def decode_latents(model: Variant, z: ArrayLike, y: Labels = None) -> np.ndarray:
    """Pixel means of given codes. (N, code_dim) -> (N, D)."""
    zt = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z, dtype=torch.float32)
    if zt.dim() != 2 or zt.shape[1] != model.code_dim:
        raise ValueError(f"z: expected shape (N, {model.code_dim}), got {tuple(zt.shape)}")
    zt = zt.to(model_device(model))
    with evaluating(model):
        return model.decode(zt, as_labels(model, y, zt.shape[0])).float().cpu().numpy()


def as_codes(codes: ArrayLike) -> np.ndarray:
    c = np.asarray(codes.detach().cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.float32)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"codes: expected a non-empty (N, code_dim) array, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("codes: contain NaN or infinite values (did training diverge?)")
    return c


def to_numpy(a: ArrayLike, dtype: type = np.float32) -> np.ndarray:
    return np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=dtype)


def spaced_indices(total: int, n: int) -> torch.Tensor:
    """min(n, total) indices spread evenly over range(total) (a label-sorted test set still shows every class)."""
    if total < 0 or n < 0:
        raise ValueError(f"total, n: must be >= 0 (got {total}, {n})")
    n = min(n, total)
    return torch.arange(n, dtype=torch.long) * total // max(n, 1)  # (n,)
