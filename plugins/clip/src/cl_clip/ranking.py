"""Ranks of correct candidates, the quantity behind top-k accuracy and hit@K / recall@K.

The rank of a query is ``1 + (number of incorrect candidates scoring >= the best correct one)``.
Ties therefore count against the model: a collapsed encoder that gives every candidate the same
score gets the worst rank, not the best (``torch.topk`` would break ties by index and could report a
perfect score). "Any correct item in the top K" (CLIP's and CLIP_benchmark's recall@K, which is hit@K,
not the IR recall #retrieved-correct / #correct) is then ``rank <= K``.
"""

from __future__ import annotations

from torch import Tensor


def ranks(scores: Tensor, correct: Tensor) -> Tensor:
    """``[Q]`` int64 rank (1 = best) of the best-scoring correct candidate of each query.

    Args:
        scores: ``[Q, C]`` similarities, higher = better.
        correct: ``[Q, C]`` bool, True where a candidate is a right answer for the query.

    Raises:
        ValueError: shapes differ, or a query has no correct candidate.
    """
    if scores.dim() != 2 or scores.shape != correct.shape:
        raise ValueError(
            f"scores and correct must both have shape [Q, C], got {list(scores.shape)} and {list(correct.shape)}"
        )
    has = correct.any(dim=1)
    if not bool(has.all()):
        bad = int((~has).nonzero()[0, 0])
        raise ValueError(f"query {bad} has no correct candidate; every query needs at least one")
    scores = scores.float()
    best = scores.masked_fill(~correct, float("-inf")).amax(dim=1, keepdim=True)
    beaten = (scores >= best) & ~correct
    return beaten.sum(dim=1) + 1


def hit_rate(rank: Tensor, k: int) -> float:
    """Fraction of queries whose rank is at most ``k`` (top-k accuracy / hit@K)."""
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    return float((rank <= k).float().mean())
