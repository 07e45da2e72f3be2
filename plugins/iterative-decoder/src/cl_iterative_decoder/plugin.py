"""Registration of the ``iterative.*`` decoders (no torch import here: the factories are lazy strings)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_decoders():
    yield ComponentInfo(name="iterative.magic", params=p.MagicParams, factory="cl_iterative_decoder.decoder:build_magic",
                        summary="MAGIC's magic search: the LM proposes its top-k next tokens, the contrastive model's "
                                "text tower picks (with SimCTG's degeneration penalty); trains nothing.")
    yield ComponentInfo(name="iterative.zerocap", params=p.ZeroCapParams,
                        factory="cl_iterative_decoder.decoder:build_zerocap",
                        summary="ZeroCap: beam search of the LM with its keys and values shifted by gradient steps "
                                "toward the text tower's similarity to the query; trains nothing.")
