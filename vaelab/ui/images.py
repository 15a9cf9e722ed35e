"""Pictures as crisp PNGs: nearest-neighbour upscaled so 28x28 digits and filter grids stay sharp on screen.

``show_image_rows`` draws rows of flattened images (e.g. originals over reconstructions); ``show_picture``
draws any 2-D array in [0, 1] (a filter grid or manifold from :mod:`vaelab.analysis`). Both are cheap enough to
redraw live inside the training panel's fragment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st
import torch

TARGET_PIXELS = 84  # on-screen height of one image when the scale is chosen automatically
PAD_VALUE = 0.5  # grey lines between images


def _as_array(images: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    return np.asarray(images, dtype=np.float32)


def to_png_array(array2d: np.ndarray | torch.Tensor, scale: int) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H*s, W*s) uint8, each pixel repeated s x s times."""
    a = _as_array(array2d)
    if a.ndim != 2:
        raise ValueError(f"array2d: expected a 2-D picture, got shape {a.shape}")
    a = np.kron(np.nan_to_num(a, nan=1.0), np.ones((scale, scale), dtype=np.float32))
    return (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)


def image_grid(rows: Sequence[torch.Tensor | np.ndarray], image_shape: tuple[int, int], *,
               scale: int | None = None, pad: int = 1) -> np.ndarray:
    """Rows of flattened images, each (N, H*W) in [0, 1] with the same N -> one upscaled uint8 picture.

    ``scale`` repeats each pixel s x s times (None: about ``TARGET_PIXELS`` per image)."""
    if not rows:
        raise ValueError("rows: need at least one row of images")
    h, w = image_shape
    arrays = [_as_array(r).reshape(-1, h, w) for r in rows]  # each (N, H, W)
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError(f"rows: every row needs the same, non-zero number of images (got {[len(a) for a in arrays]})")
    grid = np.full((len(arrays) * (h + pad) + pad, n * (w + pad) + pad), PAD_VALUE, dtype=np.float32)
    for r, row in enumerate(arrays):
        for c, img in enumerate(row):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            grid[top:top + h, left:left + w] = img
    return to_png_array(grid, scale if scale is not None else max(1, round(TARGET_PIXELS / h)))


def show_image_rows(rows: Sequence[torch.Tensor | np.ndarray], image_shape: tuple[int, int], *,
                    row_names: Sequence[str] | None = None, caption: str | None = None,
                    scale: int | None = None) -> None:
    """Draw rows of images (e.g. originals over reconstructions) with a caption naming the rows."""
    if row_names:
        rows_text = "Top to bottom: " + ", ".join(row_names)
        caption = f"{rows_text}. {caption}" if caption else rows_text
    st.image(image_grid(rows, image_shape, scale=scale), caption=caption)


def show_picture(array2d: np.ndarray | torch.Tensor, *, scale: int = 3, caption: str | None = None,
                 width: int | str = "content") -> None:
    """Draw one 2-D picture in [0, 1] (filter grid, manifold, sample grid), upscaled ``scale`` times."""
    st.image(to_png_array(array2d, scale), caption=caption, width=width)
