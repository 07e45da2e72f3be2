"""Registration of the ``capdec.*`` components (imports no torch: the factories are lazy strings)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_decoders():
    yield ComponentInfo(name="capdec.clipcap", params=p.ClipCapParams, factory="cl_capdec.decoder:build_decoder",
                        summary="ClipCap: an MLP or transformer mapper from a frozen tower's embedding to K prefix "
                                "embeddings of a cl-lm language model; trained on (image embedding, caption) pairs.")
    yield ComponentInfo(name="capdec.capdec", params=p.CapDecParams, factory="cl_capdec.decoder:build_decoder",
                        summary="CapDec: the ClipCap decoder trained on text only (noise-injected text embeddings), "
                                "decoding image embeddings, with the optional modality offset and entity prompts.")


@hookimpl
def cl_datasets():
    yield ComponentInfo(name="capdec.emoji-text", params=p.EmojiTextParams, factory="cl_capdec.data:build_emoji_text",
                        summary="The emoji concepts as caption text (every concept, or the training ones), with the "
                                "held-out image splits of datasets.emoji and its image-caption training pairs.")
