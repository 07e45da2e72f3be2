"""The built-in objectives: ``core.contrastive`` (a catalogue loss over two roles) and ``core.caption``
(teacher-forced caption cross-entropy of the spec's decoder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..components import CandidateSet, Decoder, EncodedBatch, Loss, Objective, Scorer
from ..components.objective import SECOND_VIEW
from ..errors import BuildError
from ..spec.model import LossRef, ScorerRef
from ..types import Batch, LossOutput, Targets
from .composition_params import CaptionObjectiveParams, ContrastiveObjectiveParams


class ContrastiveObjective(Objective):
    """``core.contrastive``: ``loss.compute(embeddings of the query role, of the candidate role, scorer,
    targets)``, i.e. today's contrastive step, unchanged (tiled, distributed and grad-cached losses work as
    they did).

    Targets: row ``i`` of both roles is a positive pair (``positive = arange(B)``, same-label columns are
    further positives for label-aware losses); when the candidate role is a fixed
    :class:`~cl_core.components.CandidateSet`, the positive column of row ``i`` is ``labels[i]``. With the
    same role on both sides, the candidates are a second forward pass of the same items (two dropout
    masks: SimCSE, Gao et al., 2021).

    Attributes:
        loss, scorer: the modules it uses (its own, or the pipeline's top-level ones).
        loss_ref, scorer_ref: the spec tables they were built from (their registered names and params).
    """

    embeddings_only = True

    def __init__(self, roles: tuple[str, str], loss: Loss, scorer: Scorer, *, loss_ref: LossRef,
                 scorer_ref: ScorerRef, own_loss: bool, own_scorer: bool, weight: float = 1.0,
                 name: str | None = None) -> None:
        super().__init__()
        self.roles = tuple(dict.fromkeys(roles))
        self.query_role, self.candidate_role = roles
        self.pair = (roles[0], roles[1])
        self.twice = roles[0] == roles[1]
        self.second_view_roles = (roles[0],) if self.twice else ()
        self.weight = weight
        self.name = name or f"{roles[0]}-{roles[1]}"
        self.loss_ref, self.scorer_ref = loss_ref, scorer_ref
        if own_loss:
            self.loss = loss
        else:
            self.refer("loss", loss)
        if own_scorer:
            self.scorer = scorer
        else:
            self.refer("scorer", scorer)

    def _compute(self, batch: EncodedBatch) -> LossOutput:
        queries = batch.embedding(self.query_role)
        if self.twice:
            candidates = batch.embedding(self.query_role + SECOND_VIEW)
        else:
            candidates = batch.embedding(self.candidate_role)
        return self.loss.compute(queries, candidates, self.scorer, self.targets(queries, batch))

    def targets(self, queries: Tensor, batch: EncodedBatch) -> Targets:
        """The positives of each query row (see the class docstring).

        Raises:
            ValueError: a candidate set without batch labels.
        """
        if self.candidate_role in batch.fixed:
            if batch.labels is None:
                raise ValueError("a candidate set needs batch labels: the index of each query's positive candidate")
            return Targets(positive=batch.labels)
        return Targets(positive=torch.arange(queries.shape[0], device=queries.device), labels=batch.labels)

    def pair_scorer(self) -> Scorer:
        return self.scorer

    def logged_scalars(self) -> dict[str, float]:
        return self.scorer.logged_scalars()


class CaptionObjective(Objective):
    """``core.caption``: the decoder's caption loss on the output of the conditioning role, with targets the
    decoder prepares from the captions of the target role (see :class:`~cl_core.components.Decoder`)."""

    def __init__(self, decoder: Decoder, *, condition: str, target: str, weight: float = 1.0,
                 name: str | None = None) -> None:
        super().__init__()
        self.refer("decoder", decoder)
        self.condition, self.target = condition, target
        self.from_states = decoder.reads_target_states
        if self.from_states:  # the target role is encoded (its token states continue into the decoder)
            self.roles = tuple(dict.fromkeys((condition, target)))
            self.token_roles = tuple(dict.fromkeys(((condition,) if decoder.reads_tokens else ()) + (target,)))
            self.input_roles = ()
        else:
            self.roles = (condition,)
            self.token_roles = (condition,) if decoder.reads_tokens else ()
            self.input_roles = (target,)
        self.weight = weight
        self.name = name or "caption"

    def prepare(self, batch: Batch) -> dict[str, Tensor]:
        return {} if self.from_states else self.decoder.prepare(batch.inputs[self.target])

    def _compute(self, batch: EncodedBatch) -> LossOutput:
        text = batch.outputs[self.target] if self.from_states else None
        return self.decoder.caption_loss(batch.outputs[self.condition], batch.own, text)


def _roles(params_roles: Sequence[str] | None, ctx: Any) -> tuple[str, str]:
    roles = list(ctx.encoders)
    if params_roles is not None:
        return params_roles[0], params_roles[1]
    if not roles:
        raise BuildError(f"{ctx.path}.roles: the spec has no [encoders.*] tables to contrast")
    return roles[0], roles[1] if len(roles) > 1 else roles[0]


def build_contrastive(params: ContrastiveObjectiveParams, ctx: Any) -> ContrastiveObjective:
    """The objective with its own loss and scorer tables, or the spec's top-level ones.

    Raises:
        SpecError: a role that is not an encoder role; no loss table here nor at the top level.
    """
    from ..build import build_nested, spec_problem
    from .params import CosineParams

    roles = _roles(params.roles, ctx)
    for i, role in enumerate(roles):
        if role not in ctx.encoders:
            raise spec_problem(ctx, f"{ctx.path}.roles[{i}]",
                               f"no encoder role {role!r}; encoder roles: {', '.join(ctx.encoders) or 'none'}")
    if isinstance(ctx.encoders[roles[0]], CandidateSet):
        raise spec_problem(ctx, f"{ctx.path}.roles[0]", f"role {roles[0]!r} is a fixed candidate set: it can be "
                                                        "the candidate side (second role) only")
    if params.loss is not None:
        loss_ref, loss, own_loss = params.loss, build_nested(ctx, params.loss, f"{ctx.path}.loss", Loss), True
    elif ctx.loss is not None:
        loss_ref, loss, own_loss = ctx.spec.loss, ctx.loss, False
    else:
        raise spec_problem(ctx, f"{ctx.path}.loss", "missing: give this objective a loss table "
                                                    "(loss = { type = \"core.clip\" }) or the spec a [loss]")
    if params.scorer is not None:
        scorer_ref, scorer, own_scorer = params.scorer, build_nested(ctx, params.scorer, f"{ctx.path}.scorer",
                                                                       Scorer), True
    elif ctx.scorer is not None:
        scorer_ref, scorer, own_scorer = ctx.spec.scorer, ctx.scorer, False
    else:
        scorer_ref = ScorerRef(type="core.cosine", params=CosineParams())
        scorer, own_scorer = build_nested(ctx, scorer_ref, f"{ctx.path}.scorer", Scorer), True
    return ContrastiveObjective(roles, loss, scorer, loss_ref=loss_ref, scorer_ref=scorer_ref, own_loss=own_loss,
                                own_scorer=own_scorer, weight=params.weight, name=params.name)


def build_caption(params: CaptionObjectiveParams, ctx: Any) -> CaptionObjective:
    """The caption objective of the spec's ``[decoder]``.

    Raises:
        SpecError: no ``[decoder]``, a decoder that does not train, or a condition role with no encoder (or
            one without the token states the decoder reads); for a decoder that ``reads_target_states``, a target
            role other than its own or one whose encoder gives no token states.
    """
    from ..build import spec_problem

    decoder = ctx.decoder
    if decoder is None:
        raise spec_problem(ctx, f"{ctx.path}.type", "a caption objective trains the spec's [decoder], and there is none")
    if not decoder.trainable:
        raise spec_problem(ctx, "decoder.type", f"{ctx.spec.decoder.type!r} does not train (it has no caption loss); "
                                                f"remove {ctx.path} or choose a trainable decoder")
    if params.condition not in ctx.encoders:
        raise spec_problem(ctx, f"{ctx.path}.condition", f"no encoder role {params.condition!r}; encoder roles: "
                                                         f"{', '.join(ctx.encoders) or 'none'}")
    encoder = ctx.encoders[params.condition]
    if decoder.reads_tokens and not encoder.provides_tokens:
        raise spec_problem(ctx, f"{ctx.path}.condition",
                           f"the decoder cross-attends to token states, and the encoder of role "
                           f"{params.condition!r} ({ctx.spec.encoders[params.condition].type}) gives none")
    if decoder.reads_target_states:
        if params.target != decoder.target_role:
            raise spec_problem(ctx, f"{ctx.path}.target", f"{params.target!r}, and the decoder continues the token "
                                                          f"states of role {decoder.target_role!r}",
                               f"target = \"{decoder.target_role}\"")
        if params.target not in ctx.encoders or not ctx.encoders[params.target].provides_tokens:
            raise spec_problem(ctx, f"{ctx.path}.target", f"the decoder continues the token states of role "
                                                          f"{params.target!r}, and no encoder of that role gives them")
    return CaptionObjective(decoder, condition=params.condition, target=params.target, weight=params.weight,
                            name=params.name)
