"""``imagebind.audio-pairs``: your own (image, audio) pairs for ImageBind, verified at build time.

Reads the pairs table (JSON Lines or CSV/TSV; columns ``image``, ``audio``, optional ``label``; see
:class:`~cl_imagebind.pairs_params.AudioPairsParams`), then decodes every distinct image once (Pillow via
``cl_datasets.imaging.load_square``: decompression-bomb limit lifted, EXIF orientation applied, transparency
flattened on white, padded square) and every distinct audio file once
(``cl_imagebind.audio_io.read_audio``: mono float32 at ``sample_rate``), both in thread pools, and keeps
them in memory.

Problems are found before training: a missing or corrupt image or audio file is reported by its path (and
the first row using it), a malformed row by ``file:line``. By default one
:class:`~cl_core.errors.DataError` lists them all (the first 20 and a count); with ``skip_bad = true`` they
are skipped, counted in ``skipped`` (``skipped_rows`` + ``skipped_images`` + ``skipped_audio``; a row whose
image or audio is bad is dropped with it) and logged.

Splits (fields ``("image", "audio")``, one example per row), as ``datasets.image-caption``:

- with a ``label`` column, a ``holdout`` fraction of the distinct labels is held out; ``labels`` index
  ``class_names`` = that split's label names (sorted);
- without one, a ``holdout`` fraction of the distinct images is held out; ``labels`` number the split's
  images (rows of one image share a label) and ``class_names`` is None.

The choice is :func:`cl_datasets.splits.choose_holdout` (seeded by ``split_seed``); "heldout" is omitted when
nothing is held out.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from attrs import frozen

from cl_core.api import DataError, DataSource, Dataset, indented_list
from cl_datasets.captions_file import CSV_SUFFIXES, JSON_SUFFIXES, csv_records, jsonl_records
from cl_datasets.imaging import load_square, unlimited_pixels
from cl_datasets.splits import choose_holdout

from .pairs_params import AudioPairsParams

log = logging.getLogger(__name__)

#: ``read(path, *, sample_rate, strict) -> float32 [S]``, raising DataError naming the file.
AudioReader = Callable[..., np.ndarray]


# -- the pairs table ------------------------------------------------------------------------------------------
@frozen
class PairRow:
    """One row of a pairs file: ``where`` is ``"<file>:<line>"``."""

    image: str
    audio: str
    label: str | None
    where: str
    line: int


def _check(fields: Mapping[str, Any], where: str, line: int) -> tuple[PairRow | None, str | None]:
    missing = [k for k in ("image", "audio") if fields.get(k) is None]
    if missing:
        return None, f"{where}: missing {', '.join(repr(m) for m in missing)}"
    for key in ("image", "audio"):
        value = fields[key]
        if not isinstance(value, str) or not value.strip():
            return None, f"{where}: {key!r} must be a non-empty path string, got {value!r}"
    label = fields.get("label")
    if isinstance(label, bool) or not (label is None or isinstance(label, (str, int))):
        return None, f"{where}: 'label' must be a string or an integer, got {label!r}"
    if isinstance(label, str):
        label = label.strip() or None
    return PairRow(image=fields["image"].strip(), audio=fields["audio"].strip(),
                   label=None if label is None else str(label), where=where, line=line), None


def read_pairs(path: str | Path) -> tuple[list[PairRow], list[str]]:
    """Parse a pairs file (JSON Lines by ``.jsonl``/``.ndjson``/``.json``, CSV/TSV by ``.csv``/``.tsv``, the
    suffixes of ``cl_datasets.captions_file``); returns (good rows, ``"file:line: problem"`` per bad row, in
    line order). If any row has a label, rows without one are bad.

    Raises:
        DataError: the file cannot be read or decoded, has another suffix, or a CSV header lacks a column.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    bad: list[tuple[int, str]] = []
    rows: list[PairRow] = []
    try:
        with open(path, encoding="utf-8-sig", newline="" if suffix in CSV_SUFFIXES else None) as f:
            if suffix in JSON_SUFFIXES:
                records = jsonl_records(f, path, bad)
            elif suffix in CSV_SUFFIXES:
                records = csv_records(f, path, CSV_SUFFIXES[suffix], ("image", "audio"), ("label",), bad)
            else:
                raise DataError(f"{path}: unsupported pairs file type {suffix!r}; use .jsonl (JSON Lines) or .csv/.tsv")
            for line, fields in records:
                row, problem = _check(fields, f"{path}:{line}", line)
                if problem:
                    bad.append((line, problem))
                else:
                    rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read pairs file {path}: {exc}") from exc
    if any(r.label is not None for r in rows):  # all-or-nothing, as in captions files
        bad += [(r.line, f"{r.where}: missing 'label' (other rows have one)") for r in rows if r.label is None]
        rows = [r for r in rows if r.label is not None]
    return rows, [text for _, text in sorted(bad, key=lambda b: b[0])]


