"""Margin losses on distances ``d = distance_offset - S``: the pair (contrastive) losses and the triplet loss.

Use a distance scorer (``core.neg-l2``: d is the Euclidean distance; ``core.neg-sq-l2``: its square) with
``distance_offset = 0``, or ``core.cosine`` with ``temperature = 1``, ``learn_temperature = false`` and
``distance_offset = 1`` for the cosine distance ``1 - cos``. Margins are in the same units as d.

Positives of an anchor (row): its own pair and, with labels, every same-label candidate; negatives: the
other valid candidates (see :mod:`~cl_core._builtin.problems` for views). Anchors without a positive are
left out of the means; a batch with no positive pair (or no valid triplet) gives an exact 0 with zero
gradients (case 3), never 0/0.

* ``core.contrastive`` (Hadsell, Chopra & LeCun, 2006, "Dimensionality Reduction by Learning an Invariant
  Mapping"): per anchor ``1/2 mean_p d_ap^2 + 1/2 mean_n max(0, m - d_an)^2``.
* ``core.contrastive-hinge`` (the hinge form of pytorch-metric-learning's ``ContrastiveLoss``): per anchor
  ``mean_p max(0, d_ap - m_pos) + mean_n max(0, m_neg - d_an)``, both means over the anchors with a positive.
* ``core.triplet`` (Weinberger & Saul 2009; Schroff, Kalenichenko & Philbin 2015, "FaceNet"; Hermans, Beyer
  & Leibe 2017, "In Defense of the Triplet Loss"): ``max(0, d_ap - d_an + m)`` with batch-all, batch-hard or
  semi-hard mining.

pytorch-metric-learning (PML) equivalents. PML's results depend on its reducer and miner, and its defaults
are not ours (on random batches of 12 its default reducers gave values 1% to 15% away), so each is named here.
All of them take ``distance=LpDistance(normalize_embeddings=False)`` with ``core.neg-l2`` (PML's default
distance normalises the embeddings first: the same only for unit vectors) and are called with the queries as
``embeddings``, the candidates as ``ref_emb`` and labels that make each own pair positive (``arange(B)``, or
the class labels) for "pair" views; "joint" views are the call on ``cat(q, k)`` with labels ``cat(l, l)``:

* ``core.contrastive-hinge`` = ``ContrastiveLoss(pos_margin, neg_margin, reducer=PerAnchorReducer(
  MeanReducer()))`` when every anchor has a positive (always so with "pair" and "joint" views; with "single"
  views we leave anchors without one out, PML counts them as 0). PML's default ``AvgNonZeroReducer``
  averages each term over its non-zero pairs instead.
* ``core.triplet`` with ``mining="all"`` = ``TripletMarginLoss(margin)`` with its defaults (every triplet,
  ``AvgNonZeroReducer``: mean over the triplets with a positive loss).
* ``core.triplet`` with ``mining="hard"`` = ``TripletMarginLoss(margin, reducer=MeanReducer())`` on the
  triplets of ``BatchHardMiner()`` (mean over the anchors with a positive and a negative); with PML's
  default ``AvgNonZeroReducer`` the anchors whose hardest triplet is already satisfied are left out instead.
* ``core.triplet`` with ``mining="semi-hard"`` has no PML form: ``TripletMarginMiner("semihard")`` keeps
  every semi-hard triplet and has no fallback to the farthest negative.
* ``core.contrastive`` (squared, Hadsell) is not a PML loss (sentence-transformers' ``ContrastiveLoss`` is
  that formula over labelled pairs).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import distributed as dist
from ..types import LossOutput
from .params import ContrastiveHingeParams, ContrastiveParams, TripletParams
from .problem_loss import ProblemLoss
from .problems import Problem, check_margin, reduce_rows
from .scale import upcast

MINING = ("all", "hard", "semi-hard")
TRIPLET_BLOCK = 2**22  # elements of one [rows, C, C] block of triplets


def _masked_mean(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Row means of ``values`` over ``mask`` ``[R]`` (0 for empty rows) and the row counts."""
    counts = mask.sum(1)
    total = torch.where(mask, values, torch.zeros_like(values)).sum(1)
    return total / counts.clamp_min(1).to(values.dtype), counts


