"""Figures as files: a portable file name from a figure's title, and a greyscale picture as PNG bytes that carry the
figure's title and caption in their metadata (PNG ``tEXt`` chunks, which image viewers and slide tools read).

    png = picture_png(pixels, title="VAE prior samples", caption="Decoded z = ... (step 1,200)")   # bytes
    read_png_text(png)  # {"Title": "VAE prior samples", "Description": "Decoded z = ...", "Software": "vaelab"}
    data_uri(png)       # "data:image/png;base64,..." : drawn inline, no file to fetch from the server

No Streamlit here (the app's download buttons and inline images live in :mod:`vaelab.ui.images`).
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image, PngImagePlugin

SOFTWARE = "vaelab"
MAX_TEXT = 2000  # characters of a caption kept in the metadata
# zlib's fastest level: a live page encodes its pictures at every redraw, upscaled (each pixel 2-4 times over),
# and zlib's default (6) spent 46 ms on a 144-unit filter grid at 1,047 x 1,047 px where level 1 spends 9 ms, for
# a file 12% larger (168 -> 189 kB); the k-sparse page's server spent a fifth of its time there while training.
COMPRESS_LEVEL = 1


def file_stem(name: str) -> str:
    """'Loss curves (step 1,200)' -> 'loss-curves-step-1200': a portable file name (letters, digits, dashes)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", name.replace(",", "")).strip("-").lower()
    return stem[:120].rstrip("-") or "figure"


def picture_png(pixels: np.ndarray, *, title: str, caption: str | None = None) -> bytes:
    """A (H, W) uint8 greyscale picture as PNG bytes with ``title`` and ``caption`` in tEXt chunks (Title,
    Description; Software = vaelab). Text outside Latin-1 (e.g. 'ε', '≈') goes into iTXt chunks, which hold UTF-8."""
    array = np.asarray(pixels)
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f"pixels: expected a 2-D uint8 picture, got shape {array.shape} and dtype {array.dtype}")
    info = PngImagePlugin.PngInfo()
    for key, value in (("Title", title), ("Description", caption), ("Software", SOFTWARE)):
        if value:
            _add_text(info, key, value[:MAX_TEXT])
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG", pnginfo=info, compress_level=COMPRESS_LEVEL)
    return buffer.getvalue()


def _add_text(info: PngImagePlugin.PngInfo, key: str, value: str) -> None:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        info.add_itxt(key, value)  # UTF-8
    else:
        info.add_text(key, value)  # tEXt: Latin-1, read by every PNG reader


def read_png_text(png: bytes) -> dict[str, str]:
    """The text chunks (tEXt, iTXt, zTXt) of PNG bytes, e.g. {"Title": ..., "Description": ...}."""
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return {str(k): str(v) for k, v in image.text.items()}


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI: the browser draws it from the page itself, with no file to fetch."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
