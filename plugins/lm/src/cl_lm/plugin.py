"""Registration of the ``lm.*`` components (imports no torch: the factories are lazy strings)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_decoders():
    yield ComponentInfo(name="lm.gpt2", params=p.GPT2Params, factory="cl_lm.model:build_gpt2",
                        summary="A small GPT-2-style causal LM with its tokenizer (BPE trained on the data, bytes, "
                                "MiniLM's WordPiece); decodes prefix embeddings.")


@hookimpl
def cl_objectives():
    yield ComponentInfo(name="lm.next-token", params=p.NextTokenParams, factory="cl_lm.objective:build_next_token",
                        summary="Causal LM loss of the lm.gpt2 decoder on a batch role's texts (packed rows).")


@hookimpl
def cl_evaluators():
    yield ComponentInfo(name="lm.perplexity", params=p.PerplexityParams, factory="cl_lm.evaluate:build_perplexity",
                        summary="Held-out perplexity per token and bits per byte of the lm.gpt2 decoder.")


@hookimpl
def cl_datasets():
    yield ComponentInfo(name="lm.text", params=p.TextParams, factory="cl_lm.data:build_text",
                        summary="Raw English text (GCIDE, WordNet glosses, Wikipedia leads, files, emoji captions) "
                                "with held-out documents.")
