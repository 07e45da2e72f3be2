"""Batched decoding for a causal LM: greedy, length-normalised beam search, top-k / top-p sampling, stop strings,
a KV cache, and an optional prefix of input embeddings.

One job: turn a batch of conditions (a prefix of embeddings ``[B, K, D]``, as ClipCap, CapDec and DeCap feed the
LM through ``inputs_embeds``; and/or prompt token ids) into token ids and texts. The model is any
``transformers`` causal LM that takes ``inputs_embeds``, ``attention_mask``, ``position_ids`` and
``past_key_values`` (``GPT2LMHeadModel``); the loop is this module's, not ``transformers``' ``generate``.

What it does, per method (:class:`Decoding`):

* ``"greedy"``: the most probable token at each step.
* ``"beam"``: beam search with ``beam_size`` beams that keeps, at each step, the best ``2 x beam_size`` of the
  ``beam_size x V`` continuations; a continuation that ends (end-of-text token, a stop string, or the last
  allowed step) among the best ``beam_size`` is a finished hypothesis scored sum log p / L ** length_penalty
  with L its generated tokens (end token included); a batch row stops when all ``beam_size`` finished slots are
  full and the best running beam, normalised by the current length, cannot beat the worst of them. These are
  the semantics of ``transformers``' ``generate(num_beams=..., early_stopping=False)`` (its default), so both
  give the same texts on the same weights (``length_penalty = 1.0``, the default, divides by the length).
  The bookkeeping is :class:`cl_lm.beams.Beams` (re-exported here), which other searches share (ZeroCap).
* ``"sample"``: logits / ``temperature``, then the ``top_k`` most probable tokens, then the smallest set whose
  probability reaches ``top_p`` (nucleus sampling, Holtzman et al., 2020, "The Curious Case of Neural Text
  Degeneration"), then one draw by inverse CDF with a uniform number from a generator seeded by (``seed``, row
  index): the same seed gives the same texts for the same rows, whatever the batch size.

Batching: rows are decoded ``batch_size`` at a time (``batch_size // beam_size`` rows for beams). Prompts of
different lengths are left-padded (positions count only real tokens, as ``generate`` does). A row that has
finished is dropped from the batch (its cache rows too), and so is a beam-search row whose result is settled,
so the cost of a batch follows its unfinished rows. With ``use_cache`` (the default) each step runs the model on
the new token only, with the keys and values of earlier positions kept (the model's ``past_key_values``); without
it each step runs the whole sequence again (the reference the cached path is tested against).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from attrs import field, frozen, validators
from torch import Tensor

# the beam-search bookkeeping, shared with other searches (ZeroCap); re-exported here
from .beams import NEG as NEG
from .beams import Beams as Beams
from .beams import Hypotheses as Hypotheses
from .beams import Step as Step

METHODS = ("greedy", "beam", "sample")


@frozen(kw_only=True)
class Decoding:
    """How to decode.

    Attributes:
        method: ``"greedy"``, ``"beam"`` or ``"sample"`` (see the module docstring).
        max_new_tokens: generated tokens per row at most (the end-of-text token counts).
        beam_size: beams per row (``"beam"``).
        length_penalty: exponent of the length a finished beam's log-probability is divided by.
        top_k: keep the k most probable tokens when sampling (0: all).
        top_p: keep the smallest most-probable set reaching this probability when sampling (1.0: all).
        temperature: divide the logits by it when sampling.
        seed: seed of the sampling draws.
        stop: strings that end a row; its text is cut before the first of them.
        use_cache: keep keys and values between steps (KV cache).
        batch_size: rows per forward pass.
    """

    method: str = field(default="greedy", validator=validators.in_(METHODS))
    max_new_tokens: int = field(default=32, validator=validators.ge(1))
    beam_size: int = field(default=3, validator=validators.ge(1))
    length_penalty: float = 1.0
    top_k: int = field(default=0, validator=validators.ge(0))
    top_p: float = field(default=1.0)
    temperature: float = field(default=1.0, validator=validators.gt(0))
    seed: int = 0
    stop: tuple[str, ...] = ()
    use_cache: bool = True
    batch_size: int = field(default=256, validator=validators.ge(1))

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {list(self.stop)!r}")


def decoding_of(params: Any, **overrides: Any) -> Decoding:
    """The :class:`Decoding` of a decoder's params (``method``, ``beam_size``, ``length_penalty``, ``top_k``,
    ``top_p``, ``temperature``, ``seed``, ``stop``), with ``overrides`` (``max_new_tokens``, ``method``, ...)."""
    values: dict[str, Any] = dict(method=params.method, beam_size=params.beam_size,
                                  length_penalty=params.length_penalty, top_k=params.top_k, top_p=params.top_p,
                                  temperature=params.temperature, seed=params.seed, stop=tuple(params.stop))
    values.update(overrides)
    return Decoding(**values)


@dataclass
class Generated:
    """What :func:`generate` returns for B rows.

    Attributes:
        sequences: ``[B, T]`` int64 generated ids as ``transformers``' ``generate`` returns the new tokens: the
            end-of-text token where a row ended, ``pad_id`` after it, T the longest row.
        tokens: per row, the generated ids before the end-of-text token.
        texts: per row, the decoded text, cut before the first stop string (empty without a tokenizer).
        scores: ``[B]`` float32: greedy and sampling, the summed log-probability of the generated tokens (end
            token included) under the model; beams, the length-normalised score of the returned hypothesis.
        finished: per row, whether it ended (end token or stop string) rather than ran out of ``max_new_tokens``.
    """

    sequences: Tensor
    tokens: list[list[int]]
    texts: list[str]
    scores: Tensor
    finished: list[bool]


# -- checks -------------------------------------------------------------------------------------------------------


def _context(model: Any) -> int:
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell the context length of {type(model).__name__} (no n_positions)")


def _check(model: Any, prefix: Tensor | None, input_ids: Sequence[Sequence[int]] | Tensor | None,
           settings: Decoding) -> tuple[int, list[list[int]]]:
    """Rows B and the prompts as lists; every bad input is a ValueError before any model work."""
    width = int(model.get_input_embeddings().embedding_dim)
    vocab = int(model.get_input_embeddings().num_embeddings)
    rows = None
    if prefix is not None:
        if not isinstance(prefix, Tensor) or prefix.dim() != 3:
            shape = list(prefix.shape) if isinstance(prefix, Tensor) else type(prefix).__name__
            raise ValueError(f"prefix must be [B, K, D] embeddings, got {shape}")
        if prefix.shape[2] != width:
            raise ValueError(f"prefix embeddings are {prefix.shape[2]} wide; the LM's embeddings are {width} wide "
                             f"(prefix [B, K, D] needs D = {width})")
        if prefix.shape[0] == 0:
            raise ValueError("prefix has no rows")
        if not prefix.is_floating_point():
            raise ValueError(f"prefix must be floating point, got {prefix.dtype}")
        if not bool(torch.isfinite(prefix).all()):
            raise ValueError("prefix has non-finite values (NaN or inf)")
        rows = int(prefix.shape[0])
    prompts: list[list[int]] = []
    if input_ids is not None:
        if isinstance(input_ids, Tensor):
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be [B, T] or a list of id lists, got {list(input_ids.shape)}")
            prompts = [list(map(int, r)) for r in input_ids.tolist()]
        else:
            prompts = [list(map(int, r)) for r in input_ids]
        if rows is not None and len(prompts) != rows:
            raise ValueError(f"{len(prompts)} prompts for {rows} prefixes")
        rows = len(prompts)
        bad = [i for i, r in enumerate(prompts) if any(t < 0 or t >= vocab for t in r)]
        if bad:
            raise ValueError(f"prompt {bad[0]} has token ids outside [0, {vocab})")
    if rows is None or rows == 0:
        raise ValueError("nothing to decode: give a prefix [B, K, D] and/or prompts of token ids")
    k = int(prefix.shape[1]) if prefix is not None else 0
    if not prompts:
        prompts = [[] for _ in range(rows)]
    empty = [i for i, r in enumerate(prompts) if k + len(r) == 0]
    if empty:
        raise ValueError(f"row {empty[0]} has neither prefix embeddings nor prompt tokens (start it with the "
                         f"begin-of-text token)")
    longest = k + max(len(r) for r in prompts)
    context = _context(model)
    if longest + settings.max_new_tokens > context:
        raise ValueError(f"prefix length {k} + prompt length {longest - k} + max_new_tokens "
                         f"{settings.max_new_tokens} = {longest + settings.max_new_tokens} exceeds the LM's context "
                         f"of {context} positions")
    return rows, prompts


# -- the model runner: one batch, with or without a KV cache ------------------------------------------------------


def _select_cache(cache: Any, index: Tensor) -> Any:
    """The cache with its batch rows taken at ``index`` (reordered, repeated or subset)."""
    if cache is None:
        return None
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
        return cache
    return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)


class Runner:
    """Holds one batch's inputs, attention mask, positions and cache; gives the next-token logits ``[b, V]``.

    With ``hidden``, each call also leaves the last layer's states of the positions it ran in :attr:`hidden`
    (``[b, L, D]`` after :meth:`start`, ``[b, 1, D]`` after :meth:`step`; the final layer norm applied, as
    ``transformers`` returns ``hidden_states[-1]``): what contrastive and magic search compare candidates with.
    """

    def __init__(self, model: Any, embeds: Tensor, mask: Tensor, use_cache: bool, *, hidden: bool = False) -> None:
        self.model = model
        self.use_cache = use_cache
        self.want_hidden = hidden
        self.hidden: Tensor | None = None
        self.embed = model.get_input_embeddings()
        self.mask = mask
        self.positions = (mask.cumsum(-1) - 1).clamp(min=0).masked_fill(mask == 0, 0)
        self.embeds = embeds  # kept whole only without a cache
        self.cache: Any = None
        params = inspect.signature(model.forward).parameters
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        # transformers >= 5 names the KV cache ``cache``; earlier versions ``past_key_values``
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def _forward(self, cache: Any = None, *, new: int | None = None, **kwargs: Any) -> Tensor:
        """Run the model; ``new``: the trailing positions whose hidden states to keep (None: all)."""
        if cache is not None:
            kwargs[self._cache_arg] = cache
        if self.want_hidden:
            kwargs["output_hidden_states"] = True
        out = self.model(**kwargs, **self._keep, use_cache=self.use_cache, return_dict=True)
        if self.want_hidden:
            states = out.hidden_states[-1]
            self.hidden = states if new is None else states[:, -new:]
        if self.use_cache:
            cache = getattr(out, "cache", None)
            self.cache = cache if cache is not None else out.past_key_values
        return out.logits[:, -1, :].float()

    def start(self) -> Tensor:
        return self._forward(inputs_embeds=self.embeds, attention_mask=self.mask, position_ids=self.positions)

    def step(self, tokens: Tensor) -> Tensor:
        """Append ``tokens [b]`` and return the logits after them."""
        ones = torch.ones_like(self.mask[:, :1])
        self.mask = torch.cat([self.mask, ones], dim=1)
        self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)
        new = self.embed(tokens[:, None])
        if self.use_cache:
            return self._forward(self.cache, new=1, inputs_embeds=new, attention_mask=self.mask,
                                 position_ids=self.positions[:, -1:])
        self.embeds = torch.cat([self.embeds, new.to(self.embeds.dtype)], dim=1)
        return self._forward(new=1, inputs_embeds=self.embeds, attention_mask=self.mask, position_ids=self.positions)

    def select(self, index: Tensor) -> None:
        """Keep (reorder, repeat) the batch rows at ``index``."""
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        if self.use_cache:
            self.cache = _select_cache(self.cache, index)
        else:
            self.embeds = self.embeds.index_select(0, index)


def prompt_inputs(model: Any, prefix: Tensor | None, prompts: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Left-padded ``[b, L, D]`` input embeddings (prefix, then the prompt's token embeddings) and ``[b, L]`` mask."""
    embed = model.get_input_embeddings()
    device, dtype = embed.weight.device, embed.weight.dtype
    k = 0 if prefix is None else int(prefix.shape[1])
    lengths = [k + len(p) for p in prompts]
    width, rows = max(lengths), len(prompts)
    embeds = torch.zeros(rows, width, embed.embedding_dim, device=device, dtype=dtype)
    mask = torch.zeros(rows, width, dtype=torch.long, device=device)
    for i, (p, n) in enumerate(zip(prompts, lengths)):
        start = width - n
        if prefix is not None:
            embeds[i, start : start + k] = prefix[i].to(device=device, dtype=dtype)
        if p:
            embeds[i, start + k :] = embed(torch.tensor(p, device=device))
        mask[i, start:] = 1
    return embeds, mask


