"""Registration of the ``clip.*`` components (no torch import here: the factories are lazy strings)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_encoders():
    yield ComponentInfo(name="clip.vit", params=p.ViTParams, factory="cl_clip.vit:build_vit",
                        summary="CLIP Vision Transformer image tower (from scratch), class-token or attention pooling.")
    yield ComponentInfo(name="clip.resnet", params=p.ResNetParams, factory="cl_clip.resnet:build_resnet",
                        summary="CLIP ModifiedResNet image tower (from scratch) with AttentionPool2d.")
    yield ComponentInfo(name="clip.efficientnet", params=p.EfficientNetParams,
                        factory="cl_clip.efficientnet:build_efficientnet",
                        summary="Pretrained EfficientNet-Lite0/1/2 (ImageNet) image tower, frozen by default.")
    yield ComponentInfo(name="clip.efficientnet-ensemble", params=p.EfficientNetEnsembleParams,
                        factory="cl_clip.ensemble:build_efficientnet_ensemble",
                        summary="Several frozen EfficientNet-Lite trunks, one head each; the sum of their normalised "
                                "embeddings.")
    yield ComponentInfo(name="clip.text-transformer", params=p.TextTransformerParams,
                        factory="cl_clip.text:build_text_transformer",
                        summary="CLIP causal text transformer (from scratch), pooled at the end-of-text token.")
    yield ComponentInfo(name="clip.minilm", params=p.MiniLMParams, factory="cl_clip.minilm:build_minilm",
                        summary="Pretrained all-MiniLM-L6-v2 text tower (mean pooling), frozen by default.")


@hookimpl
def cl_evaluators():
    yield ComponentInfo(name="clip.zero-shot", params=p.ZeroShotParams, factory="cl_clip.zero_shot:build_zero_shot",
                        summary="Zero-shot classification with prompt ensembles: top-1/top-5 per split.")
    yield ComponentInfo(name="clip.retrieval", params=p.RetrievalParams, factory="cl_clip.retrieval:build_retrieval",
                        summary="Image->text and text->image hit@K (CLIP-paper recall@K) per split.")
