"""Supervised contrastive loss (Khosla et al., 2020, "Supervised Contrastive Learning"), both forms:

    L_out = 1/|I'| sum_{i in I'} -1/|P(i)| sum_{p in P(i)} log( exp(S_ip) / sum_{a in A(i)} exp(S_ia) )
    L_in  = 1/|I'| sum_{i in I'} -log( 1/|P(i)| sum_{p in P(i)} exp(S_ip) / sum_{a in A(i)} exp(S_ia) )

``A(i)``: every candidate except the anchor itself; ``P(i)``: the positives in ``A(i)`` (the anchor's other
view and every item with its label); ``I'``: the anchors with at least one positive -- anchors without a
positive are left out of the mean (case 1). When no anchor has a positive the loss is an exact 0 with zero
gradients (documented, never NaN). The temperature is the scorer's (``core.cosine`` with temperature 0.1
as in the paper); the paper's extra factor tau / tau_base is left out. Both forms use log-sum-exp, so
they are safe at low temperature and under fp16/bf16 autocast (solo-learn's L_in overflows fp16 there).
The paper finds L_out clearly better; it is the default.

L_out equals pytorch-metric-learning's ``SupConLoss(temperature=tau)`` with its default reducer
(``AvgNonZeroReducer``, which drops exactly the anchors without a positive) and ``CosineSimilarity``,
i.e. ``core.cosine`` with ``temperature = tau, learn_temperature = false``, called on one set of
embeddings with labels (``views="single"``; ``"joint"`` is that call on ``cat(q, k)`` with labels
``cat(l, l)``), whenever the batch has a negative pair (PML returns 0 for a batch without one). L_in has no
PML counterpart.

NT-Xent (Chen, Kornblith, Norouzi & Hinton, 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", SimCLR) is L_out with ``views="joint"`` and the two views as the only positives:
``core.nt-xent`` (:func:`build_nt_xent`), the same code with ``label_aware=False``. Per view ``i`` of the
2B views, ``-log( exp(S_{i,i'}) / sum_{a != i} exp(S_ia) )`` with ``i'`` its other view, averaged over the
2B views; it equals PML's ``NTXentLoss(temperature=tau)`` with its default ``MeanReducer`` and
``CosineSimilarity`` called as SimCLR does: embeddings ``cat(z_1, z_2)``, labels ``cat(arange(B),
arange(B))`` (PML adds the dtype's smallest normal number inside the log: no difference unless a
probability underflows).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..types import LossOutput
from .params import NTXentParams, SupConParams
from .problem_loss import ProblemLoss
from .problems import Problem, reduce_rows
from .scale import upcast

FORMS = ("out", "in")


def supcon_rows(logits: Tensor, positives: Tensor, valid: Tensor, form: str) -> tuple[Tensor, Tensor]:
    """Per-anchor losses ``[R]`` (finite everywhere) and which anchors have a positive ``[R]`` bool."""
    n_pos = positives.sum(1)
    keep = n_pos > 0
    # a row with no valid candidate (a batch of one, single view) gets zeros: finite, and it has no positive
    has_any = valid.any(1, keepdim=True)
    lse_all = torch.logsumexp(torch.where(has_any, logits.masked_fill(~valid, float("-inf")), 0.0), dim=1)
    if form == "out":
        pos_logits = logits.masked_fill(~positives, 0.0).sum(1)
        values = lse_all - pos_logits / n_pos.clamp_min(1).to(logits.dtype)
    else:
        # rows without a positive take all-zero logits so the log-sum-exp stays finite (they are dropped)
        masked = torch.where(keep[:, None], logits.masked_fill(~positives, float("-inf")), torch.zeros_like(logits))
        lse_pos = torch.logsumexp(masked, dim=1)
        values = lse_all - lse_pos + torch.log(n_pos.clamp_min(1).to(logits.dtype))
    return torch.where(keep, values, torch.zeros_like(values)), keep


class SupConLoss(ProblemLoss):
    """Supervised contrastive loss, ``form="out"`` (default) or ``"in"``; see the module docstring.

    Takes scores ``[R, C]`` (or embeddings ``[Q, N]``, ``[C, N]`` and a scorer), returns a scalar in nats
    with the part ``anchors`` (how many anchors had a positive).

    Args:
        form: "out" or "in".
        views: "joint" (default; Khosla's multi-view batch, NT-Xent without labels), "pair" or "single".
        label_aware: items with the anchor's label are positives too (SupCon). False: only the anchor's own
            pair is (NT-Xent; labels in the targets are then ignored, and same-label items are negatives).

    Raises:
        ValueError: an unknown form or views.
    """

    def __init__(self, form: str = "out", views: str = "joint", label_aware: bool = True):
        super().__init__(views)
        if form not in FORMS:
            raise ValueError(f"form must be 'out' (sum outside the log) or 'in' (inside), got {form!r}")
        self.form = form
        self.label_aware = label_aware

    def _reduce(self, problem: Problem, targets) -> LossOutput:
        logits = upcast(problem.scores)
        values, keep = supcon_rows(logits, problem.positives(labels=self.label_aware), problem.valid(), self.form)
        value = reduce_rows(values, keep)
        return LossOutput(value, {"anchors": keep.sum().to(logits.dtype).detach()})


def build_supcon(params: SupConParams, ctx) -> SupConLoss:
    return SupConLoss(params.form, params.views)


def build_nt_xent(params: NTXentParams, ctx) -> SupConLoss:
    """``core.nt-xent``: SimCLR's NT-Xent, :class:`SupConLoss` with ``form="out"``, ``views="joint"`` and
    the other view as the only positive (see the module docstring)."""
    return SupConLoss("out", "joint", label_aware=False)


__all__ = ["SupConLoss", "build_nt_xent", "build_supcon", "supcon_rows"]