# -- decoding -------------------------------------------------------------------------------------------------
def _file_problem(path: str) -> str | None:
    if not os.path.exists(path):
        return "file not found"
    if not os.path.isfile(path):
        return "not a file"
    return None


def _load_image(path: str, size: int) -> np.ndarray | str:
    """Pixels, or the reason the file is bad."""
    problem = _file_problem(path)
    if problem:
        return problem
    try:
        return load_square(path, size, "pad")
    except Exception as exc:  # every decoder failure means "corrupt" to the user
        return f"unreadable image ({type(exc).__name__}: {exc})"


def _load_audio(path: str, read: AudioReader, sample_rate: int, strict: bool) -> np.ndarray | str:
    """float32 ``[S]`` waveform, or the reason the file is bad."""
    problem = _file_problem(path)
    if problem:
        return problem
    try:
        wave = read(path, sample_rate=sample_rate, strict=strict)
    except DataError as exc:
        return f"unreadable audio ({exc})"
    except Exception as exc:  # a decoder failure the reader did not wrap
        return f"unreadable audio ({type(exc).__name__}: {exc})"
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        return f"unreadable audio (expected a mono [samples] waveform, got shape {wave.shape})"
    if wave.size == 0:
        return "empty audio (0 samples)"
    if not np.isfinite(wave).all():
        return "audio has NaN or infinite samples"
    wave.flags.writeable = False
    return wave


def _default_reader() -> AudioReader:
    from .audio_io import read_audio

    return read_audio


# -- the data source ------------------------------------------------------------------------------------------
class ImageAudioSource(DataSource):
    """Examples ``{"image": PIL RGB image, "audio": float32 [S] waveform}`` backed by shared stores.

    Args:
        images: ``[M, H, W, 3]`` uint8 image store (shared between splits; made read-only here).
        image_index: ``[N]`` row of ``images`` for each example.
        waves: ``K`` float32 ``[S_k]`` waveforms (shared between splits).
        audio_index: ``[N]`` entry of ``waves`` for each example.
        labels: ``[N]`` int64 labels indexing ``class_names`` (or group ids when class_names is None).
        class_names: label -> name, or None.
        sample_rate: the waveforms' rate in Hz.
        meta: optional per-example ``[N]`` arrays (e.g. ``image``, ``audio`` paths) for inspection and tests.

    ``get`` returns fresh PIL images and waveform copies, so callers may modify them freely.
    """

    fields = ("image", "audio")

    def __init__(self, images: np.ndarray, image_index: np.ndarray, waves: Sequence[np.ndarray],
                 audio_index: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None,
                 sample_rate: int, meta: Mapping[str, np.ndarray] | None = None) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be a uint8 [M, H, W, 3] array, got {images.dtype} {images.shape}")
        image_index = np.asarray(image_index, dtype=np.int64)
        audio_index = np.asarray(audio_index, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        n = len(labels)
        if image_index.shape != (n,) or audio_index.shape != (n,):
            raise ValueError(f"image_index {image_index.shape}, audio_index {audio_index.shape} and labels "
                             f"{labels.shape} must all be ({n},)")
        if n and (image_index.min() < 0 or image_index.max() >= len(images)):
            raise ValueError("image_index out of range of images")
        if n and (audio_index.min() < 0 or audio_index.max() >= len(waves)):
            raise ValueError("audio_index out of range of waves")
        if class_names is not None and n and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError("labels out of range of class_names")
        images.flags.writeable = False
        self._images = images
        self._waves = list(waves)
        self.image_index = image_index
        self.audio_index = audio_index
        self.labels = labels
        self.class_names = None if class_names is None else list(class_names)
        self.sample_rate = sample_rate
        self.meta = {k: np.asarray(v) for k, v in (meta or {}).items()}
        for key, value in self.meta.items():
            if len(value) != n:
                raise ValueError(f"meta[{key!r}] has {len(value)} entries, expected {n}")

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        """``{"image": [PIL.Image RGB], "audio": [float32 [S] array]}`` (IndexError when out of range)."""
        from PIL import Image

        n = len(self)
        images, audio = [], []
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"example index {i} out of range for a split of {n}")
            images.append(Image.fromarray(self._images[self.image_index[i]]))
            audio.append(self._waves[self.audio_index[i]].copy())
        return {"image": images, "audio": audio}


