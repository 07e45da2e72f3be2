"""The Scorer interface: compatibility S(q, k) of every query with every candidate.

Energy is ``F = -S`` and ``softmax(beta * S)`` over candidates is the Gibbs distribution ``P(k | q)``
(LeCun et al., "A Tutorial on Energy-Based Learning", 2006).
"""

from __future__ import annotations

import abc
import itertools

import torch
from torch import Tensor, nn

from .checks import check_finite, check_matrix


class Scorer(nn.Module, abc.ABC):
    """Scores every (query, candidate) pair: ``[Q, N] x [C, N] -> [Q, C]`` (higher = more compatible).

    Implement :meth:`_score`. :meth:`score` checks shapes and finiteness.
    """

    @abc.abstractmethod
    def _score(self, queries: Tensor, candidates: Tensor) -> Tensor: ...

    def score(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """Scores ``[Q, C]`` of queries ``[Q, N]`` against candidates ``[C, N]``.

        Inputs on another device than the scorer's parameters are moved to it (e.g. the CPU embeddings of
        ``Pipeline.embed`` scored by a pipeline that trains on a GPU); a scorer without parameters scores
        on the queries' device. The scores are on that device.

        Raises:
            ValueError: inputs are not 2-D, are empty, or their widths differ.
        """
        check_matrix(queries, "queries")
        check_matrix(candidates, "candidates")
        if queries.shape[1] != candidates.shape[1]:
            raise ValueError(
                f"queries and candidates must have the same embedding width; got queries "
                f"{list(queries.shape)} and candidates {list(candidates.shape)}"
            )
        device = next(itertools.chain(self.parameters(), self.buffers()), queries).device
        out = self._score(queries.to(device), candidates.to(device))
        check_finite(out, "scores", type(self).__qualname__)
        return out

    def forward(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return self.score(queries, candidates)

    def energy(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """Energy ``F = -S``, shape ``[Q, C]``: low energy means compatible."""
        return -self.score(queries, candidates)

    def log_prob(self, queries: Tensor, candidates: Tensor, beta: float = 1.0) -> Tensor:
        """Log of the Gibbs distribution ``P(k | q) = softmax(-beta F(q, k))`` over candidates, ``[Q, C]``."""
        if beta <= 0:
            raise ValueError(f"beta (inverse temperature) must be > 0, got {beta}")
        return torch.log_softmax(-beta * self.energy(queries, candidates).float(), dim=1)

    def argmin(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """Inference: index ``[Q]`` of the lowest-energy candidate for each query."""
        return self.energy(queries, candidates).argmin(dim=1)

    def post_step(self) -> None:
        """Called by the trainer after each optimizer step (the cosine scorer clamps its logit scale)."""

    def logged_scalars(self) -> dict[str, float]:
        """Scalars the training loop logs with the loss, by name (``{"logit_scale": 14.3}``). Default: none."""
        return {}