# -- token choice ---------------------------------------------------------------------------------------------------


def filter_logits(logits: Tensor, *, top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0) -> Tensor:
    """``[b, V]`` logits / temperature with every token outside the top-k and outside the top-p nucleus set to
    -inf (at least the most probable token is kept).

    The nucleus is the smallest set of the most probable tokens whose probability reaches ``top_p`` (a token is
    kept when the tokens more probable than it sum to less than ``top_p``)."""
    x = logits / temperature
    if top_k and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(x, dim=-1, descending=True)
        probs = ordered.softmax(-1)
        before = probs.cumsum(-1) - probs
        drop = before >= top_p
        drop[:, 0] = False
        x = x.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return x


def _draw(logits: Tensor, uniforms: Tensor) -> Tensor:
    """One token per row by inverse CDF: the first token whose cumulative probability reaches ``u`` (tokens of
    probability 0 are never drawn)."""
    probs = logits.softmax(-1)
    cdf = probs.cumsum(-1)
    target = uniforms.to(cdf.dtype).clamp(min=1e-12)[:, None] * cdf[:, -1:]
    return (cdf < target).sum(-1).clamp(max=probs.shape[-1] - 1)


def row_uniforms(seed: int, rows: Sequence[int], steps: int) -> Tensor:
    """``[len(rows), steps]`` uniforms in [0, 1): row r's from a generator seeded by (seed, r) alone."""
    out = torch.empty(len(rows), steps)
    for i, r in enumerate(rows):
        g = torch.Generator().manual_seed((int(seed) * 0x9E3779B1 + int(r)) % (2**63))
        out[i] = torch.rand(steps, generator=g)
    return out


