"""A memory queue of past candidate embeddings as extra negatives (MoCo, He et al., 2020, "Momentum
Contrast for Unsupervised Visual Representation Learning"; XBM, Wang et al., 2020, "Cross-Batch Memory").

The loss is InfoNCE of each query against the candidates of the batch (of every rank) and the ``n`` queued
candidates::

    L = -1/B sum_i log( exp(S(q_i, k_i)) / (sum_j exp(S(q_i, k_j)) + sum_{m <= n} exp(S(q_i, queue_m))) )

Queued embeddings are constants (no gradient). The queue lives in the loss (a FIFO ring of persistent
buffers, so checkpoints resume it exactly) and is updated in :meth:`MemoryQueueLoss.compute` *after* the
loss has been formed from the old queue, in training mode only, with the candidates of every rank in rank
order: all ranks hold the same queue. With ``label_aware``, queued candidates that share the query's label
are left out of its denominator (as are same-label candidates of the batch).

A MoCo *momentum encoder* is an encoder concern, not this loss's: this queue holds whatever the candidate
encoder produced (XBM; with slowly changing encoders the stale keys are what MoCo's momentum avoids).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import distributed as dist
from ..types import LossOutput, Targets
from .losses import cross_entropy_rows, label_exclusion
from .params import MemoryQueueParams
from .problem_loss import ProblemLoss
from .problems import Problem, from_embeddings, reduce_rows


class MemoryQueueLoss(ProblemLoss):
    """InfoNCE against the batch and a FIFO queue of ``size`` past candidates of width ``dim``.

    Buffers (in the state dict): ``queue`` [size, dim] float32, ``queue_labels`` [size] int64,
    ``queue_labelled`` [size] bool, ``queue_ptr`` and ``queue_count`` (scalars).

    Raises:
        ValueError: size or dim <= 0; candidates of another width at compute time.
    """

    def __init__(self, size: int, dim: int, label_aware: bool = False):
        super().__init__("pair")
        if size <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        self.size, self.dim, self.label_aware = size, dim, label_aware
        self.register_buffer("queue", torch.zeros(size, dim))
        self.register_buffer("queue_labels", torch.zeros(size, dtype=torch.long))
        self.register_buffer("queue_labelled", torch.zeros(size, dtype=torch.bool))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))

    @property
    def filled(self) -> int:
        """Queued candidates in use (grows to ``size``)."""
        return int(self.queue_count)

    def _reduce(self, problem: Problem, targets: Targets) -> LossOutput:
        return self._queue_loss(problem, 0)

    def _queue_loss(self, problem: Problem, queued: int) -> LossOutput:
        """InfoNCE rows of a problem whose last ``queued`` columns are the queue's first entries."""
        exclude = None
        if self.label_aware and problem.row_labels is not None:
            exclude = label_exclusion(problem.positive, problem.row_labels, problem.col_labels,
                                      problem.scores.shape[1])
            if queued:
                same = problem.row_labels[:, None] == self.queue_labels[None, :queued]
                exclude[:, -queued:] |= same & self.queue_labelled[None, :queued]
        rows = cross_entropy_rows(problem.scores, problem.positive, exclude)
        return LossOutput(reduce_rows(rows), {"queued": torch.tensor(float(queued))})

    def compute(self, queries: Tensor, candidates: Tensor, scorer, targets: Targets) -> LossOutput:
        """InfoNCE with the queue as extra negatives, then (training mode) enqueue every rank's candidates.

        Raises:
            ValueError: candidates whose width is not ``dim``, or bad shapes/targets.
        """
        if candidates.dim() == 2 and candidates.shape[1] != self.dim:
            raise ValueError(f"candidates must have width dim = {self.dim} (the queue's), got shape "
                             f"{list(candidates.shape)}")
        queued = self.filled
        queue = self.queue[:queued].clone() if queued else None
        problem = from_embeddings(queries, candidates, scorer, targets, "pair", extra_columns=queue)
        out = self._queue_loss(problem, queued)
        if not torch.isfinite(out.value):
            raise FloatingPointError(f"loss from {type(self).__qualname__} is not finite")
        if self.training:
            self.enqueue(candidates[: queries.shape[0]].detach(), targets.labels)
        return out

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor | None = None) -> None:
        """Append every rank's ``keys`` [B, dim] (rank order) to the queue, overwriting the oldest."""
        local = keys.shape[0]
        has = torch.full((local,), labels is not None, dtype=torch.bool, device=keys.device)
        if labels is None:
            labels = torch.zeros(local, dtype=torch.long, device=keys.device)
        keys = dist.gather(keys.to(self.queue.dtype))
        labels, has = dist.gather(labels.to(torch.long)), dist.gather(has.to(torch.uint8)).bool()
        keys, labels, has = keys[-self.size:], labels[-self.size:], has[-self.size:]
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        index = (torch.arange(n, device=keys.device) + ptr) % self.size
        self.queue[index] = keys
        self.queue_labels[index] = labels
        self.queue_labelled[index] = has
        self.queue_ptr.fill_((ptr + n) % self.size)
        self.queue_count.fill_(min(self.size, int(self.queue_count) + n))


def build_memory_queue(params: MemoryQueueParams, ctx) -> MemoryQueueLoss:
    dim = params.dim
    if dim is None:
        encoders = list(getattr(ctx, "encoders", {}).values())
        if not encoders:
            raise ValueError("core.memory-queue needs the embedding width: set loss.dim (no encoder is built yet)")
        dim = int(encoders[-1].embed_dim)
    return MemoryQueueLoss(params.size, dim, params.label_aware)
