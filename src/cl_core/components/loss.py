"""The Loss interface: lower the energy of positives, raise it for negatives."""

from __future__ import annotations

import abc

from torch import Tensor, nn

from ..types import LossOutput, Targets
from .checks import check_finite
from .scorer import Scorer


class Loss(nn.Module, abc.ABC):
    """Reduces scores ``[Q, C]`` and :class:`~cl_core.types.Targets` to a scalar plus named parts.

    Implement :meth:`_loss`. Losses that never need the full score matrix (tiled, distributed)
    override :meth:`compute`, which receives the embeddings and the scorer.
    """

    @abc.abstractmethod
    def _loss(self, scores: Tensor, targets: Targets) -> LossOutput: ...

    def forward(self, scores: Tensor, targets: Targets) -> LossOutput:
        """Loss of a score matrix. Raises ValueError on shape mismatches, FloatingPointError on NaN."""
        if scores.dim() != 2 or scores.shape[0] == 0:
            raise ValueError(f"scores must have shape [queries, candidates] with queries > 0, got {list(scores.shape)}")
        if targets.positive.shape != (scores.shape[0],):
            raise ValueError(
                f"targets.positive must have shape [{scores.shape[0]}] (one per query), got "
                f"{list(targets.positive.shape)}"
            )
        if targets.labels is not None and targets.labels.shape != (scores.shape[0],):
            raise ValueError(
                f"targets.labels must have shape [{scores.shape[0]}] (one per query), got "
                f"{list(targets.labels.shape)}"
            )
        out = self._loss(scores, targets)
        if out.value.dim() != 0:
            raise ValueError(f"{type(self).__qualname__} must return a scalar, got shape {list(out.value.shape)}")
        check_finite(out.value, "loss", type(self).__qualname__)
        return out

    def compute(self, queries: Tensor, candidates: Tensor, scorer: Scorer, targets: Targets) -> LossOutput:
        """Loss from embeddings ``[Q, N]``, ``[C, N]`` and a scorer (default: score, then :meth:`forward`)."""
        return self(scorer.score(queries, candidates), targets)
