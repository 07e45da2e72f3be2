"""The Objective interface: one weighted training term over named roles of a batch.

A pipeline encodes each role a batch carries once, then sums the weighted objectives whose roles the
batch has (ImageBind mixes (image, audio) and (image, line-art) batches: each batch trains the objective
of its pair). The contrastive objective wraps :meth:`~cl_core.components.Loss.compute`; the caption
objective calls a trainable :class:`~cl_core.components.Decoder`; plugins add their own (BERT's masked-LM
beside next-sentence prediction). As open_clip's CoCa loss returns named terms that its loop sums, every
objective returns a :class:`~cl_core.types.LossOutput` whose parts are logged by name.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import torch
from attrs import field, frozen
from torch import Tensor, nn

from ..types import Batch, EncoderOutput, LossOutput
from .scorer import Scorer


#: The key of a role's second forward pass in :attr:`EncodedBatch.outputs` (``"text#2"``).
SECOND_VIEW = "#2"


@frozen
class PreparedBatch:
    """A batch after the CPU work of the data path, ready to be moved to the device.

    Attributes:
        inputs: role -> the encoder's prepared tensors, for each role an active objective encodes.
        objectives: objective index -> what that objective prepared itself (caption targets); only active
            objectives appear.
        labels: ``[B]`` int64 or None.
        rows: B, the number of examples.
    """

    inputs: Mapping[str, Mapping[str, Tensor]]
    objectives: Mapping[int, Mapping[str, Tensor]]
    labels: Tensor | None
    rows: int


@frozen
class EncodedBatch:
    """What an objective computes its loss from, all on the training device.

    Attributes:
        outputs: role -> :class:`~cl_core.types.EncoderOutput` of the roles this batch encoded.
        own: what this objective's :meth:`Objective.prepare` made of the batch.
        labels: ``[B]`` int64 or None.
        fixed: roles whose encoder is a fixed candidate set: their output holds all C candidates ``[C, N]``,
            not one row per example.
    """

    outputs: Mapping[str, EncoderOutput]
    own: Mapping[str, Tensor] = field(factory=dict)
    labels: Tensor | None = None
    fixed: frozenset[str] = frozenset()

    def embedding(self, role: str) -> Tensor:
        """``[B, N]`` (or ``[C, N]`` for a fixed candidate set) embeddings of ``role``."""
        return self.outputs[role].embedding

    def tokens(self, role: str) -> tuple[Tensor, Tensor | None]:
        """``([B, T, D] token states, [B, T] bool mask or None)`` of ``role``.

        Raises:
            ValueError: the role was encoded without token states.
        """
        out = self.outputs[role]
        if out.tokens is None:
            raise ValueError(f"role {role!r} was encoded without token states")
        return out.tokens, out.mask


class Objective(nn.Module, abc.ABC):
    """A weighted training term. Implement :meth:`_compute`; the pipeline calls :meth:`compute`.

    Attributes (set by the factory; the pipeline reads them to plan each batch):
        name: how its value and parts are logged (``image-text``, ``caption``, ``mlm``).
        weight: its factor in the summed loss.
        roles: encoder roles whose outputs it reads; a batch trains it only when it carries all of them
            (a fixed candidate set is always there).
        token_roles: those of ``roles`` whose token states it reads (their encoders must declare
            ``provides_tokens``).
        input_roles: batch roles whose raw items it prepares itself in :meth:`prepare` (the captions a
            caption objective turns into targets); no encoder needs to exist for them.
        second_view_roles: those of ``roles`` it also needs a second forward pass of (another dropout
            mask over the same items, as SimCSE); found in ``EncodedBatch.outputs`` under ``role + "#2"``.
        embeddings_only: its value depends on the batch only through the ``[B, N]`` embeddings of
            ``roles`` (so gradient caching may split the encoders' work into chunks).
        pair: ``(query role, candidate role)`` of an objective that scores one role against another (the
            contrastive objective), else None; evaluators and plots of a pair use it.
    """

    name: str = "objective"
    weight: float = 1.0
    roles: tuple[str, ...] = ()
    token_roles: tuple[str, ...] = ()
    input_roles: tuple[str, ...] = ()
    second_view_roles: tuple[str, ...] = ()
    embeddings_only: bool = False
    pair: tuple[str, str] | None = None

    def refer(self, name: str, module: nn.Module) -> None:
        """Keep ``module`` as the attribute ``name`` without registering it as a submodule: a component the
        pipeline owns (the top-level ``[scorer]``, the ``[decoder]``, an encoder whose head this objective
        trains) is used here, but trained, moved and saved once, under the pipeline's own key."""
        vars(self)[name] = module

    def prepare(self, batch: Batch) -> dict[str, Tensor]:
        """CPU work of the data path for this objective's own inputs (runs in a background thread: must not
        draw from the global RNG). Default: nothing."""
        return {}

    @abc.abstractmethod
    def _compute(self, batch: EncodedBatch) -> LossOutput: ...

    def compute(self, batch: EncodedBatch) -> LossOutput:
        """The objective's (unweighted) value and parts on an encoded batch.

        Raises:
            ValueError: the value is not a scalar.
            FloatingPointError: the value is not finite.
        """
        out = self._compute(batch)
        if out.value.dim() != 0:
            raise ValueError(f"objective {self.name!r} must return a scalar, got shape {list(out.value.shape)}")
        if not torch.isfinite(out.value.detach()).all():
            raise FloatingPointError(f"objective {self.name!r} gave a non-finite value ({float(out.value)})")
        return out

    def pair_scorer(self) -> Scorer | None:
        """The scorer that scores :attr:`pair` (None when the objective scores no pair)."""
        return None

    def logged_scalars(self) -> dict[str, float]:
        """Scalars to log with the losses (e.g. a learnable logit scale), by name. Default: none."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What the model card and logs say about this objective."""
        return {"name": self.name, "weight": self.weight, "roles": list(self.roles)}
