"""Built-in InfoNCE-family losses (numerically stable: cross-entropy is a log-sum-exp)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..components import Loss
from ..types import LossOutput, Targets
from .params import ClipLossParams, InfoNCEParams


def _mask_other_positives(scores: Tensor, targets: Targets) -> Tensor:
    """Scores with every positive except the target column set to -inf (they are not negatives)."""
    mask = targets.positive_mask(scores.shape[1])
    mask[torch.arange(scores.shape[0], device=scores.device), targets.positive] = False
    return scores.masked_fill(mask, float("-inf"))


def info_nce(scores: Tensor, targets: Targets, *, label_aware: bool) -> Tensor:
    """Mean over queries of ``-log softmax(scores)[i, positive_i]``, computed in float32 or wider."""
    logits = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if label_aware and targets.labels is not None:
        logits = _mask_other_positives(logits, targets)
    return F.cross_entropy(logits, targets.positive)


class InfoNCELoss(Loss):
    """InfoNCE (van den Oord et al., 2018, "Representation Learning with Contrastive Predictive Coding").

    ``L = -1/Q sum_i log( exp(S_ii) / sum_j exp(S_ij) )`` over scores ``[Q, C]`` with the positive of
    row ``i`` in column ``positive_i``; ``symmetric`` averages it with the same loss on ``S^T``.
    With ``label_aware``, same-label candidates are dropped from the denominator (case: a caption
    that occurs twice in a batch is not its own negative). Default off, as in open_clip.
    """

    def __init__(self, symmetric: bool = False, label_aware: bool = False):
        super().__init__()
        self.symmetric = symmetric
        self.label_aware = label_aware

    def _loss(self, scores: Tensor, targets: Targets) -> LossOutput:
        forward = info_nce(scores, targets, label_aware=self.label_aware)
        if not self.symmetric:
            return LossOutput(forward, {"q2c": forward.detach()})
        if scores.shape[0] != scores.shape[1]:
            raise ValueError(f"a symmetric loss needs square scores (in-batch pairs), got {list(scores.shape)}")
        back_targets = Targets(positive=torch.argsort(targets.positive), labels=targets.labels)
        backward = info_nce(scores.t(), back_targets, label_aware=self.label_aware)
        return LossOutput((forward + backward) / 2, {"q2c": forward.detach(), "c2q": backward.detach()})


class ClipLoss(InfoNCELoss):
    """CLIP's symmetric cross-entropy (Radford et al., 2021): InfoNCE image->text and text->image, averaged."""

    def __init__(self, label_aware: bool = False):
        super().__init__(symmetric=True, label_aware=label_aware)


def build_clip(params: ClipLossParams, ctx) -> ClipLoss:
    return ClipLoss(label_aware=params.label_aware)


def build_info_nce(params: InfoNCEParams, ctx) -> InfoNCELoss:
    return InfoNCELoss(symmetric=params.symmetric, label_aware=params.label_aware)
