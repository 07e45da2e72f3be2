"""InfoNCE and CLIP's symmetric cross-entropy: direct, memory-bounded (tiled) and distributed forms.

InfoNCE (van den Oord et al., 2018, "Representation Learning with Contrastive Predictive Coding"):

    L = -1/Q sum_i log( exp(S_{i, p(i)}) / sum_j exp(S_ij) )

over scores ``S`` [Q, C] with the positive of row ``i`` in column ``p(i)``; computed as a log-sum-exp in
float32 or wider. ``symmetric`` averages it with the same loss over the first Q columns of ``S^T``
(CLIP, Radford et al., 2021). Extra columns past the first Q (mined hard negatives) are negatives of
every row and take part in the query->candidate direction only.

Label-aware positives (case 7): with ``label_aware``, candidates with the row's label other than its own
positive are dropped from the denominator (the same caption twice in a batch is not its own negative).
Default off, as in CLIP and open_clip.

``Loss.compute`` (embeddings + scorer) picks the form:

* distributed (torch.distributed with > 1 process): the local loss of :mod:`cl_core.distributed`;
* tiled: the score matrix is never held (:mod:`~cl_core._builtin.tiled`); for scorers whose scores are
  ``s * a @ b.T`` (dot, cosine, bilinear); chosen by ``implementation="tiled"`` or automatically when
  Q * C > ``tiled_above``; each row's loss is formed relative to its positive, so it keeps its relative
  accuracy on saturated batches (losses near 0);
* direct: score, then ``F.cross_entropy``, accurate to about float32's epsilon in absolute terms (at a
  float32 loss of 1e-8 the value was measured 17% off relative, ``d/d log s`` 53%; at 3e-3, 1e-5 and 3e-5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import distributed as dist
from ..components import Loss
from ..types import LossOutput, Targets
from .params import TILED_ABOVE, ClipLossParams, InfoNCEParams
from .problems import check_embeddings, check_targets
from .scale import upcast
from .tiled import tiled_cross_entropy

IMPLEMENTATIONS = ("auto", "direct", "tiled")


def label_exclusion(positive: Tensor, row_labels: Tensor | None, col_labels: Tensor | None,
                    num_columns: int) -> Tensor | None:
    """``[R, C]`` bool: same label as the row (first ``len(col_labels)`` columns), not its own positive."""
    if row_labels is None or col_labels is None:
        return None
    r = positive.shape[0]
    out = torch.zeros(r, num_columns, dtype=torch.bool, device=positive.device)
    n = col_labels.shape[0]
    out[:, :n] = row_labels[:, None] == col_labels[None, :]
    out[torch.arange(r, device=out.device), positive] = False
    return out


def cross_entropy_rows(scores: Tensor, positive: Tensor, exclude: Tensor | None = None) -> Tensor:
    """Per-row ``-log softmax(scores)[i, positive_i]`` ``[R]`` in float32 or wider; ``exclude`` -> -inf."""
    logits = upcast(scores)
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    return F.cross_entropy(logits, positive, reduction="none")


def inverse_positive(positive: Tensor) -> Tensor:
    """Row of each of the first Q columns; raises unless ``positive`` is a permutation of ``0..Q-1``."""
    q = positive.shape[0]
    if not torch.equal(torch.sort(positive).values, torch.arange(q, device=positive.device)):
        raise ValueError("a symmetric loss needs each of the first Q candidates to be the positive of exactly "
                         "one query (targets.positive a permutation of 0..Q-1)")
    return torch.argsort(positive)


def info_nce(scores: Tensor, targets: Targets, *, label_aware: bool) -> Tensor:
    """Mean over queries of ``-log softmax(scores)[i, positive_i]``, computed in float32 or wider."""
    labels = targets.labels if label_aware else None
    exclude = label_exclusion(targets.positive, labels, labels, scores.shape[1])
    return cross_entropy_rows(scores, targets.positive, exclude).mean()


class InfoNCELoss(Loss):
    """InfoNCE, one direction or symmetric, with optional label-aware positives; see the module docstring.

    Args:
        symmetric: average with the candidate->query direction (needs C >= Q, positives a permutation).
        label_aware: same-label candidates are not negatives.
        implementation: "auto", "direct" or "tiled".
        tiled_above: score entries (Q x C) above which "auto" tiles.
        tile_mb: memory of one block of scores in the tiled form (MiB).

    Raises:
        ValueError: an unknown implementation; non-positive thresholds; "tiled" with a scorer that is not
            a scaled product (at compute time).
    """

    def __init__(self, symmetric: bool = False, label_aware: bool = False, implementation: str = "auto",
                 tiled_above: int = TILED_ABOVE, tile_mb: float = 64.0):
        super().__init__()
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        if tiled_above <= 0:
            raise ValueError(f"tiled_above must be > 0, got {tiled_above}")
        if not tile_mb > 0:
            raise ValueError(f"tile_mb must be > 0, got {tile_mb}")
        self.symmetric = symmetric
        self.label_aware = label_aware
        self.implementation = implementation
        self.tiled_above = tiled_above
        self.tile_mb = tile_mb

    # -- score-matrix form ---------------------------------------------------------------------------
    def _loss(self, scores: Tensor, targets: Targets) -> LossOutput:
        q = scores.shape[0]
        check_targets(targets, q, scores.shape[1])
        labels = targets.labels if self.label_aware else None
        exclude = label_exclusion(targets.positive, labels, labels, scores.shape[1])
        forward = cross_entropy_rows(scores, targets.positive, exclude).mean()
        if not self.symmetric:
            return LossOutput(forward, {"q2c": forward.detach()})
        if scores.shape[1] < q:
            raise ValueError(f"a symmetric loss needs at least as many candidates as queries, got scores "
                             f"{list(scores.shape)}")
        inverse = inverse_positive(targets.positive)
        back_exclude = exclude[:, :q].t() if exclude is not None else None
        backward = cross_entropy_rows(scores[:, :q].t(), inverse, back_exclude).mean()
        return LossOutput((forward + backward) / 2, {"q2c": forward.detach(), "c2q": backward.detach()})

    # -- embeddings form -----------------------------------------------------------------------------
    def _tiled(self, scorer, rows: int, columns: int) -> bool:
        if self.implementation == "direct":
            return False
        can = bool(getattr(scorer, "factorizable", False))
        if self.implementation == "tiled":
            if not can:
                raise ValueError(f"implementation='tiled' needs a scorer whose scores are s * a @ b.T (core.dot, "
                                 f"core.cosine, core.bilinear); got {type(scorer).__name__}")
            return True
        return can and rows * columns > self.tiled_above

    def compute(self, queries: Tensor, candidates: Tensor, scorer, targets: Targets) -> LossOutput:
        """Loss from embeddings ``[Q, N]``, ``[C, N]`` (C >= Q; row i's positive is ``targets.positive[i]``).

        Raises:
            ValueError: shapes or targets that do not match (naming the argument and expected shape).
        """
        check_embeddings(queries, candidates, targets)
        _, size = dist.world()
        q, c = queries.shape[0], candidates.shape[0]
        tiled = self._tiled(scorer, q, c * size)
        if size == 1 and not tiled:
            return self(scorer.score(queries, candidates), targets)
        if self.symmetric and c < q:
            raise ValueError(f"a symmetric loss needs at least as many candidates as queries, got {q} queries and "
                             f"{c} candidates")
        if size == 1:
            out = self._tiled_single(queries, candidates, scorer, targets)
        else:
            out = self._distributed(queries, candidates, scorer, targets, tiled)
        if not torch.isfinite(out.value):
            raise FloatingPointError(f"loss from {type(self).__qualname__} is not finite")
        return out

    def _labels(self, targets: Targets) -> Tensor | None:
        return targets.labels if self.label_aware else None

    def _tiled_single(self, queries, candidates, scorer, targets) -> LossOutput:
        """One process, both directions from one pass over the blocks (4 block matmuls)."""
        a, b, s = scorer.factorize(queries, candidates)
        q = a.shape[0]
        labels = self._labels(targets)
        if self.symmetric:
            inverse_positive(targets.positive)
        row_sum, col_sum = tiled_cross_entropy(a, b, s, targets.positive, row_labels=labels, col_labels=labels,
                                               n_col=q if self.symmetric else 0, budget_mb=self.tile_mb)
        forward = row_sum / q
        if not self.symmetric:
            return LossOutput(forward, {"q2c": forward.detach()})
        backward = col_sum / q
        return LossOutput((forward + backward) / 2, {"q2c": forward.detach(), "c2q": backward.detach()})

    def _direction(self, rows, columns, scorer, positive, row_labels, col_labels, tiled) -> Tensor:
        """Sum over this rank's rows of the row cross-entropy (rows against every rank's columns)."""
        if tiled:
            a, b, s = scorer.factorize(rows, columns)
            total, _ = tiled_cross_entropy(a, b, s, positive, row_labels=row_labels, col_labels=col_labels,
                                           budget_mb=self.tile_mb)
            return total
        scores = scorer.score(rows, columns)
        exclude = label_exclusion(positive, row_labels, col_labels, scores.shape[1])
        return cross_entropy_rows(scores, positive, exclude).sum()

    def _distributed(self, queries, candidates, scorer, targets, tiled) -> LossOutput:
        """Local loss: this rank's queries against every rank's candidates, and (symmetric) this rank's
        in-batch candidates against every rank's queries; positives offset by the rows of lower ranks."""
        q = queries.shape[0]
        own, offset = dist.gather_with_grad(candidates[:q])
        extra, _ = dist.gather_with_grad(candidates[q:])
        columns = torch.cat([own, extra]) if extra.shape[0] else own
        labels = self._labels(targets)
        all_labels = dist.gather(labels) if labels is not None else None
        positive = targets.positive + offset
        forward = dist.mean_over_ranks(
            self._direction(queries, columns, scorer, positive, labels, all_labels, tiled), q)
        if not self.symmetric:
            return LossOutput(forward, {"q2c": forward.detach()})
        inverse = inverse_positive(targets.positive) + offset
        all_queries, _ = dist.gather_with_grad(queries)
        backward = dist.mean_over_ranks(
            self._direction(candidates[:q], all_queries, scorer, inverse, labels, all_labels, tiled), q)
        return LossOutput((forward + backward) / 2, {"q2c": forward.detach(), "c2q": backward.detach()})


