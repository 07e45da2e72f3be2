"""``lm.next-token``: the causal language-model loss of the spec's ``lm.gpt2`` decoder, as an objective.

GPT-2's pretraining objective (Radford et al., 2019): L = -1/N sum_t log p(x_t | x_<t) over the N predicted
tokens of the batch's texts. The objective reads no encoder: its ``input_roles`` are the batch role that holds
the texts, which it turns into rows of token ids itself in :meth:`NextToken.prepare` (the data thread), so a spec
with only a ``[decoder]`` and this objective trains an LM with the core's trainer, checkpoints, resume, precision
and evaluators.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cl_core.api import Batch, EncodedBatch, LossOutput, Objective, spec_problem

from .model import GPT2Decoder
from .params import NextTokenParams


class NextToken(Objective):
    """See the module docstring. Parts: ``ppl`` (exp of the value) and ``tokens`` (targets in the batch)."""

    def __init__(self, decoder: GPT2Decoder, params: NextTokenParams) -> None:
        super().__init__()
        self.refer("decoder", decoder)  # trained and saved as decoder.*
        self.roles = ()
        self.input_roles = (params.role,)
        self.role, self.pack = params.role, params.pack
        self.weight = params.weight
        self.name = params.name

    def prepare(self, batch: Batch) -> dict[str, Tensor]:
        """``ids`` and ``labels`` ``[R, L]`` of the batch's texts (:meth:`GPT2Decoder.lm_rows`; no randomness)."""
        return self.decoder.lm_rows(batch.inputs[self.role], pack=self.pack)

    def _compute(self, batch: EncodedBatch) -> LossOutput:
        ids, labels = batch.own["ids"], batch.own["labels"]
        value = self.decoder.lm_loss(ids, labels)
        tokens = (labels[:, 1:] != -100).sum()
        return LossOutput(value, {"ppl": value.detach().exp(), "tokens": tokens.detach().to(torch.float32)})

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "roles": [], "texts": self.role, "pack": self.pack}


def build_next_token(params: NextTokenParams, ctx: Any) -> NextToken:
    """The objective of the spec's ``[decoder]``, which must be ``lm.gpt2``.

    Raises:
        SpecError: no ``[decoder]``, or one that is not ``lm.gpt2``.
    """
    decoder = ctx.decoder
    if not isinstance(decoder, GPT2Decoder):
        found = "there is none" if decoder is None else f"it is {ctx.spec.decoder.type!r}" if ctx.spec else \
            f"it is a {type(decoder).__name__}"
        raise spec_problem(ctx, f"{ctx.path}.type", f"lm.next-token trains the spec's [decoder] of type \"lm.gpt2\", "
                                                    f"and {found}", "add [decoder] type = \"lm.gpt2\"")
    return NextToken(decoder, params)
