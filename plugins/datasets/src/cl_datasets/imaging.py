"""Small Pillow helpers shared by the datasets: flatten transparency on white, make images square."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

WHITE = (255, 255, 255)


def on_white(im: Image.Image) -> Image.Image:
    """RGB version of ``im`` with any transparency (RGBA, LA, P/L with a transparent index) composited on
    white, so transparent areas become white rather than the (often black) hidden colour."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def to_square(im: Image.Image, size: int, fit: Literal["pad", "crop"] = "pad") -> Image.Image:
    """Resize an RGB image to ``size`` x ``size`` keeping its aspect ratio.

    ``"pad"`` scales the long side to ``size`` and pads with white; ``"crop"`` scales the short side to
    ``size`` and takes the centre. Bicubic resampling with ``reducing_gap`` (fast on huge images).
    """
    w, h = im.size
    if (w, h) == (size, size):
        return im
    scale = size / (max(w, h) if fit == "pad" else min(w, h))
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = im.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0 if scale < 1 else None)
    if fit == "crop":
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return im.crop((left, top, left + size, top + size))
    canvas = Image.new("RGB", (size, size), WHITE)
    canvas.paste(im, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


@contextlib.contextmanager
def unlimited_pixels() -> Iterator[None]:
    """Temporarily lift Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``): the images are
    the user's own files and are shrunk right after decoding."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def load_square(path: str, size: int, fit: Literal["pad", "crop"] = "pad") -> np.ndarray:
    """Decode ``path`` fully (so truncated files fail here), apply its EXIF orientation, flatten on white
    and make it ``size`` x ``size``. Returns ``[size, size, 3]`` uint8.

    Raises:
        OSError, ValueError, SyntaxError, Image.UnidentifiedImageError: the file is not a readable image.
    """
    with Image.open(path) as im:
        # draft() lets JPEG decode at 1/2..1/8 scale directly, still at least `size` on each side.
        if im.format == "JPEG":
            im.draft("RGB", (size, size) if fit == "crop" else _draft_size(im.size, size))
        im.load()
        im = ImageOps.exif_transpose(im)
        out = to_square(on_white(im), size, fit)
    return np.asarray(out, dtype=np.uint8)


def _draft_size(wh: tuple[int, int], size: int) -> tuple[int, int]:
    # For "pad" the long side must stay >= size; draft keeps both sides >= the requested box.
    w, h = wh
    scale = size / max(w, h)
    return max(1, int(w * scale)), max(1, int(h * scale))
