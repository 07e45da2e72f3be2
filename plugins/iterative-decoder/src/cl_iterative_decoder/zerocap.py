"""ZeroCap's search (Tewel et al., 2022, "ZeroCap: Zero-Shot Image-to-Text Generation for Visual-Semantic
Arithmetic"): beam search of a frozen LM whose attention context is shifted, token by token, by gradient steps
toward the text tower's view of the query.

Per generated token and per beam, with x the context (``<bos>``, the prompt, the beam's tokens) and p_orig the LM's
next-token distribution after it:

1. a delta on the keys and values of every past position (all of x but its last token), in every block, starts
   at zero (ZeroCap's ``reset_context_delta``);
2. ``iterations`` times: p_shifted is the LM's next-token distribution with the shifted keys and values; its
   ``top`` most probable tokens v are the candidates; the target is ``softmax(cos(query, text(g v)) /
   clip_temperature)`` over them (g the beam's generated tokens, its last ``window`` with v; the text tower's
   similarities are constants); the loss is ``clip_scale * CE(target, p_shifted) + ce_scale * KL(p_shifted ||
   p_orig)``, summed over beams; each layer's key delta and value delta take the step ``-stepsize * grad /
   ||grad|| ** grad_norm_factor`` (the norm per beam and per tensor);
3. the next-token distribution is ``p_shifted ** fusion * p_orig ** (1 - fusion)``, renormalised, with
   p_shifted's end-token probability multiplied by ``end_factor`` from the second generated token on and divided
   by ``first_end_factor`` at the first (ZeroCap edits the end token's logit by a sign-aware factor, which
   depends on the logits' arbitrary offset; here the probability is scaled, the same direction and a factor of
   the same size).

The beams then advance as in :func:`cl_lm.generate.generate`'s ``"beam"``, through the same bookkeeping
(:class:`cl_lm.beams.Beams`: length-normalised scores ``sum log p / L ** length_penalty``, the best ``2 x
beam_size`` continuations kept, finished hypotheses in ``beam_size`` slots, ``transformers``' stopping rule),
so that with no gradient step (``iterations = 0``), no end-token edits (both factors 1), ``fusion = 1`` and
``pick = "lm"`` the search *is* the LM's own beam search.
The caption of a query is, among its finished hypotheses, the one the text tower finds most similar to the query
(as ZeroCap's ``run.py`` picks among its final beams by CLIP), or with ``pick = "lm"`` the best by LM score.

Left out of ZeroCap: its repetition penalty (off by default there), its list of forbidden GPT-2 tokens, and its
end token "." (the LM's end-of-text token ends a caption here). ZeroCap's candidate texts start with the prompt;
here they are the generated text only, as MAGIC's (the final pick reads the generated text in both).

How the shift is applied: sequences are short, so each pass runs the LM without a KV cache on the whole context,
and forward hooks on each block's ``attn.c_attn`` (GPT-2's query, key, value projection, concatenated on the last
dimension) replace the keys and values of the past positions by those of the unshifted pass plus the delta. The
past positions' own states are then exactly the unshifted ones (as with ZeroCap's shifted ``past_key_values``),
and only the last position sees the shift. The LM's weights get no gradient (``torch.autograd.grad`` on the
deltas only). Cost per token: (1 + iterations + 1) passes of ``rows x len(x)`` positions, ``iterations``
backward passes, and the text tower on the distinct texts of ``rows x top`` candidates per iteration
(:class:`~cl_iterative_decoder.similarity.TextSimilarity` keeps them across steps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from cl_lm.generate import Beams, Runner, prompt_inputs

from .magic import candidate_texts
from .settings import ZeroCapSettings
from .similarity import TextSimilarity

class _ContextShift:
    """Forward hooks on every block's ``attn.c_attn`` of a GPT-2: ``record`` keeps the keys and values of the past
    positions (all but the last), ``shift`` puts the recorded ones plus :attr:`deltas` in their place; otherwise
    the hooks change nothing."""

    def __init__(self, model: Any) -> None:
        blocks = getattr(getattr(model, "transformer", None), "h", None)
        if blocks is None or not all(hasattr(getattr(b, "attn", None), "c_attn") for b in blocks):
            raise ValueError(f"ZeroCap shifts GPT-2's keys and values (transformer.h[i].attn.c_attn); "
                             f"{type(model).__name__} has no such blocks")
        self.width = int(model.config.n_embd)
        self.projections = [b.attn.c_attn for b in blocks]
        self.mode: str | None = None
        self.clean: list[Tensor | None] = [None] * len(self.projections)
        self.deltas: list[Tensor] = []
        self._handles: list[Any] = []

    def __enter__(self) -> _ContextShift:
        self._handles = [p.register_forward_hook(self._hook(i)) for i, p in enumerate(self.projections)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.mode = None

    def _hook(self, layer: int):
        d = self.width

        def hook(module: Any, args: Any, output: Tensor) -> Tensor | None:
            if self.mode == "record":
                self.clean[layer] = output[:, :-1, d:].detach()
            elif self.mode == "shift":
                clean = self.clean[layer]
                assert clean is not None
                past = clean + self.deltas[layer].to(output.dtype)
                return torch.cat([torch.cat([output[:, :-1, :d], past], dim=-1), output[:, -1:]], dim=1)
            return None

        return hook


def _last_logits(model: Any, contexts: list[list[int]]) -> Tensor:
    """``[r, V]`` next-token logits after each context (all the same length), the whole sequence run without a
    cache, as :func:`cl_lm.generate.generate` runs it with ``use_cache=False``."""
    with torch.no_grad():
        embeds, mask = prompt_inputs(model, None, contexts)
    return Runner(model, embeds, mask, False).start()


def _next_logprobs(lm: Any, shift: _ContextShift, similarity: TextSimilarity | None, queries: Tensor,
                   contexts: list[list[int]], generated: list[list[int]], step: int, settings: ZeroCapSettings,
                   trace: list[Tensor] | None = None) -> Tensor:
    """``[r, V]`` log-probabilities of the next token of each row (context, the row's query ``[r, N]``, its
    generated tokens), steered as the module docstring says. ``trace`` (for tests) receives each iteration's
    per-row CLIP loss, and after the last step the loss at the final shift."""
    s, model, tok = settings, lm.model, lm.tokenizer
    shift.mode = "record"
    try:
        with torch.no_grad():
            orig = _last_logits(model, contexts)
    finally:
        shift.mode = None
    past = len(contexts[0]) - 1
    shifted = orig
    if s.iterations > 0 and past > 0:
        assert similarity is not None
        rows, device = len(contexts), orig.device
        log_orig = orig.log_softmax(-1)
        top = min(s.top, orig.shape[-1])
        shift.deltas = [torch.zeros(rows, past, 2 * shift.width, device=device, requires_grad=True)
                        for _ in shift.projections]

        def losses() -> tuple[Tensor, Tensor]:
            logits = _last_logits(model, contexts)
            logp = logits.log_softmax(-1)
            ids = logp.detach().topk(top, dim=-1).indices
            texts = candidate_texts(tok, generated, ids.tolist(), s.window)
            with torch.no_grad():
                target = (similarity(queries, texts).to(device).float() / s.clip_temperature).softmax(-1)
            clip = -(target * logp.gather(1, ids)).sum(-1)
            fluency = (logp.exp() * (logp - log_orig)).sum(-1)
            return clip, s.clip_scale * clip + s.ce_scale * fluency

        shift.mode = "shift"
        try:
            with torch.enable_grad():
                for _ in range(s.iterations):
                    clip, loss = losses()
                    if trace is not None:
                        trace.append(clip.detach())
                    grads = torch.autograd.grad(loss.sum(), shift.deltas)
                    with torch.no_grad():
                        for delta, grad in zip(shift.deltas, grads):
                            g = grad.view(rows, past, 2, shift.width)
                            norm = g.pow(2).sum(dim=(1, 3), keepdim=True).sqrt() + 1e-15
                            delta -= (s.stepsize * g / norm**s.grad_norm_factor).view_as(delta)
            with torch.no_grad():
                if trace is not None:
                    trace.append(losses()[0])
                shifted = _last_logits(model, contexts)
        finally:
            shift.mode = None
            shift.deltas = []
    factor = s.end_factor if step >= 1 else 1.0 / s.first_end_factor
    if factor != 1.0:
        shifted = shifted.clone()
        shifted[:, tok.eos_id] += math.log(factor)
    if s.fusion == 1.0:
        return shifted.log_softmax(-1)
    return (s.fusion * shifted.log_softmax(-1) + (1.0 - s.fusion) * orig.log_softmax(-1)).log_softmax(-1)


def _check(lm: Any, similarity: TextSimilarity | None, queries: Tensor, settings: ZeroCapSettings, max_length: int,
           prompt: Sequence[int]) -> int:
    """The steps to run; every bad input is a ValueError before any model work."""
    if similarity is None and (settings.iterations > 0 or settings.pick == "clip"):
        raise ValueError("ZeroCap scores candidates and picks captions with the text tower: give a TextSimilarity "
                         "(only iterations = 0 with pick = 'lm' runs without one)")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if not isinstance(queries, Tensor) or queries.dim() != 2 or queries.shape[0] == 0:
        shape = list(queries.shape) if isinstance(queries, Tensor) else type(queries).__name__
        raise ValueError(f"queries must be [B, N] embeddings with B >= 1, got {shape}")
    if similarity is not None and queries.shape[-1] != similarity.width:
        raise ValueError(f"queries are {queries.shape[-1]}-dim and the text tower embeds into {similarity.width} "
                         "dimensions: the queries come from another space than this decoder's text tower")
    start = 1 + len(prompt)
    steps = min(max_length, lm.context - start)
    if steps < 1:
        raise ValueError(f"a prompt of {start} tokens (with <bos>) leaves no room in the LM's context of "
                         f"{lm.context}")
    return steps


def zerocap_hypotheses(lm: Any, similarity: TextSimilarity | None, queries: Tensor, *, settings: ZeroCapSettings,
                       max_length: int, prompt: Sequence[int] = ()) -> list[list[tuple[list[int], float]]]:
    """Each query's finished hypotheses (token ids without the end token, length-normalised LM score), best score
    first: what :func:`zerocap_search` picks from. Arguments and errors as there."""
    steps = _check(lm, similarity, queries, settings, max_length, prompt)
    tok, model = lm.tokenizer, lm.model
    start = [tok.bos_id, *map(int, prompt)]
    b, w, s = queries.shape[0], settings.beam_size, settings
    device = model.get_input_embeddings().weight.device
    beams = Beams(b, w, steps, eos_id=tok.eos_id, pad_id=tok.pad_id, length_penalty=s.length_penalty, device=device)
    was_training = model.training
    model.eval()
    try:
        with _ContextShift(model) as shift:
            while not beams.done:
                t, rows = beams.step, beams.active.cpu()
                a = len(rows)
                if t == 0:  # every beam of a query has the same context: one row per query
                    logp = _next_logprobs(lm, shift, similarity, queries[rows.to(queries.device)], [start] * a,
                                          [[] for _ in range(a)], t, s)
                    logp = logp.repeat_interleave(w, dim=0)
                else:
                    gen = beams.running().reshape(a * w, t).tolist()
                    qrows = rows.repeat_interleave(w).to(queries.device)
                    logp = _next_logprobs(lm, shift, similarity, queries[qrows], [start + g for g in gen], gen, t, s)
                beams.advance(logp.view(a, w, -1))
    finally:
        model.train(was_training)
    h = beams.hypotheses()
    out: list[list[tuple[list[int], float]]] = []
    for toks, lengths, scores, done in zip(h.tokens.tolist(), h.lengths.tolist(), h.scores.tolist(),
                                           h.done.tolist()):
        hyps = []
        for row, length, score, ok in zip(toks, lengths, scores, done):
            if ok:
                row = row[:length]
                hyps.append((row[:-1] if row and row[-1] == tok.eos_id else row, float(score)))
        out.append(hyps)
    return out


def zerocap_search(lm: Any, similarity: TextSimilarity | None, queries: Tensor, *, settings: ZeroCapSettings,
                   max_length: int, prompt: Sequence[int] = ()) -> list[list[int]]:
    """Token ids generated for each query (end token excluded), at most ``max_length`` each.

    Args:
        lm: a :class:`cl_lm.GPT2Decoder` (run in eval mode here; its weights get no gradient).
        similarity: scores texts against the queries through the text tower; may be None only with
            ``iterations = 0`` and ``pick = "lm"`` (the LM's own beam search).
        queries: ``[B, N]`` embeddings in the text tower's space.
        settings: :class:`ZeroCapSettings`.
        max_length: generated tokens per query at most (the end token counts, as in
            :func:`cl_lm.generate.generate`'s ``max_new_tokens``).
        prompt: token ids every context starts with after ``<bos>`` (not part of the result).

    Raises:
        ValueError: no similarity where one is needed; ``max_length < 1``; queries that are not ``[B, N]`` or of
            another width than the text tower's; a prompt that leaves no room in the LM's context; an LM that is
            not a GPT-2 (no ``transformer.h[i].attn.c_attn``).
    """
    hyps = zerocap_hypotheses(lm, similarity, queries, settings=settings, max_length=max_length, prompt=prompt)
    if settings.pick == "lm":
        return [list(h[0][0]) if h else [] for h in hyps]
    assert similarity is not None
    w = max(len(h) for h in hyps)
    if w == 0:
        return [[] for _ in hyps]
    tok = lm.tokenizer
    flat = tok.decode_batch([ids for h in hyps for ids, _ in h]) if any(hyps) else []
    texts, at = [], 0
    for h in hyps:
        texts.append([t.strip() for t in flat[at : at + len(h)]] + [""] * (w - len(h)))
        at += len(h)
    choice = similarity(queries, texts).argmax(-1).tolist()  # ties go to the better LM score
    return [list(h[c][0]) if h else [] for h, c in zip(hyps, choice)]