class ClipLoss(InfoNCELoss):
    """CLIP's symmetric cross-entropy (Radford et al., 2021): InfoNCE image->text and text->image, averaged.

    Over square in-batch scores only; for extra hard-negative columns use ``core.info-nce`` with
    ``symmetric = true``.

    Raises:
        ValueError: scores (or queries and candidates) that are not square.
    """

    def __init__(self, label_aware: bool = False, implementation: str = "auto", tiled_above: int = TILED_ABOVE,
                 tile_mb: float = 64.0):
        super().__init__(symmetric=True, label_aware=label_aware, implementation=implementation,
                         tiled_above=tiled_above, tile_mb=tile_mb)

    @staticmethod
    def _check_square(rows: int, columns: int) -> None:
        if rows != columns:
            raise ValueError(f"a symmetric loss needs square scores (in-batch pairs), got [{rows}, {columns}]; "
                             f"for extra hard-negative columns use core.info-nce with symmetric = true")

    def _loss(self, scores: Tensor, targets: Targets) -> LossOutput:
        self._check_square(*scores.shape)
        return super()._loss(scores, targets)

    def compute(self, queries: Tensor, candidates: Tensor, scorer, targets: Targets) -> LossOutput:
        check_embeddings(queries, candidates, targets)
        self._check_square(queries.shape[0], candidates.shape[0])
        return super().compute(queries, candidates, scorer, targets)


def build_clip(params: ClipLossParams, ctx) -> ClipLoss:
    return ClipLoss(label_aware=params.label_aware, implementation=params.implementation,
                    tiled_above=params.tiled_above, tile_mb=params.tile_mb)


def build_info_nce(params: InfoNCEParams, ctx) -> InfoNCELoss:
    return InfoNCELoss(symmetric=params.symmetric, label_aware=params.label_aware,
                       implementation=params.implementation, tiled_above=params.tiled_above,
                       tile_mb=params.tile_mb)
