"""Memory-bounded log-sum-exp of a score matrix that is never held whole.

For scores ``S = s * A @ B^T`` (``A`` [R, M] rows, ``B`` [C, M] columns, scalar scale ``s``) this computes

    row_sum = sum_i logsumexp_j S_ij            (over every column)
    col_sum = sum_{j < n_col} logsumexp_i S_ij  (over every row; optional)

block by block: a block of rows of ``S`` (``[T, C]``, T chosen from a memory budget) is formed, reduced
and dropped. Backward recomputes each block (the FlashAttention idea, Dao et al. 2022; the chunked
contrastive losses of GradCache / open_clip's chunked SigLIP) and accumulates

    dL/dS = g_row * softmax_rows(S) + g_col * softmax_cols(S)
    dA = s * dL/dS @ B,   dB = s * dL/dS^T @ A,   ds = sum_ij dL/dS_ij * (A B^T)_ij

so memory is O(T * C + (R + C) * M) instead of O(R * C). With only the row term the gradients are
formed in the forward pass (each row block's softmax is final as soon as the block is scored), so the
backward pass is free: 3 block matmuls in all, as many as the direct form. The symmetric form needs the
column log-sum-exps of every row first, hence 4.

Label-aware masking: entries with ``row_labels[i] == col_labels[j]`` (``j`` < number of labelled
columns) and ``j != positive[i]`` are excluded (``-inf``) from both sums: duplicates of a positive are
not negatives.
"""

from __future__ import annotations

import torch
from torch import Tensor


