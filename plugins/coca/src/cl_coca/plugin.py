"""Registration of the ``coca.*`` components (imports no torch: the factories are lazy strings)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_encoders():
    yield ComponentInfo(name="coca.image", params=p.CoCaImageParams, factory="cl_coca.image:build_image",
                        summary="CoCa's image side: a token grid (pretrained EfficientNet-Lite map or a ViT) and two "
                                "attentional poolers, one query for the contrastive embedding, N for the captioner.")
    yield ComponentInfo(name="coca.text", params=p.CoCaTextParams, factory="cl_coca.text:build_text",
                        summary="CoCa's unimodal text decoder: causal blocks from a cl-lm run, a CLS token appended "
                                "after the padding (masked from it) whose output is the text embedding.")


@hookimpl
def cl_decoders():
    yield ComponentInfo(name="coca.captioner", params=p.CoCaCaptionerParams,
                        factory="cl_coca.captioner:build_captioner",
                        summary="CoCa's multimodal text decoder: cross-attends to the image's captioning tokens on "
                                "top of the coca.text tower's states; trained with core.caption beside the CLIP loss.")


@hookimpl
def cl_evaluators():
    yield ComponentInfo(name="coca.attention", params=p.AttentionMapsParams,
                        factory="cl_coca.attention:build_attention_maps",
                        summary="Where the captioning pooler's queries look: a plot per split and the mean "
                                "attention entropy over the token grid.")
