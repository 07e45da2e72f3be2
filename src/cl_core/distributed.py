"""Data-parallel helpers: gather with gradient, the local-loss reduction, batch sharding, gradient averaging.

The losses follow open_clip's *local loss* formulation: each rank scores only its own rows against the
candidates of every rank (gathered with gradient), so a rank holds ``[b, B]`` scores, not ``[B, B]``;
the positive of local row ``i`` is global column ``offset + i`` with ``offset`` = the rows of the lower
ranks (rank x local batch when batches are even). Per-rank values are combined with
:func:`mean_over_ranks` so that

* every rank reports the same value, the loss of one process holding the whole batch, and
* the gradients, *averaged over ranks* (what DDP, or :func:`average_gradients`, does), are those of that
  single process.

Everything here is a no-op when ``torch.distributed`` is not initialised or the world has one process.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return world()[1] > 1


def _sizes(n: int, device: torch.device) -> list[int]:
    _, size = world()
    mine = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.zeros_like(mine) for _ in range(size)]
    dist.all_gather(out, mine)
    return [int(t) for t in out]


def _all_gather_padded(x: Tensor, sizes: list[int]) -> Tensor:
    """Concatenate every rank's ``x`` (first dimensions ``sizes``, may differ) in rank order."""
    longest = max(sizes)
    if x.shape[0] < longest:
        pad = torch.zeros((longest - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
        x = torch.cat([x, pad])
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient of the gathered tensor and returns this
    rank's slice (the gradient of the sum over ranks of each rank's loss)."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], offset: int) -> Tensor:
        ctx.offset, ctx.n = offset, x.shape[0]
        return _all_gather_padded(x, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.offset : ctx.offset + ctx.n], None, None


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """``(all rows of every rank [sum of rows, ...], offset of this rank's rows)``, differentiable.

    Gradients flowing into the gathered tensor on any rank reach the rank that owns the rows. Ranks may
    hold different numbers of rows. Without a process group: ``(x, 0)``.
    """
    rank, size = world()
    if size == 1:
        return x, 0
    sizes = _sizes(x.shape[0], x.device)
    return _GatherWithGrad.apply(x, sizes, sum(sizes[:rank])), sum(sizes[:rank])


@torch.no_grad()
def gather(x: Tensor) -> Tensor:
    """All rows of every rank (no gradient), in rank order. Without a process group: ``x``."""
    if not is_distributed():
        return x
    return _all_gather_padded(x, _sizes(x.shape[0], x.device))


def mean_over_ranks(local_sum: Tensor, local_count: float | Tensor) -> Tensor:
    """Mean of terms spread over ranks: ``sum of every rank's local_sum / sum of local_count``.

    The value is the same on every rank (a single process's mean); the gradient on each rank is
    ``world_size * d local_sum / total_count``, so averaging gradients over ranks gives the gradient of
    the global mean. A total count of 0 gives an exact zero with zero gradients (never 0/0).
    """
    count = torch.as_tensor(local_count, dtype=torch.float64, device=local_sum.device)
    if not is_distributed():
        if float(count) == 0:
            return local_sum * 0.0
        return local_sum / count.to(local_sum.dtype)
    _, size = world()
    stats = torch.stack([local_sum.detach().to(torch.float64), count])
    dist.all_reduce(stats, op=dist.ReduceOp.SUM)
    total_sum, total_count = stats[0], stats[1]
    if float(total_count) == 0:
        return local_sum * 0.0
    value = local_sum * (size / total_count).to(local_sum.dtype)
    return value + ((total_sum / total_count).to(local_sum.dtype) - value.detach())


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks (a copy); ``x`` itself without a process group."""
    if not is_distributed():
        return x
    out = x.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


# -- training-loop helpers ----------------------------------------------------------------------------


def shard_batch(batch, rank: int | None = None, size: int | None = None):
    """This rank's contiguous share of a global :class:`~cl_core.types.Batch`.

    Rows ``[offset, offset + n)`` with the B rows split as evenly as possible (the first ``B % size``
    ranks get one more). An input list of length ``B * (1 + k)`` (B rows, then k extra candidates per
    row, the ``core.hard-negatives`` layout) keeps this rank's rows and their extra candidates.

    Raises:
        ValueError: the batch has fewer rows than there are ranks.
    """
    from .types import Batch

    if rank is None or size is None:
        rank, size = world()
    if size == 1:
        return batch
    b = len(batch)
    if b < size:
        raise ValueError(f"a batch of {b} rows cannot be split over {size} processes; raise the batch size")
    counts = [b // size + (1 if r < b % size else 0) for r in range(size)]
    start = sum(counts[:rank])
    stop = start + counts[rank]
    inputs = {}
    for role, items in batch.inputs.items():
        if len(items) == b:
            inputs[role] = list(items[start:stop])
        elif len(items) % b == 0:
            k = len(items) // b - 1
            inputs[role] = list(items[start:stop]) + list(items[b + start * k : b + stop * k])
        else:
            raise ValueError(f"input {role!r} has {len(items)} items, not a multiple of the batch size {b}")
    labels = None if batch.labels is None else batch.labels[start:stop]
    return Batch(inputs=inputs, labels=labels, indices=batch.indices[start:stop])


@torch.no_grad()
def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks in place (one all-reduce per dtype and device); what DDP does.

    Parameters without a gradient on this rank contribute zeros (so every rank joins every collective).
    """
    if not is_distributed():
        return
    _, size = world()
    params = [p for p in parameters if p.requires_grad]
    groups: dict[tuple[torch.dtype, torch.device], list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    for (dtype, device), group in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= size
        offset = 0
        for p in group:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (identical start, as DDP does)."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def init_from_env(device_type: str = "cpu") -> bool:
    """Initialise the default process group from torchrun's environment (``WORLD_SIZE`` > 1).

    Backend: nccl for CUDA, gloo otherwise. Returns True when a multi-process group is active. Does
    nothing when a group is already initialised or when not launched by torchrun.
    """
    if dist.is_available() and dist.is_initialized():
        return is_distributed()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=dt.timedelta(minutes=30))
    return True


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()




def launch(device: torch.device) -> torch.device:
    """Join torchrun's process group (if launched by it) and return this rank's device.

    CUDA ranks use ``cuda:LOCAL_RANK``; other devices are returned unchanged.
    """
    if init_from_env(device.type) and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def from_rank_zero(fn):
    """``fn()`` run on rank 0 only, its result (or exception) broadcast to every rank.

    For decisions every rank must share and only one may take (a run directory named by the clock).
    """
    if not is_distributed():
        return fn()
    rank, _ = world()
    payload: list = [None]
    if rank == 0:
        try:
            payload = [("ok", fn())]
        except Exception as exc:  # noqa: BLE001 -- re-raised on every rank
            payload = [("error", exc)]
    dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise value
    return value


__all__ = ["all_reduce_sum", "average_gradients", "barrier", "broadcast_module", "from_rank_zero", "gather",
           "gather_with_grad", "init_from_env", "is_distributed", "launch", "mean_over_ranks", "shard_batch", "world"]