def block_rows(num_columns: int, element_size: int, budget_mb: float) -> int:
    """Rows per block so that one ``[T, num_columns]`` block takes about ``budget_mb`` MiB (at least 1)."""
    return max(1, int(budget_mb * 2**20) // max(1, num_columns * element_size))


def _scores_block(a: Tensor, bt: Tensor, s, start: int, stop: int, positive: Tensor, row_labels: Tensor | None,
                  col_labels: Tensor | None) -> Tensor:
    """Scaled scores of rows ``start:stop`` against every column, excluded entries at -inf (recomputed
    identically in forward and backward)."""
    block = torch.mm(a[start:stop], bt).mul_(s)
    excluded = _exclusion(start, stop, positive, row_labels, col_labels, bt.shape[1])
    if excluded is not None:
        block.masked_fill_(excluded, float("-inf"))
    return block


def _exclusion(start: int, stop: int, positive: Tensor, row_labels: Tensor | None, col_labels: Tensor | None,
               num_columns: int) -> Tensor | None:
    """``[T, C]`` bool: same label, labelled column, not the row's own positive."""
    if row_labels is None or col_labels is None:
        return None
    labelled = col_labels.shape[0]
    same = row_labels[start:stop, None] == col_labels[None, :]
    cols = torch.arange(labelled, device=same.device)
    same &= cols[None, :] != positive[start:stop, None]
    if labelled < num_columns:
        pad = torch.zeros(stop - start, num_columns - labelled, dtype=torch.bool, device=same.device)
        same = torch.cat([same, pad], dim=1)
    return same


class TiledLogSumExp(torch.autograd.Function):
    """``(row_sum, col_sum)`` of ``S = s * A @ B^T`` without the whole ``S``; see the module docstring."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, scale: Tensor | None, positive: Tensor, row_labels: Tensor | None,
                col_labels: Tensor | None, n_col: int, rows_per_block: int):
        s = 1.0 if scale is None else scale.detach().to(a.dtype)
        R = a.shape[0]
        row_lse = torch.empty(R, dtype=a.dtype, device=a.device)
        col_lse = torch.full((n_col,), float("-inf"), dtype=a.dtype, device=a.device) if n_col else None
        eager = n_col == 0 and any(ctx.needs_input_grad[:3])
        grads = [torch.zeros_like(a), torch.zeros_like(b), torch.zeros((), dtype=a.dtype, device=a.device)] \
            if eager else None
        bt = b.t()
        for start in range(0, R, rows_per_block):
            stop = min(R, start + rows_per_block)
            block = _scores_block(a, bt, s, start, stop, positive, row_labels, col_labels)
            lse = torch.logsumexp(block, dim=1)
            row_lse[start:stop] = lse
            if n_col:
                col_lse = torch.logaddexp(col_lse, torch.logsumexp(block[:, :n_col], dim=0))
            if eager:
                p = block.sub_(lse[:, None]).exp_()
                pb = torch.mm(p, b)
                grads[0][start:stop] = pb.mul(s)
                grads[1].addmm_(p.t(), a[start:stop], alpha=s)
                grads[2] += (pb * a[start:stop]).sum()
        ctx.shape_info = (n_col, rows_per_block, s)
        ctx.eager = eager
        if eager:
            ctx.save_for_backward(*grads)
        else:
            ctx.save_for_backward(a, b, row_lse, col_lse if n_col else row_lse.new_empty(0), positive,
                                  row_labels if row_labels is not None else positive.new_empty(0),
                                  col_labels if col_labels is not None else positive.new_empty(0))
            ctx.has_labels = row_labels is not None and col_labels is not None
        col_sum = col_lse.sum() if n_col else row_lse.new_zeros(())
        return row_lse.sum(), col_sum

    @staticmethod
    def backward(ctx, g_row: Tensor, g_col: Tensor):
        with torch.autocast(g_row.device.type, enabled=False):
            return TiledLogSumExp._backward(ctx, g_row, g_col)

    @staticmethod
    def _backward(ctx, g_row: Tensor, g_col: Tensor):
        n_col, rows_per_block, s = ctx.shape_info
        needs_scale = ctx.needs_input_grad[2]
        if ctx.eager:
            da, db, ds = ctx.saved_tensors
            return (g_row * da, g_row * db, (g_row * ds) if needs_scale else None,
                    None, None, None, None, None)
        a, b, row_lse, col_lse, positive, row_labels, col_labels = ctx.saved_tensors
        if not ctx.has_labels:
            row_labels = col_labels = None
        R = a.shape[0]
        da, db = torch.empty_like(a), torch.zeros_like(b)
        ds = torch.zeros((), dtype=a.dtype, device=a.device)
        gr, gc = g_row.to(a.dtype), g_col.to(a.dtype)
        bt = b.t()
        for start in range(0, R, rows_per_block):
            stop = min(R, start + rows_per_block)
            block = _scores_block(a, bt, s, start, stop, positive, row_labels, col_labels)
            if n_col:
                grad_block = torch.sub(block, row_lse[start:stop, None]).exp_().mul_(gr)
                grad_block[:, :n_col].add_(block[:, :n_col].sub_(col_lse[None, :]).exp_(), alpha=float(gc))
            else:
                grad_block = block.sub_(row_lse[start:stop, None]).exp_().mul_(gr)
            gb = torch.mm(grad_block, b)
            da[start:stop] = gb.mul(s)
            db.addmm_(grad_block.t(), a[start:stop], alpha=s)
            if needs_scale:
                ds += (gb * a[start:stop]).sum()
        return da, db, ds if needs_scale else None, None, None, None, None, None


def tiled_logsumexp(a: Tensor, b: Tensor, scale: Tensor | None, positive: Tensor, *,
                    row_labels: Tensor | None = None, col_labels: Tensor | None = None, n_col: int = 0,
                    budget_mb: float = 64.0) -> tuple[Tensor, Tensor]:
    """``(sum_i logsumexp_j S_ij, sum_{j<n_col} logsumexp_i S_ij)`` of ``S = scale * a @ b.T``.

    Args:
        a: ``[R, M]`` row features; b: ``[C, M]`` column features (same floating dtype; half precision is
            computed in float32).
        scale: scalar tensor (may require grad) or None for 1.
        positive: ``[R]`` int64 column of each row's positive (never masked).
        row_labels, col_labels: ``[R]`` and ``[L]`` (L <= C) labels for label-aware masking, or None.
        n_col: number of leading columns whose log-sum-exp over rows is also wanted (0: row term only).
        budget_mb: memory of one block of scores.
    """
    dtype = torch.promote_types(a.dtype, torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    rows = block_rows(b.shape[0], a.element_size(), budget_mb)
    with torch.autocast(a.device.type, enabled=False):
        return TiledLogSumExp.apply(a, b, scale, positive, row_labels, col_labels, n_col, rows)
