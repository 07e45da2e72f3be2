"""What a loss sees: anchors (rows) against candidates (columns), which pairs are positives, which excluded.

A :class:`Problem` is built either from a score matrix and :class:`~cl_core.types.Targets`
(:func:`from_scores`, the ``Loss.forward`` path) or from embeddings and a scorer (:func:`from_embeddings`,
the ``Loss.compute`` path, which under ``torch.distributed`` holds only this rank's rows against the
candidates of every rank, gathered with gradient).

Views (how rows and columns relate):

* ``"pair"``: rows are queries, columns candidates; row ``i``'s positive is column ``positive[i]``; with
  labels, columns of the same label are positives too. Extra columns past the ``Q`` in-batch ones (mined
  hard negatives, a memory queue) have no label: they are negatives.
* ``"single"``: one view scored against itself (``S(q, q)``); the diagonal (an item against itself) is
  neither a positive nor a negative; positives come from labels only.
* ``"joint"``: two views stacked, ``z = [q; k]`` scored against itself (Khosla et al. 2020's multi-view
  batch; SimCLR's NT-Xent without labels); the diagonal is excluded; each view's positive is its other view.

With a score matrix, ``"single"`` and ``"joint"`` only differ in what the caller scored: the matrix must be
square and its diagonal is excluded.
"""

from __future__ import annotations

import torch
from attrs import frozen
from torch import Tensor

from .. import distributed as dist
from ..components.checks import check_matrix
from ..types import Targets

VIEWS = ("pair", "single", "joint")


@frozen
class Problem:
    """Rows (anchors) against columns (candidates) of one loss call; possibly this rank's share.

    Attributes:
        scores: ``[R, C]`` scores.
        positive: ``[R]`` int64 column of each row's own positive (equal to ``self_col`` when a row has no
            designated positive, as in ``views="single"``).
        row_labels: ``[R]`` labels of the rows, or None.
        col_labels: ``[L]`` labels of the first ``L <= C`` columns, or None.
        self_col: ``[R]`` column that is the row itself (excluded everywhere), or None.
    """

    scores: Tensor
    positive: Tensor
    row_labels: Tensor | None = None
    col_labels: Tensor | None = None
    self_col: Tensor | None = None

    def same_label(self) -> Tensor:
        """``[R, C]`` bool: labelled column with the row's label."""
        r, c = self.scores.shape
        same = torch.zeros(r, c, dtype=torch.bool, device=self.scores.device)
        if self.row_labels is not None and self.col_labels is not None:
            n = self.col_labels.shape[0]
            same[:, :n] = self.row_labels[:, None] == self.col_labels[None, :]
        return same

    def own(self) -> Tensor:
        """``[R, C]`` bool: each row's own positive column."""
        r, c = self.scores.shape
        mask = torch.zeros(r, c, dtype=torch.bool, device=self.scores.device)
        mask[torch.arange(r, device=mask.device), self.positive] = True
        return mask

    def valid(self) -> Tensor:
        """``[R, C]`` bool: every pair except a row against itself."""
        r, c = self.scores.shape
        mask = torch.ones(r, c, dtype=torch.bool, device=self.scores.device)
        if self.self_col is not None:
            mask[torch.arange(r, device=mask.device), self.self_col] = False
        return mask

    def positives(self, *, labels: bool = True) -> Tensor:
        """``[R, C]`` bool: own positive (plus same-label columns when ``labels``), never the row itself."""
        mask = self.own()
        if labels:
            mask |= self.same_label()
        return mask & self.valid()

    def negatives(self) -> Tensor:
        """``[R, C]`` bool: valid pairs that are not positives (by label)."""
        return self.valid() & ~self.positives()


# -- validation -----------------------------------------------------------------------------------------


def check_views(views: str) -> str:
    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(map(repr, VIEWS))}, got {views!r}")
    return views


def check_margin(value: float, name: str = "margin") -> float:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def check_targets(targets: Targets, rows: int, columns: int) -> None:
    """Raise ValueError unless ``positive`` is ``[rows]`` int64 in ``[0, columns)`` and labels are ``[rows]``."""
    if not isinstance(targets, Targets):
        raise TypeError(f"targets must be a cl_core.types.Targets, got {type(targets).__name__}")
    positive = targets.positive
    if positive.shape != (rows,):
        raise ValueError(f"targets.positive must have shape [{rows}] (one per query), got {list(positive.shape)}")
    if positive.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"targets.positive must be int64 column indices, got {positive.dtype}")
    if rows and (int(positive.min()) < 0 or int(positive.max()) >= columns):
        raise ValueError(f"targets.positive must index candidates in [0, {columns}), got values in "
                         f"[{int(positive.min())}, {int(positive.max())}]")
    if targets.labels is not None and targets.labels.shape != (rows,):
        raise ValueError(f"targets.labels must have shape [{rows}] (one per query), got "
                         f"{list(targets.labels.shape)}")


