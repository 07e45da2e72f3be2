"""Registration of ``decap.decap`` (no torch import here: the factory is a lazy string)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_decoders():
    yield ComponentInfo(name="decap.decap", params=p.DeCapParams, factory="cl_decap.decoder:build_decap",
                        summary="DeCap: a text-only caption decoder (one prefix token from the normalised text "
                                "embedding, label smoothing 0.1) that decodes image embeddings projected onto a memory "
                                "of text embeddings; optional ViECap entity prompts.")
