"""Registration of the ``imagebind.*`` components (no torch import here: the factories are lazy strings)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from .audio_tower_params import AudioTowerParams
from .pairs_params import AudioPairsParams
from .params import BindParams, EmojiBindParams


@hookimpl
def cl_datasets():
    yield ComponentInfo(
        name="imagebind.emoji", params=EmojiBindParams, factory="cl_imagebind.emoji_bind:build_emoji_bind",
        summary="Emoji concepts as image, name, spoken name (espeak-ng voices) and line art; pairs with one anchor.",
    )
    yield ComponentInfo(
        name="imagebind.audio-pairs", params=AudioPairsParams, factory="cl_imagebind.audio_pairs:build_audio_pairs",
        summary="Your own (image, audio) pairs from JSONL/CSV, verified at build time, train/heldout split.",
    )


@hookimpl
def cl_evaluators():
    yield ComponentInfo(
        name="imagebind.bind", params=BindParams, factory="cl_imagebind.evaluation:build_bind",
        summary="Cross-modal recall@K for every ordered pair of modalities, emergent ratios, embedding arithmetic.",
    )


@hookimpl
def cl_encoders():
    yield ComponentInfo(
        name="imagebind.audio", params=AudioTowerParams, factory="cl_imagebind.audio_tower:build_audio_tower",
        summary="Audio tower (ImageBind): log-mel front end and a small CNN from scratch, clips averaged.",
    )
