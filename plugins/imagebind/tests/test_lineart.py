"""OpenMoji line art: shapes, content, framing against the colour rendering, cache, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cl_core.api import DataError
from cl_datasets.emoji_images import OpenMojiRenderer
from cl_imagebind import lineart
from cl_imagebind.lineart import draw_lineart

#: grinning face, woman technologist (ZWJ), flag of Germany, red heart (file without FE0F), cat face,
#: turkey, the "full" ideograph button, an OpenMoji extra (private use), a skin-toned person
HEXCODES = ["1F600", "1F469-200D-1F4BB", "1F1E9-1F1EA", "2764-FE0F", "1F431", "1F983", "1F235", "E04C",
            "1F9D4-1F3FF"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))


def _chars(hexcode: str) -> str:
    return "".join(chr(int(h, 16)) for h in hexcode.split("-"))


def _edges(rgb: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the grayscale image."""
    gray = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(gray)
    return np.hypot(gx, gy)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_shape_dtype_and_content():
    out = draw_lineart(HEXCODES, 64, cache=False, workers=1)
    assert out.shape == (len(HEXCODES), 64, 64, 3) and out.dtype == np.uint8
    for hexcode, img in zip(HEXCODES, out):
        white = (img.min(axis=-1) >= 250).mean()
        black = (img.max(axis=-1) < 64).sum()
        assert 0.5 < white < 1.0, hexcode  # mostly white background
        assert black >= 30, hexcode  # and some black lines
        # line art only: no saturated colour survives (black, white and grey antialiasing)
        assert (img.astype(int).max(axis=-1) - img.astype(int).min(axis=-1)).max() <= 8, hexcode


def test_line_art_matches_the_colour_rendering_of_its_own_concept():
    size = 96
    lines = draw_lineart(HEXCODES, size, cache=False, workers=1)
    renderer = OpenMojiRenderer(size)
    edges = [_edges(renderer.render(_chars(h))) for h in HEXCODES]
    darkness = 255.0 - lines.astype(np.float64).mean(axis=-1)
    corr = np.array([[_corr(d, e) for e in edges] for d in darkness])
    # each line drawing correlates best with its own concept's colour edges (and each colour image's edges with
    # its own line drawing), by a margin; the two square buttons (1F235, E04C) are the closest pair
    for i, hexcode in enumerate(HEXCODES):
        assert corr[i, i] > 0.3, (hexcode, corr[i, i])
        assert corr[i, i] > np.delete(corr[i], i).max() + 0.05, (hexcode, corr[i].round(2))
        assert corr[i, i] > np.delete(corr[:, i], i).max() + 0.05, (hexcode, corr[:, i].round(2))


def test_framing_overlaps_the_colour_outline():
    """The line art sits where the colour image's black outline is: shifting it by a pixel or more in any
    direction only lowers its overlap with that outline (the colour glyphs are placed per glyph by Pillow)."""
    size = 96
    lines = draw_lineart(HEXCODES, size, cache=False, workers=1)
    renderer = OpenMojiRenderer(size)
    for hexcode, img in zip(HEXCODES, lines):
        black = (renderer.render(_chars(hexcode)).max(axis=-1) < lineart.BLACK_LEVEL).astype(np.float64)
        dark = 255.0 - np.pad(img[..., 0].astype(np.float64), 3, constant_values=255)
        overlap = {(dy, dx): float((black * dark[3 + dy:3 + dy + size, 3 + dx:3 + dx + size]).sum())
                   for dy in range(-3, 4) for dx in range(-3, 4)}
        best = max(overlap, key=overlap.get)
        assert best == (0, 0), (hexcode, best)
        # and not just barely: a 2-pixel shift loses a good part of the overlap
        assert max(v for k, v in overlap.items() if max(map(abs, k)) == 2) < 0.85 * overlap[0, 0], hexcode


def test_fe0f_and_case_insensitive_names():
    a = draw_lineart(["2764", "2764-FE0F", "1f600"], 32, cache=False, workers=1)
    assert np.array_equal(a[0], a[1])
    assert np.array_equal(a[2], draw_lineart(["1F600"], 32, cache=False, workers=1)[0])


def test_cache_hit_is_identical_and_draws_nothing(tmp_path, monkeypatch):
    codes = HEXCODES * 3
    cold = draw_lineart(codes, 48, workers=1)

    def no_drawing(*args, **kwargs):
        raise AssertionError("a cache hit must not draw")

    monkeypatch.setattr(lineart, "_draw_all", no_drawing)
    warm = draw_lineart(codes, 48, workers=1)
    path = lineart.cache_path([c.upper() for c in codes], 48)
    assert path.is_file() and path.is_relative_to(tmp_path / "cache" / "lineart")
    assert not list(path.parent.glob("*.tmp"))  # written atomically, no leftovers
    assert np.array_equal(cold, warm)
    # another size or list is another file
    assert lineart.cache_path(codes, 64) != path and lineart.cache_path(codes[:-1], 48) != path


def test_corrupt_cache_file_is_redrawn():
    codes = ["1F600", "1F431"]
    first = draw_lineart(codes, 32, workers=1)
    lineart.cache_path(codes, 32).write_bytes(b"not an npy file")
    assert np.array_equal(draw_lineart(codes, 32, workers=1), first)


def test_process_pool_gives_the_same_pixels():
    svgs = sorted(p.name[:-4] for p in lineart.openmoji_svg_dir().glob("1F4*.svg"))[:lineart.POOL_MIN]
    assert len(svgs) == lineart.POOL_MIN
    pooled = draw_lineart(svgs, 32, cache=False, workers=2)
    assert np.array_equal(pooled, draw_lineart(svgs, 32, cache=False, workers=1))


def test_missing_hexcodes_are_listed():
    with pytest.raises(DataError) as info:
        draw_lineart(["1F600", "FFFFF", "1F600-1F600-1F600"], 32, cache=False)
    message = str(info.value)
    assert "2 hexcode(s)" in message and "FFFFF" in message and "1F600-1F600-1F600" in message
    assert str(lineart.openmoji_svg_dir()) in message


def test_blank_line_layer_is_reported():
    # OpenMoji's "NEW button" has an empty <g id="line">: its black style draws nothing
    with pytest.raises(DataError, match=r"1 OpenMoji glyph\(s\) whose line layer draws nothing[\s\S]*1F195"):
        draw_lineart(["1F600", "1F195"], 32, cache=False)
    out = draw_lineart(["1F600", "1F195"], 32, cache=False, allow_blank=True)
    assert lineart.blank_mask(out).tolist() == [False, True]


def test_line_layer_svg_removes_the_fill_layers():
    text = (lineart.openmoji_svg_dir() / "1F469-200D-1F4BB.svg").read_text(encoding="utf-8")
    kept = lineart.line_layer_svg(text)
    for layer in ("color", "skin", "hair"):
        assert f'id="{layer}"' in text and f'id="{layer}"' not in kept
    assert 'id="line"' in kept


def test_size_is_checked():
    with pytest.raises(ValueError, match="size"):
        draw_lineart(["1F600"], 4, cache=False)
