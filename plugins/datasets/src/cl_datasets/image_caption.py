"""``datasets.image-caption``: your own images with captions, verified at build time.

Reads the captions table (:mod:`cl_datasets.captions_file`), decodes every distinct image once
(Pillow, in a thread pool; decompression-bomb limit lifted, EXIF orientation applied, transparency
flattened on white, made square per ``fit``) and keeps the ``image_size`` pixels in memory.

Problems are found before training: a missing or corrupt image is reported by its path (and the first
row using it), a malformed row by ``file:line``. By default a :class:`~cl_core.errors.DataError` lists them
all (the first 20 and a count); with ``skip_bad = true`` they are skipped, counted in ``skipped``
(``skipped_rows`` + ``skipped_images``) and logged.

Splits (fields ``("image", "text")``, one example per row):

- with a ``label`` column, a ``holdout`` fraction of the distinct labels is held out; ``labels`` index
  ``class_names`` = that split's label names (sorted);
- without one, a ``holdout`` fraction of the distinct images is held out; ``labels`` number the split's
  images (rows of one image share a label) and ``class_names`` is None.

The choice is :func:`cl_datasets.splits.choose_holdout` (seeded by ``split_seed``). "heldout" is omitted
when nothing is held out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cl_core.api import DataError, DataSource, Dataset, indented_list

from .captions_file import Row, read_rows
from .imaging import load_square, unlimited_pixels
from .params import ImageCaptionParams
from .sources import ImageTextSource
from .splits import choose_holdout

log = logging.getLogger(__name__)


def _load(path: str, size: int, fit: str) -> np.ndarray | str:
    """Pixels, or the reason the file is bad."""
    if not os.path.exists(path):
        return "file not found"
    if not os.path.isfile(path):
        return "not a file"
    try:
        return load_square(path, size, fit)  # type: ignore[arg-type]
    except Exception as exc:  # every decoder failure means "corrupt" to the user
        return f"unreadable image ({type(exc).__name__}: {exc})"


class ImageCaptionDataset(Dataset):
    """The built ``datasets.image-caption`` dataset (see the module docstring).

    Attributes:
        params: the params it was built from.
        skipped: rows + images skipped as bad (only with ``skip_bad``; else a DataError is raised).
        skipped_rows: malformed rows skipped.
        skipped_images: distinct missing/corrupt images skipped (their rows are dropped too).
        problems: the messages of everything skipped.
    """

    def __init__(self, params: ImageCaptionParams) -> None:
        self.params = params
        captions = Path(params.captions).expanduser()
        images_dir = Path(params.images_dir).expanduser()
        rows, bad_rows = read_rows(captions)

        # -- decode each distinct image once -----------------------------------------------------------
        first_row: dict[str, Row] = {}
        for row in rows:
            first_row.setdefault(row.image, row)
        paths = list(first_row)
        full = [str(images_dir / p) for p in paths]
        workers = max(1, min(8, os.cpu_count() or 1))
        with unlimited_pixels(), ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda f: _load(f, params.image_size, params.fit), full))
        bad_images = [f"{f}: {r} (first used at {first_row[p].where})"
                      for p, f, r in zip(paths, full, results) if isinstance(r, str)]
        problems = bad_rows + bad_images
        if problems and not params.skip_bad:
            parts = []
            if bad_images:
                parts.append(f"{len(bad_images)} missing or unreadable image(s)")
            if bad_rows:
                parts.append(f"{len(bad_rows)} malformed row(s)")
            raise DataError(f"{captions}: {' and '.join(parts)} (set skip_bad = true to skip them):\n"
                            + indented_list(problems))
        self.skipped_rows = len(bad_rows)
        self.skipped_images = len(bad_images)
        self.skipped = len(problems)
        self.problems = tuple(problems)
        if problems:
            log.warning("datasets.image-caption: skipped %d malformed row(s) and %d bad image(s) "
                        "(skip_bad = true):\n%s", len(bad_rows), len(bad_images), indented_list(problems))

        good = [p for p, r in zip(paths, results) if not isinstance(r, str)]
        if not good:
            raise DataError(f"{captions}: no usable rows (every row or image is bad)")
        row_of_image = {p: i for i, p in enumerate(good)}
        images = np.stack([r for r in results if not isinstance(r, str)])
        rows = [r for r in rows if r.image in row_of_image]

        # -- split by label, or by image ----------------------------------------------------------------
        self.labeled = rows[0].label is not None
        group_of = (lambda r: r.label) if self.labeled else (lambda r: r.image)
        groups = sorted({group_of(r) for r in rows})
        held = choose_holdout(groups, params.holdout, params.split_seed)
        split_map: dict[str, DataSource] = {}
        for name, keep in (("train", lambda g: g not in held), ("heldout", lambda g: g in held)):
            part = [r for r in rows if keep(group_of(r))]
            if not part:
                continue
            names = sorted({group_of(r) for r in part})
            label_of = {g: i for i, g in enumerate(names)}
            split_map[name] = ImageTextSource(
                images, np.array([row_of_image[r.image] for r in part]), [r.caption for r in part],
                np.array([label_of[group_of(r)] for r in part]), names if self.labeled else None,
                meta={"image": np.array([r.image for r in part], dtype=object)},
            )
        self._splits = split_map
        log.info("datasets.image-caption: %s", self.describe())

    def splits(self) -> Mapping[str, DataSource]:
        return self._splits


def build_image_caption(params: ImageCaptionParams, ctx=None) -> ImageCaptionDataset:
    """Factory of ``datasets.image-caption``.

    Raises:
        DataError: bad rows or images (unless ``skip_bad``), unreadable captions file, or nothing usable.
    """
    return ImageCaptionDataset(params)
