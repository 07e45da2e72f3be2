"""``bert-nsp.mlm``: BERT's masked-LM loss as an objective beside next-sentence prediction.

BERT pre-training (Devlin et al., 2019) sums two losses over one forward pass of the masked input: NSP from
the pooled ``[CLS]`` state and the masked-LM cross-entropy from the token states. Here NSP is the pipeline's
contrastive objective (pair embedding against the two NSP classes) and this objective reads the token states
``[B, T, H]`` the ``bert-nsp.bert`` encoder returns from the same pass, with the labels of the tokens its
``prepare`` masked, and computes :meth:`~cl_bert_nsp.bert.BertPairEncoder.mlm_loss` (the encoder owns the
masked-LM head, tied to its word embeddings; the objective refers to it without owning it).
"""

from __future__ import annotations

from typing import Any

from cl_core.api import BuildError, EncodedBatch, LossOutput, Objective

from .bert import BertPairEncoder
from .params import MaskedLMParams


class MaskedLM(Objective):
    """See the module docstring. In eval mode the encoder sees clean ids and gives no labels: the value is 0."""

    def __init__(self, encoder: BertPairEncoder, params: MaskedLMParams) -> None:
        super().__init__()
        self.refer("encoder", encoder)
        self.roles = (params.role,)
        self.token_roles = (params.role,)
        self.weight = params.weight
        self.name = params.name
        self.role = params.role

    def _compute(self, batch: EncodedBatch) -> LossOutput:
        tokens, _ = batch.tokens(self.role)
        labels = batch.outputs[self.role].extras.get("mlm_labels")
        if labels is None:  # eval mode: nothing was masked
            return LossOutput(tokens.sum() * 0.0)
        return LossOutput(self.encoder.mlm_loss(tokens, labels))


def build_mlm(params: MaskedLMParams, ctx: Any) -> MaskedLM:
    """The masked-LM objective of the ``bert-nsp.bert`` encoder of ``params.role``.

    Raises:
        BuildError: no such role, an encoder that is not ``bert-nsp.bert``, or one with ``mlm_probability = 0``.
    """
    encoder = ctx.encoders.get(params.role)
    if not isinstance(encoder, BertPairEncoder):
        raise BuildError(f"{ctx.path}.role: bert-nsp.mlm needs a bert-nsp.bert encoder role; {params.role!r} is "
                         f"{'not an encoder role' if encoder is None else type(encoder).__name__}")
    if encoder.mlm_probability <= 0:
        raise BuildError(f"{ctx.path}: encoders.{params.role}.mlm_probability is 0, so no token is masked; set it "
                         "(BERT: 0.15)")
    return MaskedLM(encoder, params)
