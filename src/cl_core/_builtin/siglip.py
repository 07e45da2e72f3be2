"""SigLIP's pairwise sigmoid loss (Zhai, Mustafa, Kolesnikov & Beyer, 2023, "Sigmoid Loss for Language
Image Pre-Training"):

    L = -1/|B| sum_i sum_j log sigmoid( z_ij * (S_ij + b) ),   z_ij = +1 for positives, -1 otherwise

with ``S = t * cos`` from the scorer (paper: t = 10 learnable, i.e. ``core.cosine`` with temperature 0.1)
and a learnable bias ``b`` (paper: -10) so that the many negatives start with a small loss. Every pair is an
independent binary problem: no softmax over the batch, so the distributed form only needs each rank's rows
against the gathered candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..types import LossOutput
from .params import SigLIPParams
from .problem_loss import ProblemLoss
from .problems import Problem, reduce_rows
from .scale import upcast


class SigLIPLoss(ProblemLoss):
    """Sigmoid loss over all (query, candidate) pairs; see the module docstring.

    Args:
        bias_init: initial bias b.
        learn_bias: make ``logit_bias`` trainable (it is excluded from weight decay by the trainer).
        label_aware: same-label pairs are positives (z = +1) instead of negatives. Default False.
    """

    def __init__(self, bias_init: float = -10.0, learn_bias: bool = True, label_aware: bool = False):
        super().__init__("pair")
        self.logit_bias = nn.Parameter(torch.tensor(float(bias_init)), requires_grad=learn_bias)
        self.label_aware = label_aware

    def _reduce(self, problem: Problem, targets) -> LossOutput:
        logits = upcast(problem.scores) + self.logit_bias.to(upcast(problem.scores).dtype)
        positive = problem.positives(labels=self.label_aware)
        signs = positive.to(logits.dtype) * 2 - 1
        per_row = -F.logsigmoid(signs * logits).sum(1)
        value = reduce_rows(per_row)
        return LossOutput(value, {"bias": self.logit_bias.detach().clone()})


def build_siglip(params: SigLIPParams, ctx) -> SigLIPLoss:
    return SigLIPLoss(params.bias_init, params.learn_bias, params.label_aware)
