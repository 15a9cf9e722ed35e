"""Images and filters tiled into one picture: filter grids (min-max normalised per unit), image grids, the
encoder's first-layer weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch import nn

from vaelab.analysis.inference import ArrayLike, to_numpy


def _tile(tiles: np.ndarray, rows: int, cols: int, sep: int, pad_value: float) -> np.ndarray:
    """(N, H, W) tiles row-major into one (rows*H + (rows-1)*sep, cols*W + (cols-1)*sep) image."""
    n, h, w = tiles.shape
    out = np.full((rows * h + (rows - 1) * sep, cols * w + (cols - 1) * sep), pad_value, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + sep):r * (h + sep) + h, c * (w + sep):c * (w + sep) + w] = tiles[i]
    return out


def _as_tiles(images: ArrayLike, image_shape: Sequence[int], name: str) -> np.ndarray:
    a = to_numpy(images)
    h, w = (int(s) for s in image_shape)
    if a.ndim != 2 or a.shape[1] != h * w:
        raise ValueError(f"{name}: expected shape (N, {h * w}) for {h}x{w} images, got {a.shape}")
    return a.reshape(-1, h, w)  # (N, D) -> (N, H, W)


def near_square_grid(n: int) -> tuple[int, int]:
    """(rows, cols) with cols = ceil(sqrt(n)) and just enough rows: 144 -> (12, 12), 32 -> (6, 6), 20 -> (4, 5)."""
    if n < 1:
        raise ValueError(f"n: need at least one tile (got {n})")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def filter_grid(weight: ArrayLike, image_shape: Sequence[int], grid: tuple[int, int] | None = None, sep: int = 1,
                pad_value: float = 1.0) -> np.ndarray:
    """Each unit's input weights (units, D) as an HxW tile, min-max normalised per tile to [0, 1].

    Tiles go row-major into a near-square grid with ``sep``-pixel separators of ``pad_value`` (white);
    -> (rows*H + (rows-1)*sep, cols*W + (cols-1)*sep). A constant tile shows as 0.5.
    """
    tiles = _as_tiles(weight, image_shape, "weight")  # (units, H, W)
    lo = tiles.min(axis=(1, 2), keepdims=True)
    span = tiles.max(axis=(1, 2), keepdims=True) - lo
    flat = span == 0
    tiles = np.where(flat, 0.5, (tiles - lo) / np.where(flat, 1.0, span))
    rows, cols = _check_grid(grid, tiles.shape[0])
    return _tile(tiles, rows, cols, sep, pad_value)


def _check_grid(grid: tuple[int, int] | None, n: int) -> tuple[int, int]:
    if grid is None:
        return near_square_grid(n)
    rows, cols = grid
    if rows < 1 or cols < 1 or rows * cols < n:
        raise ValueError(f"grid: {rows}x{cols} cannot hold {n} tiles")
    return rows, cols


def first_layer_weights(model: nn.Module) -> np.ndarray:
    """The encoder's first linear layer's weights over the pixels: (units, D).

    Looks in ``model.encoder`` first, then at the model's first nn.Linear that reads the image (a VAE without
    hidden layers reads it with its mean head). Columns for a conditioning label are dropped.
    """
    input_dim = getattr(model, "input_dim", None)
    encoder = getattr(model, "encoder", None)
    candidates = list(encoder.modules()) if isinstance(encoder, nn.Module) else []
    candidates += list(model.modules())
    for m in candidates:
        if isinstance(m, nn.Linear) and (input_dim is None or m.in_features >= input_dim):
            w = m.weight.detach().float().cpu()
            return (w if input_dim is None else w[:, :input_dim]).numpy()
    raise ValueError(f"model: {type(model).__name__} has no linear layer reading the {input_dim}-pixel input")


def image_grid(images: ArrayLike, image_shape: Sequence[int], ncols: int, sep: int = 1, pad_value: float = 1.0
               ) -> np.ndarray:
    """Images (N, D) tiled row-major, ``ncols`` per row, values unchanged; empty cells are ``pad_value``."""
    if ncols < 1:
        raise ValueError(f"ncols: must be >= 1 (got {ncols})")
    tiles = _as_tiles(images, image_shape, "images")  # (N, H, W)
    if tiles.shape[0] == 0:
        raise ValueError("images: need at least one image")
    cols = min(ncols, tiles.shape[0])
    return _tile(tiles, math.ceil(tiles.shape[0] / cols), cols, sep, pad_value)
