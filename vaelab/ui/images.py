"""Pictures as crisp PNGs: nearest-neighbour upscaled so 28x28 digits and filter grids stay sharp on screen, drawn
inline and each with a small download button.

``show_image_rows`` draws rows of flattened images (e.g. originals over reconstructions); ``show_picture``
draws any 2-D array in [0, 1] (a filter grid from :mod:`vaelab.analysis.image_grids`, a manifold from
:mod:`vaelab.analysis.generation`). While a run trains the live pictures come from its stream instead
(vaelab/ui/live_stream.py); these draw the still ones and those drawn on demand.

Why inline: ``st.image`` given pixels stores a PNG in Streamlit's media file manager and sends the browser its URL.
A file no script run refers to any more is deleted at the end of the next run, fragment runs included; when the
pictures were redrawn every second or so, a busy browser that fetched a URL after the next redraw got a 404 and
showed a broken-image icon (seen under CPU load on every image of a page at once). Here the PNG
travels inside the page as a ``data:`` URI (``st.image`` passes such a URL through untouched), so there is nothing
to fetch and nothing to lose. The download button makes its file on click (a deferred ``data`` callable) and never
reruns the page (``on_click="ignore"``), so a download does not interrupt training.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import streamlit as st
import torch

from vaelab.figure_export import data_uri, file_stem, picture_png

# A picture is drawn at its pixel width (its own size: no blur from scaling up), but never wider than its column:
# Streamlit caps the <img> at 100% yet not the box around it, sized to the given width (the app puts this rule on
# every page: charts.install_figure_helpers).
IMAGE_STYLE = '<style>[data-testid="stImageContainer"] { max-width: 100%; }</style>'
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


def default_name(caption: str | None) -> str:
    """A figure's name from its caption when the page gives none: its first clause, without numbers (so that the
    name, and the download button's key made from it, stay the same as the step in the caption moves on)."""
    first = re.split(r"[.:(·;]", caption or "", maxsplit=1)[0]
    return re.sub(r"\s+", " ", re.sub(r"[0-9,#]+", " ", first)).strip() or "picture"


def show_png(pixels: np.ndarray, *, name: str, caption: str | None = None, width: int | str = "content") -> bytes:
    """Draw a (H, W) uint8 picture inline with its caption, and a PNG download button under it whose file is named
    after ``name`` and carries ``name`` and ``caption`` in its metadata. Returns the PNG bytes."""
    png = picture_png(pixels, title=name, caption=caption)
    if width == "content":  # a URL's size is unknown to Streamlit ("content" would stretch it): its pixel width
        width = int(pixels.shape[1])
    st.image(data_uri(png), caption=caption, width=width)
    stem = file_stem(name)
    st.download_button("PNG", lambda: png, file_name=f"{stem}.png", mime="image/png", key=f"png.{stem}",
                       on_click="ignore", icon=":material/download:", type="tertiary",
                       help=f"Download “{name}” as a PNG file (its caption is in the file's metadata).")
    return png


def show_image_rows(rows: Sequence[torch.Tensor | np.ndarray], image_shape: tuple[int, int], *,
                    row_names: Sequence[str] | None = None, caption: str | None = None,
                    scale: int | None = None, name: str | None = None) -> None:
    """Draw rows of images (e.g. originals over reconstructions) with a caption naming the rows; ``name`` names the
    downloaded file (default: from the row names, else the caption) and must be unique on the page."""
    name = name or (default_name(" over ".join(row_names)) if row_names else default_name(caption))
    if row_names:
        rows_text = "Top to bottom: " + ", ".join(row_names)
        caption = f"{rows_text}. {caption}" if caption else rows_text
    show_png(image_grid(rows, image_shape, scale=scale), name=name, caption=caption)


def show_picture(array2d: np.ndarray | torch.Tensor, *, scale: int = 3, caption: str | None = None,
                 width: int | str = "content", name: str | None = None) -> None:
    """Draw one 2-D picture in [0, 1] (filter grid, manifold, sample grid), upscaled ``scale`` times; ``name`` as for
    :func:`show_image_rows`."""
    show_png(to_png_array(array2d, scale), name=name or default_name(caption), caption=caption, width=width)
