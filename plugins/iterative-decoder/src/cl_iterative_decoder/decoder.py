"""``iterative.magic`` and ``iterative.zerocap``: the training-free caption decoders as :class:`cl_core.api.Decoder`\\ s.

A decoder holds the LM (a submodule: it moves with the pipeline) and uses the pipeline's text tower, which it does
not own (it is the pipeline's encoder of ``text_role``, saved and loaded with the pipeline, never twice). Nothing
trains (``trainable = False``): a spec whose decoder is iterative and whose towers are frozen has nothing to train,
so ``cl eval SPEC`` and ``cl caption SPEC ITEM...`` use it as it is, and ``cl caption RUN ITEM... --decoder
iterative`` puts MAGIC over any contrastive run (:func:`cl_core.captioning.with_decoder`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cl_core.api import BuildError, ClError, Decoder, spec_problem

from .magic import magic_search
from .params import IterativeParams, MagicParams, ZeroCapParams
from .similarity import TextSimilarity
from .zerocap import zerocap_search


class IterativeDecoder(Decoder):
    """An LM steered by a text tower (module docstring); subclasses give :meth:`_search`.

    Args:
        params: the decoder's params (:class:`~cl_iterative_decoder.params.IterativeParams`).
        lm: a :class:`cl_lm.GPT2Decoder` (kept frozen, in eval mode).
        text: the text tower (an encoder of texts whose space the queries are in).

    ``decode(embeddings [B, N], max_length)`` returns one caption per row, at most ``max_length`` LM tokens.
    Raises ValueError for queries of another width than the text tower's.
    """

    trainable = False
    reads_tokens = False
    method = "iterative"

    def __init__(self, params: IterativeParams, lm: Any, text: Any) -> None:
        super().__init__()
        self.params = params
        self.lm = lm
        self.lm.set_trainable(0)
        object.__setattr__(self, "_text", text)  # the pipeline's tower: not a submodule of the decoder
        self.similarity = TextSimilarity(text, batch_size=params.text_batch_size)
        self._prompt = lm.tokenizer.ids([params.prompt])[0] if params.prompt.strip() else []

    @property
    def embed_dim(self) -> int:
        """N: the width of the queries (the text tower's)."""
        return int(self._text.embed_dim)

    def _search(self, queries: Tensor, max_length: int) -> list[list[int]]:
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Forget the candidate texts' embeddings kept across calls (the next call starts cold, as timings need)."""
        self.similarity.clear()

    @torch.no_grad()
    def _decode(self, embeddings: Tensor, *, max_length: int) -> list[str]:
        if embeddings.shape[-1] != self.embed_dim:
            raise ValueError(f"{self.method} scores candidates with a text tower of {self.embed_dim} dimensions, and "
                             f"the embeddings are {embeddings.shape[-1]}-dim: they come from another model's space")
        self.lm.eval()
        out: list[str] = []
        for start in range(0, embeddings.shape[0], self.params.batch_size):
            ids = self._search(embeddings[start : start + self.params.batch_size], max_length)
            out += [t.strip() for t in self.lm.tokenizer.decode_batch(ids)]
        return out

    def train(self, mode: bool = True) -> IterativeDecoder:
        super().train(mode)
        self.lm.eval()  # frozen: dropout never on
        return self


class MagicDecoder(IterativeDecoder):
    """MAGIC's magic search (:mod:`cl_iterative_decoder.magic`)."""

    method = "iterative.magic"

    def _search(self, queries: Tensor, max_length: int) -> list[list[int]]:
        return magic_search(self.lm, self.similarity, queries, settings=self.params,
                            max_length=max_length, prompt=self._prompt)


class ZeroCapDecoder(IterativeDecoder):
    """ZeroCap's gradient-steered beam search (:mod:`cl_iterative_decoder.zerocap`)."""

    method = "iterative.zerocap"

    def _search(self, queries: Tensor, max_length: int) -> list[list[int]]:
        return zerocap_search(self.lm, self.similarity, queries, settings=self.params,
                              max_length=max_length, prompt=self._prompt)


def _load_lm(source: str) -> Any:
    import cl_lm

    return cl_lm.load_lm(source, freeze=True)


def _build(cls: type, params: IterativeParams, ctx: Any) -> Any:
    """The decoder ``cls`` over the LM of ``params.lm`` and the pipeline's encoder of ``text_role``.

    Raises:
        SpecError: ``text_role`` is not an encoder role of the spec, or its tower trains (the candidates would be
            scored by a moving tower).
        BuildError: no encoder of ``text_role`` built; the LM run cannot be loaded or holds no ``lm.gpt2``.
    """
    path = ctx.path or "decoder"
    if ctx.spec is not None and params.text_role not in ctx.spec.encoders:
        raise spec_problem(ctx, f"{path}.text_role", f"no encoder role {params.text_role!r}; encoder roles: "
                           f"{', '.join(ctx.spec.encoders) or 'none'}")
    text = ctx.encoders.get(params.text_role) if ctx.encoders else None
    if text is None:
        raise BuildError(f"{path}: the candidates are scored with the encoder of role {params.text_role!r}, and none "
                         "is built")
    if ctx.spec is not None and ctx.spec.trains and any(q.requires_grad for q in text.parameters()):
        raise spec_problem(ctx, f"{path}.text_role", f"the encoder of role {params.text_role!r} trains in this spec",
                           "an iterative decoder needs a fixed text tower: freeze it (type = \"core.from-run\")")
    try:
        lm = _load_lm(params.lm)
    except ClError as exc:
        raise BuildError(f"{path}.lm: {exc}") from None
    if type(lm).__name__ != "GPT2Decoder":
        raise BuildError(f"{path}.lm: {params.lm} holds a {type(lm).__name__}, not an lm.gpt2 language model")
    return cls(params, lm, text)


def build_magic(params: MagicParams, ctx: Any) -> MagicDecoder:
    """Factory of ``iterative.magic`` (see :func:`_build` for the errors)."""
    return _build(MagicDecoder, params, ctx)


def build_zerocap(params: ZeroCapParams, ctx: Any) -> ZeroCapDecoder:
    """Factory of ``iterative.zerocap`` (see :func:`_build` for the errors)."""
    return _build(ZeroCapDecoder, params, ctx)
