"""Base of the losses that reduce a :class:`~cl_core._builtin.problems.Problem` (pairs with positives,
negatives and excluded entries); both the score-matrix and the embeddings (possibly distributed) paths
end in :meth:`ProblemLoss._reduce`."""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from ..components import Loss
from ..types import LossOutput, Targets
from .problems import Problem, check_targets, check_views, from_embeddings, from_scores


class ProblemLoss(Loss):
    """A loss defined on a :class:`Problem`; subclasses implement :meth:`_reduce`.

    Args:
        views: "pair", "single" or "joint" (see :mod:`~cl_core._builtin.problems`).
    """

    def __init__(self, views: str = "pair"):
        super().__init__()
        self.views = check_views(views)

    @abc.abstractmethod
    def _reduce(self, problem: Problem, targets: Targets) -> LossOutput:
        """The loss of a problem (this rank's rows; means over every rank via ``reduce_rows``); ``targets``
        are the caller's (for losses that take more than positives and labels)."""

    def _loss(self, scores: Tensor, targets: Targets) -> LossOutput:
        check_targets(targets, scores.shape[0], scores.shape[1])
        return self._reduce(from_scores(scores, targets, self.views), targets)

    def compute(self, queries: Tensor, candidates: Tensor, scorer, targets: Targets) -> LossOutput:
        """Loss from embeddings ``[Q, N]``, ``[C, N]`` and a scorer, scored as ``views`` says.

        Raises:
            ValueError: mismatched shapes or targets; FloatingPointError: a non-finite loss.
        """
        out = self._reduce(from_embeddings(queries, candidates, scorer, targets, self.views), targets)
        if not torch.isfinite(out.value):
            raise FloatingPointError(f"loss from {type(self).__qualname__} is not finite")
        return out