# -- the dataset ----------------------------------------------------------------------------------------------
class AudioPairsDataset(Dataset):
    """The built ``imagebind.audio-pairs`` dataset (see the module docstring).

    Args:
        params: the params.
        read: the audio reader (default ``cl_imagebind.audio_io.read_audio``).

    Attributes:
        params: the params it was built from.
        labeled: whether the file has a ``label`` column.
        skipped: rows + images + audio files skipped as bad (only with ``skip_bad``; else DataError).
        skipped_rows: malformed rows skipped.
        skipped_images: distinct missing/corrupt images skipped (their rows are dropped too).
        skipped_audio: distinct missing/corrupt audio files skipped (their rows are dropped too).
        problems: the messages of everything skipped.

    Raises:
        DataError: bad rows or files (unless ``skip_bad``), an unreadable pairs file, or nothing usable.
    """

    def __init__(self, params: AudioPairsParams, read: AudioReader | None = None) -> None:
        self.params = params
        read = read or _default_reader()
        pairs = Path(params.pairs).expanduser()
        base = Path(params.root).expanduser() if params.root else pairs.parent
        rows, bad_rows = read_pairs(pairs)

        # -- decode each distinct image and audio file once --------------------------------------------------
        first_image: dict[str, PairRow] = {}
        first_audio: dict[str, PairRow] = {}
        for row in rows:
            first_image.setdefault(row.image, row)
            first_audio.setdefault(row.audio, row)
        image_files = {p: str(base / p) for p in first_image}
        audio_files = {p: str(base / p) for p in first_audio}
        workers = max(1, min(8, os.cpu_count() or 1))
        with unlimited_pixels(), ThreadPoolExecutor(max_workers=workers) as pool:
            image_results = dict(zip(image_files, pool.map(
                lambda f: _load_image(f, params.image_size), image_files.values())))
            audio_results = dict(zip(audio_files, pool.map(
                lambda f: _load_audio(f, read, params.sample_rate, params.strict_audio), audio_files.values())))
        bad_images = [f"{image_files[p]}: {r} (first used at {first_image[p].where})"
                      for p, r in image_results.items() if isinstance(r, str)]
        bad_audio = [f"{audio_files[p]}: {r} (first used at {first_audio[p].where})"
                     for p, r in audio_results.items() if isinstance(r, str)]
        problems = bad_rows + bad_images + bad_audio
        if problems and not params.skip_bad:
            parts = [f"{len(items)} {what}" for items, what in (
                (bad_images, "missing or unreadable image(s)"), (bad_audio, "missing or unreadable audio file(s)"),
                (bad_rows, "malformed row(s)")) if items]
            raise DataError(f"{pairs}: {' and '.join(parts)} (set skip_bad = true to skip them):\n"
                            + indented_list(problems))
        self.skipped_rows, self.skipped_images, self.skipped_audio = len(bad_rows), len(bad_images), len(bad_audio)
        self.skipped = len(problems)
        self.problems = tuple(problems)
        if problems:
            log.warning("imagebind.audio-pairs: skipped %d malformed row(s), %d bad image(s) and %d bad audio "
                        "file(s) (skip_bad = true):\n%s", len(bad_rows), len(bad_images), len(bad_audio),
                        indented_list(problems))

        rows = [r for r in rows
                if not isinstance(image_results[r.image], str) and not isinstance(audio_results[r.audio], str)]
        if not rows:
            raise DataError(f"{pairs}: no usable rows (every row, image or audio file is bad)")
        image_of = {p: i for i, p in enumerate(dict.fromkeys(r.image for r in rows))}
        audio_of = {p: i for i, p in enumerate(dict.fromkeys(r.audio for r in rows))}
        images = np.stack([image_results[p] for p in image_of])
        waves = [audio_results[p] for p in audio_of]

        # -- split by label, or by image ---------------------------------------------------------------------
        self.labeled = rows[0].label is not None
        group_of = (lambda r: r.label) if self.labeled else (lambda r: r.image)
        held = choose_holdout(sorted({group_of(r) for r in rows}), params.holdout, params.split_seed)
        split_map: dict[str, DataSource] = {}
        for name, keep in (("train", lambda g: g not in held), ("heldout", lambda g: g in held)):
            part = [r for r in rows if keep(group_of(r))]
            if not part:
                continue
            names = sorted({group_of(r) for r in part})
            label_of = {g: i for i, g in enumerate(names)}
            split_map[name] = ImageAudioSource(
                images, np.array([image_of[r.image] for r in part]), waves,
                np.array([audio_of[r.audio] for r in part]), np.array([label_of[group_of(r)] for r in part]),
                names if self.labeled else None, params.sample_rate,
                meta={"image": np.array([r.image for r in part], dtype=object),
                      "audio": np.array([r.audio for r in part], dtype=object)},
            )
        self._splits = split_map
        log.info("imagebind.audio-pairs: %s", self.describe())

    def splits(self) -> Mapping[str, DataSource]:
        return self._splits


def build_audio_pairs(params: AudioPairsParams, ctx=None) -> AudioPairsDataset:
    """Factory of ``imagebind.audio-pairs``.

    Raises:
        DataError: bad rows, images or audio files (unless ``skip_bad``), an unreadable pairs file, or nothing
            usable.
    """
    return AudioPairsDataset(params)