def check_embeddings(queries: Tensor, candidates: Tensor, targets: Targets) -> None:
    """Shapes of ``compute``'s inputs: ``[Q, N]``, ``[C, N]`` with C >= Q, targets for Q queries."""
    check_matrix(queries, "queries")
    check_matrix(candidates, "candidates")
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"queries and candidates must have the same embedding width; got queries "
                         f"{list(queries.shape)} and candidates {list(candidates.shape)}")
    check_targets(targets, queries.shape[0], candidates.shape[0])


# -- builders -------------------------------------------------------------------------------------------


def from_scores(scores: Tensor, targets: Targets, views: str) -> Problem:
    """The problem of a given score matrix ``[Q, C]`` (single process; see the module docstring)."""
    q, c = scores.shape
    labels = targets.labels
    if views == "pair":
        return Problem(scores, targets.positive, labels, labels, None)
    if q != c:
        raise ValueError(f"views={views!r} needs a square self-similarity score matrix, got {list(scores.shape)}")
    diagonal = torch.arange(q, device=scores.device)
    return Problem(scores, targets.positive, labels, labels, diagonal)


def from_embeddings(queries: Tensor, candidates: Tensor, scorer, targets: Targets, views: str, *,
                    extra_columns: Tensor | None = None) -> Problem:
    """Score embeddings for ``views``; under torch.distributed, this rank's rows against every rank's columns.

    ``"pair"``: rows = queries, columns = every rank's first-Q candidates, then every rank's extra
    candidates (positives offset by the rows of lower ranks), then ``extra_columns`` (already the same on
    every rank, e.g. a memory queue; unlabelled, so negatives). ``"single"``: queries against every rank's
    queries (candidates unused). ``"joint"``: ``[q; k]`` against every rank's ``[q; k]``.

    Raises:
        ValueError: bad shapes (see :func:`check_embeddings`); ``"single"`` without labels.
    """
    check_embeddings(queries, candidates, targets)
    q = queries.shape[0]
    labels = targets.labels
    if views == "pair":
        own, offset = dist.gather_with_grad(candidates[:q])
        columns = own
        if dist.is_distributed() or candidates.shape[0] > q:
            extra, _ = dist.gather_with_grad(candidates[q:])
            columns = torch.cat([own, extra]) if extra.shape[0] else own
        if extra_columns is not None and extra_columns.shape[0]:
            columns = torch.cat([columns, extra_columns.to(columns.dtype)])
        col_labels = dist.gather(labels) if labels is not None else None
        scores = scorer.score(queries, columns)
        return Problem(scores, targets.positive + offset, labels, col_labels, None)
    if views == "single":
        if labels is None:
            raise ValueError("views='single' takes its positives from labels; targets.labels is None")
        columns, offset = dist.gather_with_grad(queries)
        diagonal = torch.arange(q, device=queries.device) + offset
        return Problem(scorer.score(queries, columns), diagonal, labels, dist.gather(labels), diagonal)
    if candidates.shape[0] != q:
        raise ValueError(f"views='joint' needs one candidate per query, got {q} queries and "
                         f"{candidates.shape[0]} candidates")
    z = torch.cat([queries, candidates])
    columns, offset = dist.gather_with_grad(z)
    arange = torch.arange(q, device=z.device)
    diagonal = torch.arange(2 * q, device=z.device) + offset
    partner = torch.cat([arange + q, arange]) + offset
    z_labels = torch.cat([labels, labels]) if labels is not None else None
    col_labels = dist.gather(z_labels) if z_labels is not None else None
    return Problem(scorer.score(z, columns), partner, z_labels, col_labels, diagonal)


def reduce_rows(values: Tensor, keep: Tensor | None = None) -> Tensor:
    """Mean of per-row ``values`` over the kept rows of every rank (0 with zero gradient when none)."""
    if keep is None:
        return dist.mean_over_ranks(values.sum(), values.shape[0])
    kept = torch.where(keep, values, torch.zeros_like(values))
    return dist.mean_over_ranks(kept.sum(), int(keep.sum()))
