"""Magic search (Su et al., 2022, "Language Models Can See: Plugging Visual Controls in Text Generation", MAGIC),
batched, with a KV cache.

At each step, for every unfinished row, the LM's top-k next tokens v are scored

    score(v) = (1 - alpha) * p(v | x_<t)  -  alpha * max_j cos(h_v, h_j)  +  beta * f(v)

where the middle term is SimCTG's degeneration penalty (Su et al., 2022, "A Contrastive Framework for Neural Text
Generation": h_v the last-layer state of the candidate, h_j those of every earlier position, prompt included) and
``f(v) = softmax over the k candidates of logit_scale * cos(query, text(x_<t v))``, the text tower's similarity of
the generated text with the candidate appended (its last ``window`` tokens) to the query embedding. The best
candidate is kept; a row ends at the end token or after ``max_length`` tokens. ``beta = 0`` is contrastive search
on the same LM; ``alpha = beta = 0`` is greedy decoding.

Cost per step: one LM pass over ``rows x k`` candidate tokens (their states and the next step's logits come from
the same pass, as in ``transformers``' contrastive search: the kept candidate's cache rows become the rows' cache),
and the text tower on the distinct candidate texts (:class:`~cl_iterative_decoder.similarity.TextSimilarity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_lm.generate import Runner, prompt_inputs

from .settings import MagicSettings
from .similarity import TextSimilarity


def magic_search(lm: Any, similarity: TextSimilarity | None, queries: Tensor, *, settings: MagicSettings,
                 max_length: int, prompt: Sequence[int] = ()) -> list[list[int]]:
    """Token ids generated for each query (end token excluded), at most ``max_length`` each.

    Args:
        lm: a :class:`cl_lm.GPT2Decoder` (eval mode).
        similarity: scores candidate texts against the queries; may be None when ``settings.beta == 0``.
        queries: ``[B, N]`` embeddings in the text tower's space.
        settings: :class:`MagicSettings`.
        max_length: generated tokens per row at most.
        prompt: token ids every row starts with after ``<bos>`` (not part of the result).

    Raises:
        ValueError: ``beta > 0`` without a similarity; ``max_length < 1``; a prompt that leaves no room in the LM's
            context; queries of another width than the text tower's (from :class:`TextSimilarity`).
    """
    if settings.beta > 0 and similarity is None:
        raise ValueError("beta > 0 scores candidates with the text tower: give a TextSimilarity")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if similarity is not None and queries.shape[-1] != similarity.width:
        raise ValueError(f"queries are {queries.shape[-1]}-dim and the text tower embeds into {similarity.width} "
                         "dimensions: the queries come from another space than this decoder's text tower")
    tok, model = lm.tokenizer, lm.model
    start = [tok.bos_id, *prompt]
    steps = min(max_length, lm.context - len(start))
    if steps < 1:
        raise ValueError(f"a prompt of {len(start)} tokens leaves no room in the LM's context of {lm.context}")
    b = queries.shape[0]
    embeds, mask = prompt_inputs(model, None, [list(start)] * b)
    runner = Runner(model, embeds, mask, settings.kv_cache, hidden=True)
    logits = runner.start()
    assert runner.hidden is not None
    history = F.normalize(runner.hidden.float(), dim=-1)  # [a, L, D] states of every position so far
    out: list[list[int]] = [[] for _ in range(b)]
    alive = torch.arange(b)
    k = min(settings.k, logits.shape[-1])
    for t in range(steps):
        a = alive.shape[0]
        probs, ids = logits.softmax(-1).topk(k, dim=-1)  # [a, k]
        runner.select(torch.arange(a, device=ids.device).repeat_interleave(k))
        after = runner.step(ids.reshape(-1))  # [a * k, V]: the next step's logits of each candidate
        assert runner.hidden is not None
        states = F.normalize(runner.hidden[:, -1].float(), dim=-1).view(a, k, -1)
        penalty = torch.einsum("akd,ald->akl", states, history).amax(-1)  # [a, k]
        score = (1.0 - settings.alpha) * probs - settings.alpha * penalty
        if settings.beta > 0:
            assert similarity is not None
            texts = candidate_texts(tok, [out[int(r)] for r in alive], ids.tolist(), settings.window)
            sims = similarity(queries[alive.to(queries.device)], texts).to(score.device)
            score = score + settings.beta * (settings.logit_scale * sims).softmax(-1)
        choice = score.argmax(-1)  # [a]; ties go to the more probable candidate
        rows = torch.arange(a, device=choice.device) * k + choice
        runner.select(rows)
        token = ids.gather(1, choice[:, None])[:, 0]
        logits = after.index_select(0, rows)
        history = torch.cat([history, states.reshape(a * k, 1, -1).index_select(0, rows)], dim=1)
        ended = token == tok.eos_id
        for r, v, end in zip(alive.tolist(), token.tolist(), ended.tolist()):
            if not end:
                out[r].append(v)
        if t == steps - 1 or bool(ended.all()):
            break
        if bool(ended.any()):
            keep = (~ended).nonzero()[:, 0]
            alive, logits, history = alive[keep.cpu()], logits.index_select(0, keep), history.index_select(0, keep)
            runner.select(keep)
    return out


def candidate_texts(tokenizer: Any, generated: list[list[int]], candidates: list[list[int]],
                     window: int) -> list[list[str]]:
    """Per row, the text of its generated ids with each candidate appended (the end token appends nothing), the
    last ``window`` tokens."""
    eos = tokenizer.eos_id
    rows = [(g + ([] if c == eos else [c]))[-window:] for g, cands in zip(generated, candidates) for c in cands]
    texts = tokenizer.decode_batch(rows)
    k = len(candidates[0]) if candidates else 0
    return [[s.strip() for s in texts[i * k : (i + 1) * k]] for i in range(len(generated))]
