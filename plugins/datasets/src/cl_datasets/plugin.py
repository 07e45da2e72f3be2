"""Registration of the ``datasets.*`` components (imports neither torch nor Pillow: factories are lazy)."""

from __future__ import annotations

from cl_core.plugins import hookimpl
from cl_core.registry import ComponentInfo

from . import params as p


@hookimpl
def cl_datasets():
    yield ComponentInfo(
        name="datasets.emoji", params=p.EmojiParams, factory="cl_datasets.emoji:build_emoji",
        summary="Emoji image-text pairs (OpenMoji + Noto styles), concept-level held-out splits.",
    )
    yield ComponentInfo(
        name="datasets.image-caption", params=p.ImageCaptionParams,
        factory="cl_datasets.image_caption:build_image_caption",
        summary="Your own images + JSONL/CSV captions, verified at build time, train/heldout split.",
    )
