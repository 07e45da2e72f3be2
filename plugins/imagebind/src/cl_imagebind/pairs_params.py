"""Params of ``imagebind.audio-pairs`` (torch-free, Pillow-free: ``cl spec validate`` imports this)."""

from __future__ import annotations

from attrs import field, frozen, validators

from cl_core.api import existing_path


@frozen(kw_only=True)
class AudioPairsParams:
    """``imagebind.audio-pairs``: your own (image, audio) pairs, split into "train" and "heldout".

    The pairs file is JSON Lines (``.jsonl``/``.ndjson``/``.json``: one object per line) or CSV/TSV
    (``.csv``/``.tsv`` with a header row), with columns ``image`` and ``audio`` (paths, relative to ``root``,
    else to the pairs file's folder; absolute paths are kept) and optionally ``label`` (a class name or id
    shared by several rows; if one row has a label, all must). Every image and audio file is decoded at build
    time; missing or corrupt files are listed by path, malformed rows by ``file:line``.

    Attributes:
        pairs: the JSONL or CSV/TSV pairs file (must exist).
        root: folder the relative paths are relative to (must exist); default the pairs file's folder.
        image_size: side in pixels of the square RGB images kept in memory (>= 8; default 224; non-square
            images are scaled to fit and padded with white). Memory: 3 * image_size**2 bytes per distinct image.
        sample_rate: rate in Hz the audio is resampled to (default 16000, ImageBind's). Memory: 4 * sample_rate
            bytes per second of distinct audio (float32), e.g. 64 kB/s at 16 kHz.
        holdout: fraction in [0, 1) of the labels (or, without a ``label`` column, of the distinct images) held
            out of training into the "heldout" split. Default 0.2.
        split_seed: seed of the split (a pure function of this seed and the label / image path).
        skip_bad: skip (and count, in ``dataset.skipped``) missing/corrupt files and malformed rows instead of
            raising :class:`~cl_core.errors.DataError` before training.
        strict_audio: passed to ``cl_imagebind.audio_io.read_audio(strict=...)``: refuse audio that would need
            lenient decoding instead of accepting it.
    """

    pairs: str = field(validator=existing_path("file"))
    root: str | None = field(default=None, validator=existing_path("dir"))
    image_size: int = field(default=224, validator=validators.ge(8))
    sample_rate: int = field(default=16000, validator=validators.ge(1000))
    holdout: float = field(default=0.2, validator=[validators.ge(0.0), validators.lt(1.0)])
    split_seed: int = 0
    skip_bad: bool = False
    strict_audio: bool = False
