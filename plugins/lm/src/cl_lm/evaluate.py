"""``lm.perplexity``: held-out perplexity (and bits per byte) of the spec's ``lm.gpt2`` decoder."""

from __future__ import annotations

import math
from typing import Any

from cl_core.api import DataError, Dataset, EvalContext, Evaluator, PipelineView, spec_problem, warn_evaluation

from .model import GPT2Decoder
from .params import PerplexityParams


class Perplexity(Evaluator):
    """Per split: ``perplexity/<split>`` = exp(NLL per predicted token), ``nll/<split>`` (nats per token),
    ``bits-per-byte/<split>`` (summed NLL in bits over the texts' UTF-8 bytes: comparable across tokenizers) and
    ``tokens/<split>/count`` (see :class:`~cl_lm.params.PerplexityParams` for how texts are scored)."""

    def __init__(self, params: PerplexityParams) -> None:
        self.params = params

    def _splits(self, dataset: Dataset) -> list[str]:
        splits = dataset.splits()
        if self.params.splits is not None:
            missing = [s for s in self.params.splits if s not in splits]
            if missing:
                raise DataError(f"lm.perplexity: no split {', '.join(map(repr, missing))}; the data has "
                                f"{', '.join(splits)}")
            return list(self.params.splits)
        chosen = [name for name, src in splits.items() if name != "train" and self.params.role in src.fields]
        if not chosen:
            warn_evaluation(f"lm.perplexity: no evaluation split has a {self.params.role!r} field; nothing scored")
        return chosen

    def evaluate(self, pipeline: PipelineView, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        decoder = pipeline.decoder
        if not isinstance(decoder, GPT2Decoder):
            raise DataError("lm.perplexity scores an lm.gpt2 [decoder]; this pipeline has none")
        out: dict[str, float] = {}
        for name in self._splits(dataset):
            source = dataset.splits()[name]
            n = len(source) if self.params.max_texts is None else min(len(source), self.params.max_texts)
            if n == 0:
                warn_evaluation(f"lm.perplexity: split {name!r} is empty; skipped")
                continue
            texts = source.get(list(range(n)))[self.params.role]
            bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
            if bad:
                raise DataError(f"lm.perplexity: split {name!r} field {self.params.role!r} holds "
                                f"{type(texts[bad[0]]).__name__}, not text")
            nll, count = decoder.score(texts, batch_size=ctx.batch_size)
            total, tokens = float(nll.sum()), int(count.sum())
            text_bytes = sum(len(t.encode("utf-8")) for t in texts)
            out[f"perplexity/{name}"] = math.exp(total / tokens)
            out[f"nll/{name}"] = total / tokens
            out[f"bits-per-byte/{name}"] = total / math.log(2) / text_bytes
            out[f"tokens/{name}/count"] = float(tokens)
        return out


def build_perplexity(params: PerplexityParams, ctx: Any) -> Perplexity:
    """Factory of ``lm.perplexity``.

    Raises:
        SpecError: the spec has no ``lm.gpt2`` ``[decoder]`` (when built from a spec).
    """
    if ctx.spec is not None and not isinstance(ctx.decoder, GPT2Decoder):
        raise spec_problem(ctx, f"{ctx.path}.type", "lm.perplexity scores the spec's [decoder] of type \"lm.gpt2\", "
                                                    "and there is none")
    return Perplexity(params)
