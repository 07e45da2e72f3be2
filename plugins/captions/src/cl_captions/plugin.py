"""Registration of the ``captions.*`` components (no torch import here: the factories are lazy strings)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_evaluators():
    yield ComponentInfo(name="captions.metrics", params=p.MetricsParams, factory="cl_captions.metrics:build_metrics",
                        summary="Caption each evaluation split with the decoder: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D "
                                "(pycocoevalcap), CLIPScore, exact-name rate, seconds per 100 captions.")


@hookimpl
def cl_decoders():
    yield ComponentInfo(name="captions.clipre", params=p.CLIPReParams, factory="cl_captions.clipre:build_clipre",
                        summary="CLIPRe (DeCap's retrieval baseline): the nearest caption of a memory embedded by the "
                                "text tower; trains nothing.")
