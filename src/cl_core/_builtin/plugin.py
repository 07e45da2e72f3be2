"""Registration of the built-in ``core.*`` components (imports no torch: factories are lazy)."""

from __future__ import annotations

from ..registry import ComponentInfo
from ..plugins import hookimpl
from . import params as p


@hookimpl
def cl_scorers():
    yield ComponentInfo(name="core.cosine", params=p.CosineParams, factory="cl_core._builtin.scorers:build_cosine",
                        summary="Cosine similarity times a (learnable, clamped) logit scale.")
    yield ComponentInfo(name="core.dot", params=p.DotParams, factory="cl_core._builtin.scorers:build_dot",
                        summary="Dot product q . k.")


@hookimpl
def cl_losses():
    yield ComponentInfo(name="core.clip", params=p.ClipLossParams, factory="cl_core._builtin.losses:build_clip",
                        summary="CLIP symmetric cross-entropy over in-batch pairs.")
    yield ComponentInfo(name="core.info-nce", params=p.InfoNCEParams,
                        factory="cl_core._builtin.losses:build_info_nce",
                        summary="InfoNCE with in-batch negatives (one direction or symmetric).")


@hookimpl
def cl_samplers():
    yield ComponentInfo(name="core.in-batch", params=p.InBatchParams,
                        factory="cl_core._builtin.samplers:build_in_batch",
                        summary="Shuffled batches of pairs; other rows are negatives.")
