"""Noise-contrastive estimation and word2vec's negative sampling: binary data-vs-noise classification.

Inputs: scores ``S`` [Q, C] with row ``i``'s data (positive) candidate in column ``positive[i]`` and every
other column a *noise sample* for that row. Two layouts fit:

* in-batch: ``S = scorer(q, k)`` ``[B, B]``, the other rows' candidates are the noise samples;
* per-row samples (word2vec): ``S`` ``[B, 1 + k]`` of each context against its word and its own k noise
  words, ``positive = 0``.

NCE (Gutmann & Hyvarinen, 2010, "Noise-contrastive estimation"; Mnih & Teh, 2012, "A fast and simple
algorithm for training neural probabilistic language models") treats ``S`` as an unnormalised model
log-probability and classifies data against k noise samples with the posterior log-odds

    Delta(w) = S(w) - log(k * p_noise(w))
    L = -1/Q sum_i [ log sigmoid(Delta(w_i+)) + sum_{j noise} log sigmoid(-Delta(w_ij)) ]

so at the optimum ``exp(S)`` is the self-normalised data distribution. The noise log-probabilities come in
:class:`NoiseTargets` (``log_noise`` ``[C]`` per candidate, or ``[Q, C]`` per row and column, natural log);
with plain :class:`~cl_core.types.Targets` the noise is taken as uniform over the C candidates
(``p_noise = 1/C``). ``k`` is the number of noise columns per row (C - 1) unless ``num_noise`` is given.

Negative sampling (Mikolov et al., 2013, "Distributed Representations of Words and Phrases") drops the
correction: ``L = -1/Q sum_i [ log sigmoid(S_i+) + sum_j log sigmoid(-S_ij) ]``. It is not NCE: its optimum
is a shifted PMI, not the normalised distribution (Levy & Goldberg, 2014).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attrs import frozen
from torch import Tensor

from .. import distributed as dist
from ..types import LossOutput, Targets
from .params import NCEParams, NegativeSamplingParams
from .problem_loss import ProblemLoss
from .problems import Problem, reduce_rows
from .scale import upcast


@frozen
class NoiseTargets(Targets):
    """:class:`~cl_core.types.Targets` plus the noise distribution of the candidates (for ``core.nce``).

    Attributes:
        log_noise: ``[C]`` natural-log probability of each candidate under the noise distribution, or
            ``[Q, C]`` one per row and column (per-row noise samples), or None for uniform over C.
        num_noise: k in ``log(k * p_noise)``; None = the noise columns per row (C - 1).
    """

    log_noise: Tensor | None = None
    num_noise: int | None = None


def _binary_rows(logits: Tensor, problem: Problem) -> Tensor:
    """Per row ``-log sigmoid(x_pos) - sum_noise log sigmoid(-x_j)`` over valid columns."""
    own = problem.own() & problem.valid()
    noise = problem.valid() & ~own
    signs = own.to(logits.dtype) * 2 - 1
    terms = F.softplus(-signs * logits)
    return torch.where(own | noise, terms, torch.zeros_like(terms)).sum(1)


class NegativeSamplingLoss(ProblemLoss):
    """word2vec's negative-sampling loss (Mikolov et al., 2013); see the module docstring."""

    def __init__(self):
        super().__init__("pair")

    def _reduce(self, problem: Problem, targets: Targets) -> LossOutput:
        return LossOutput(reduce_rows(_binary_rows(upcast(problem.scores), problem)))


class NCELoss(ProblemLoss):
    """Noise-contrastive estimation with the ``log(k * p_noise)`` correction; see the module docstring.

    Raises:
        ValueError: ``log_noise`` of the wrong shape, or ``num_noise`` < 1.
    """

    def __init__(self):
        super().__init__("pair")

    def _log_noise(self, problem: Problem, targets: Targets) -> Tensor:
        r, c = problem.scores.shape
        dtype = upcast(problem.scores).dtype
        log_noise = getattr(targets, "log_noise", None)
        if log_noise is None:
            return torch.full((1, c), -math.log(c), dtype=dtype, device=problem.scores.device)
        log_noise = log_noise.to(dtype)
        if log_noise.dim() == 1:
            if dist.is_distributed():  # the column order of from_embeddings: every rank's own, then extras
                log_noise = torch.cat([dist.gather(log_noise[:r]), dist.gather(log_noise[r:])])
            if log_noise.shape != (c,):
                raise ValueError(f"targets.log_noise must have shape [{c}] (one per candidate) or [{r}, {c}], got "
                                 f"{list(log_noise.shape)}")
            return log_noise[None, :]
        if log_noise.shape != (r, c):
            raise ValueError(f"targets.log_noise must have shape [{c}] (one per candidate) or [{r}, {c}], got "
                             f"{list(log_noise.shape)}")
        return log_noise

    def _reduce(self, problem: Problem, targets: Targets) -> LossOutput:
        num_noise = getattr(targets, "num_noise", None)
        k = problem.scores.shape[1] - 1 if num_noise is None else num_noise
        if k < 1:
            raise ValueError(f"NCE needs at least one noise sample per row (num_noise >= 1), got {k}")
        logits = upcast(problem.scores) - math.log(k) - self._log_noise(problem, targets)
        return LossOutput(reduce_rows(_binary_rows(logits, problem)))


def build_nce(params: NCEParams, ctx) -> NCELoss:
    return NCELoss()


def build_negative_sampling(params: NegativeSamplingParams, ctx) -> NegativeSamplingLoss:
    return NegativeSamplingLoss()