# -- stop strings -----------------------------------------------------------------------------------------------


def _hits(tokenizer: Any, rows: list[list[int]], stop: tuple[str, ...]) -> list[bool]:
    texts = tokenizer.decode_batch(rows)
    return [any(s in t for s in stop) for t in texts]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string (whole when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


# -- the loops ----------------------------------------------------------------------------------------------------


def _greedy_or_sample(model: Any, prefix: Tensor | None, prompts: list[list[int]], rows: list[int], s: Decoding,
                      eos_id: int, pad_id: int, tokenizer: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Greedy or sampled ids ``[b, max_new_tokens]`` (pad after a row's end), generated lengths ``[b]``, summed
    log-probabilities ``[b]`` and whether each row ended ``[b]``."""
    embeds, mask = prompt_inputs(model, prefix, prompts)
    runner = Runner(model, embeds, mask, s.use_cache)
    b, device = len(prompts), embeds.device
    out = torch.full((b, s.max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.zeros(b, dtype=torch.long, device=device)
    scores = torch.zeros(b, device=device)
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    uniforms = row_uniforms(s.seed, rows, s.max_new_tokens).to(device) if s.method == "sample" else None
    alive = torch.arange(b, device=device)
    logits = runner.start()
    for t in range(s.max_new_tokens):
        if s.method == "greedy":
            token = logits.argmax(-1)
        else:
            assert uniforms is not None
            token = _draw(filter_logits(logits, top_k=s.top_k, top_p=s.top_p, temperature=s.temperature),
                          uniforms[alive, t])
        scores[alive] += logits.log_softmax(-1).gather(1, token[:, None])[:, 0]
        out[alive, t] = token
        lengths[alive] = t + 1
        done = token == eos_id
        if s.stop:
            hit = _hits(tokenizer, out[alive, : t + 1].tolist(), s.stop)
            done |= torch.tensor(hit, dtype=torch.bool, device=device)
        finished[alive[done]] = True
        if t == s.max_new_tokens - 1 or bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero()[:, 0]
            alive, token = alive[keep], token[keep]
            runner.select(keep)
        logits = runner.step(token)
    return out, lengths, scores, finished


def _beam(model: Any, prefix: Tensor | None, prompts: list[list[int]], s: Decoding, eos_id: int, pad_id: int,
          tokenizer: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The best hypothesis of each row: ids ``[b, max_new_tokens]``, generated lengths, normalised scores and
    whether it ended (end token or stop string) rather than reached ``max_new_tokens``. The search's bookkeeping
    is :class:`~cl_lm.beams.Beams`; this runs the model (one prefill per row, then the cache of each kept beam)."""
    embeds, mask = prompt_inputs(model, prefix, prompts)
    runner = Runner(model, embeds, mask, s.use_cache)
    b, w, device = len(prompts), s.beam_size, embeds.device
    beams = Beams(b, w, s.max_new_tokens, eos_id=eos_id, pad_id=pad_id, length_penalty=s.length_penalty,
                  device=device)

    def stops(cand: Tensor) -> Tensor:  # [a, 2w, t] candidate ids -> [a, 2w] whether their text has a stop string
        a, k, t = cand.shape
        found = _hits(tokenizer, cand.reshape(a * k, t).tolist(), s.stop)
        return torch.tensor(found, dtype=torch.bool, device=device).view(a, k)

    logits = runner.start()  # one prefill per row; its cache is then repeated for the beams
    runner.select(torch.arange(b, device=device).repeat_interleave(w))
    logits = logits.repeat_interleave(w, dim=0)
    while True:
        step = beams.advance(logits.log_softmax(-1).view(len(logits) // w, w, -1), stops if s.stop else None)
        if beams.done:
            break
        runner.select((step.kept[:, None] * w + step.parent).view(-1))  # batch rows of the kept beams
        logits = runner.step(step.token.reshape(-1))
    return beams.best()


@torch.no_grad()
def generate(model: Any, *, eos_id: int, pad_id: int, prefix: Tensor | None = None,
             input_ids: Sequence[Sequence[int]] | Tensor | None = None, settings: Decoding | None = None,
             tokenizer: Any = None) -> Generated:
    """Decode B rows (see the module docstring for the methods).

    Args:
        model: a ``transformers`` causal LM (``GPT2LMHeadModel``); run in eval mode here (its mode is restored).
        eos_id: the end-of-text token: a row that emits it has ended.
        pad_id: what ``sequences`` holds after a row's end.
        prefix: ``[B, K, D]`` input embeddings each row starts with (D = the LM's width), or None.
        input_ids: B prompts of token ids that follow the prefix (lists of any lengths, or a ``[B, T]`` tensor),
            or None. A row needs a prefix or at least one prompt token.
        settings: the :class:`Decoding` (default: greedy, 32 new tokens).
        tokenizer: an :class:`~cl_lm.tokenizer.LMTokenizer` (``decode_batch``): needed for stop strings and texts.

    Returns:
        :class:`Generated`.

    Raises:
        ValueError: a prefix that is not ``[B, K, D]`` with the LM's D, non-finite or empty; prompts whose count
            differs from the prefix rows or with ids outside the vocabulary; a row with nothing to start from;
            prefix + prompt + ``max_new_tokens`` past the LM's context; stop strings without a tokenizer.
    """
    s = settings or Decoding()
    if s.stop and tokenizer is None:
        raise ValueError("stop strings need the tokenizer (to read the text the tokens spell)")
    rows, prompts = _check(model, prefix, input_ids, s)
    was_training = model.training
    model.eval()
    try:
        chunk = max(1, s.batch_size // (s.beam_size if s.method == "beam" else 1))
        outs, lengths, scores, ended = [], [], [], []
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            pre = prefix[start:stop] if prefix is not None else None
            if s.method == "beam":
                part = _beam(model, pre, prompts[start:stop], s, eos_id, pad_id, tokenizer)
            else:
                part = _greedy_or_sample(model, pre, prompts[start:stop], list(range(start, stop)), s, eos_id, pad_id,
                                         tokenizer)
            for bucket, value in zip((outs, lengths, scores, ended), part):
                bucket.append(value.cpu())
    finally:
        model.train(was_training)
    out, length, end = torch.cat(outs), torch.cat(lengths), torch.cat(ended)
    sequences = out[:, : int(length.max())].clone()
    sequences[torch.arange(sequences.shape[1])[None, :] >= length[:, None]] = pad_id
    ids = sequences.tolist()
    tokens = [row[: n - 1] if e and row[n - 1] == eos_id else row[:n]
              for row, n, e in zip(ids, length.tolist(), end.tolist())]
    texts = [cut_at_stop(t, s.stop) for t in tokenizer.decode_batch(tokens)] if tokenizer is not None else \
        ["" for _ in tokens]
    return Generated(sequences=sequences, tokens=tokens, texts=texts, scores=torch.cat(scores).float(),
                     finished=[bool(e) for e in end.tolist()])