class _PairLoss(ProblemLoss):
    """Per anchor ``mean_p f_pos(d_ap) + mean_n f_neg(d_an)``, over anchors with a positive."""

    def __init__(self, views: str, distance_offset: float):
        super().__init__(views)
        self.distance_offset = float(distance_offset)

    def _terms(self, d: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _reduce(self, problem: Problem, targets) -> LossOutput:
        d = self.distance_offset - upcast(problem.scores)
        positives, negatives = problem.positives(), problem.negatives()
        pos_values, neg_values = self._terms(d)
        pos_mean, n_pos = _masked_mean(pos_values, positives)
        neg_mean, _ = _masked_mean(neg_values, negatives)
        keep = n_pos > 0
        pos_part = reduce_rows(pos_mean, keep)
        neg_part = reduce_rows(neg_mean, keep)
        return LossOutput(pos_part + neg_part, {"positive": pos_part.detach(), "negative": neg_part.detach()})


class ContrastiveLoss(_PairLoss):
    """Hadsell et al. (2006): ``1/2 d^2`` for positives, ``1/2 max(0, m - d)^2`` for negatives.

    Raises:
        ValueError: margin < 0.
    """

    def __init__(self, margin: float = 1.0, views: str = "pair", distance_offset: float = 0.0):
        super().__init__(views, distance_offset)
        self.margin = check_margin(margin)

    def _terms(self, d):
        return 0.5 * d.pow(2), 0.5 * torch.relu(self.margin - d).pow(2)


class ContrastiveHingeLoss(_PairLoss):
    """Hinge pair loss: ``max(0, d - pos_margin)`` for positives, ``max(0, neg_margin - d)`` for negatives,
    each averaged per anchor, then over the anchors with a positive. PML's ``ContrastiveLoss`` with
    ``reducer=PerAnchorReducer(MeanReducer())`` (not its default ``AvgNonZeroReducer``); see the module
    docstring.

    Raises:
        ValueError: a margin < 0.
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0, views: str = "pair",
                 distance_offset: float = 0.0):
        super().__init__(views, distance_offset)
        self.pos_margin = check_margin(pos_margin, "pos_margin")
        self.neg_margin = check_margin(neg_margin, "neg_margin")

    def _terms(self, d):
        return torch.relu(d - self.pos_margin), torch.relu(self.neg_margin - d)


class TripletLoss(ProblemLoss):
    """``max(0, d(a, p) - d(a, n) + margin)`` with mining over the batch; see the module docstring.

    Mining:
        "all": every (anchor, positive, negative); mean over the active (> 0) triplets (Hermans' BA!=0;
            PML's ``TripletMarginLoss`` with its default ``AvgNonZeroReducer`` and no miner).
        "hard": per anchor, the farthest positive and the closest negative; mean over anchors with both
            (PML: ``BatchHardMiner`` + ``TripletMarginLoss(reducer=MeanReducer())``).
        "semi-hard": per (anchor, positive), the closest negative farther than the positive, else the
            farthest negative (FaceNet; TF-addons' rule); mean over pairs whose anchor has a negative
            (no PML equivalent).

    Raises:
        ValueError: margin < 0 or an unknown mining.
    """

    def __init__(self, margin: float = 0.2, mining: str = "hard", views: str = "pair", distance_offset: float = 0.0):
        super().__init__(views)
        if mining not in MINING:
            raise ValueError(f"mining must be one of {', '.join(map(repr, MINING))}, got {mining!r}")
        self.margin = check_margin(margin)
        self.mining = mining
        self.distance_offset = float(distance_offset)

    def _reduce(self, problem: Problem, targets) -> LossOutput:
        d = self.distance_offset - upcast(problem.scores)
        positives, negatives = problem.positives(), problem.negatives()
        if self.mining == "hard":
            value, count = self._hard(d, positives, negatives)
        else:
            value, count = self._blocked(d, positives, negatives)
        return LossOutput(value, {"triplets": count})

    def _hard(self, d, positives, negatives):
        keep = positives.any(1) & negatives.any(1)
        hardest_pos = torch.where(positives, d, torch.full_like(d, float("-inf"))).amax(1)
        hardest_neg = torch.where(negatives, d, torch.full_like(d, float("inf"))).amin(1)
        gap = torch.where(keep, hardest_pos - hardest_neg, torch.zeros_like(hardest_pos))
        values = torch.relu(gap + self.margin)
        return reduce_rows(values, keep), keep.sum().to(d.dtype)

    def _blocked(self, d, positives, negatives):
        """Batch-all or semi-hard over row blocks, so the [R, C, C] triplet tensor is never whole."""
        r, c = d.shape
        rows = max(1, TRIPLET_BLOCK // max(1, c * c))
        total = d.new_zeros(())
        count = 0
        for start in range(0, r, rows):
            block = slice(start, min(r, start + rows))
            part_sum, part_count = self._triplets(d[block], positives[block], negatives[block])
            total = total + part_sum
            count += part_count
        return dist.mean_over_ranks(total, count), torch.as_tensor(float(count))

    def _triplets(self, d, positives, negatives):
        d_ap = d[:, :, None]   # [T, P, 1]
        d_an = d[:, None, :]   # [T, 1, N]
        if self.mining == "all":
            valid = positives[:, :, None] & negatives[:, None, :]
            losses = torch.relu(d_ap - d_an + self.margin)
            active = valid & (losses > 0)
            return torch.where(active, losses, torch.zeros_like(losses)).sum(), int(active.sum())
        farther = negatives[:, None, :] & (d_an > d_ap)
        semi = torch.where(farther, d_an.expand_as(farther), torch.full_like(farther, float("inf"), dtype=d.dtype))
        semi = semi.amin(2)  # [T, P]
        easiest = torch.where(negatives, d, torch.full_like(d, float("-inf"))).amax(1, keepdim=True)  # [T, 1]
        chosen = torch.where(torch.isfinite(semi), semi, easiest.expand_as(semi))
        pairs = positives & negatives.any(1, keepdim=True)
        gap = torch.where(pairs, d - chosen, torch.zeros_like(d))
        losses = torch.where(pairs, torch.relu(gap + self.margin), torch.zeros_like(d))
        return losses.sum(), int(pairs.sum())


def build_contrastive(params: ContrastiveParams, ctx) -> ContrastiveLoss:
    return ContrastiveLoss(params.margin, params.views, params.distance_offset)


def build_contrastive_hinge(params: ContrastiveHingeParams, ctx) -> ContrastiveHingeLoss:
    return ContrastiveHingeLoss(params.pos_margin, params.neg_margin, params.views, params.distance_offset)


def build_triplet(params: TripletParams, ctx) -> TripletLoss:
    return TripletLoss(params.margin, params.mining, params.views, params.distance_offset)
