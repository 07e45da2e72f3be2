"""Helpers of the cl-decap tests (imported through conftest, which puts this folder on ``sys.path``): a tiny DeCap
on the toy plugin's character text encoder with a tiny byte-level LM (offline, CPU, milliseconds)."""

from __future__ import annotations

import torch


def tiny_scratch(**lm):
    """A ``scratch`` table: an ``lm.gpt2`` with the byte tokenizer, 1 block of width 16, context 128."""
    from cl_core.api import DecoderRef
    from cl_lm.params import GPT2Params

    values = dict(tokenizer="bytes", layers=1, width=16, heads=2, context=128)
    values.update(lm)
    return DecoderRef(type="lm.gpt2", params=GPT2Params(**values))


def toy_context(host, *, image: bool = True, **kw):
    """A BuildContext with the toy character text encoder (role ``text``), a toy linear image encoder (role
    ``image``), the toy pairs with captions ("class 0" ... "class 15") and the host's registry."""
    from cl_core.api import BuildContext
    from cl_core.testing import toy

    torch.manual_seed(0)
    encoders = {"text": toy.build_chars(toy.ToyCharsParams(embed_dim=4), None)}
    if image:
        encoders["image"] = toy.build_linear(toy.ToyLinearParams(in_dim=8, embed_dim=4), None)
    kw.setdefault("dataset", toy.build_pairs(toy.ToyPairsParams(captions=True), None))
    return BuildContext(encoders=encoders, registry=host.registry(), **kw)


def tiny_decap(host, *, ctx=None, **params):
    """A built ``decap.decap`` on :func:`toy_context` with a :func:`tiny_scratch` LM (eval mode)."""
    from cl_decap.decoder import build_decap
    from cl_decap.params import DeCapParams

    params.setdefault("scratch", tiny_scratch())
    torch.manual_seed(0)
    return build_decap(DeCapParams(**params), ctx or toy_context(host)).eval()
