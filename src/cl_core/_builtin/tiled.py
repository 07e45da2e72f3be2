"""Memory-bounded cross-entropy of a score matrix that is never held whole.

For scores ``S = s * A @ B^T`` (``A`` [R, M] rows, ``B`` [C, M] columns, scalar scale ``s``) and the column
``p(i)`` of each row's positive this computes, in nats,

    row_sum = sum_i ( logsumexp_j S_ij - S_{i, p(i)} )                 (over every column)
    col_sum = sum_{j < n_col} ( logsumexp_i S_ij - S_{p^-1(j), j} )    (over every row; optional)

block by block: a block of rows of ``S`` (``[T, C]``, T chosen from a memory budget) is formed, reduced
and dropped. Backward recomputes each block (the FlashAttention idea, Dao et al. 2022; the chunked
contrastive losses of GradCache / open_clip's chunked SigLIP) and accumulates

    dL/dS = g_row * (softmax_rows(S) - P) + g_col * (softmax_cols(S) - P)     (P: the positives, one-hot)
    dA = s * dL/dS @ B,   dB = s * dL/dS^T @ A,   ds = sum_ij dL/dS_ij * (A B^T)_ij

so memory is O(T * C + (R + C) * M) instead of O(R * C). With only the row term the gradients are
formed in the forward pass (each row block's softmax is final as soon as the block is scored), so the
backward pass is free: 3 block matmuls in all, as many as the direct form. The symmetric form needs the
column log-sum-exps of every row first, hence 4.

Accuracy: each row's (and column's) term is formed on its own as ``softplus(x)`` with
``x = logsumexp_{j != p(i)} S_ij - S_{i, p(i)}`` (the negatives relative to the positive, the positive's
score taken from the same block), never as a difference of two large sums, and its gradient at the positive,
``softmax - 1 = -sigmoid(x)``, likewise; both keep float32's relative accuracy as the loss goes to 0.
Measured in float32 against float64 on 256-512 unit-vector pairs (tests/test_catalogue_losses.py): at a
loss of 3e-3 the value and ``d/d log s`` are within 4e-7 relative (``sum_i lse_i - sum_i S_ii``, the
former form: 5e-4 and 1e-4; the direct ``F.cross_entropy`` form: 1e-5 and 3e-5), at a loss of 1e-8 within
5e-6 (former form: 100% and 93x off, its rounding error of ~ulp(s) per row being the whole loss).

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


def _take_positives(block: Tensor, positive: Tensor) -> Tensor:
    """The positive score of each row of ``block`` ``[T]``; those entries are set to -inf in place (they
    leave the sums over negatives)."""
    rows = torch.arange(block.shape[0], device=block.device)
    pos = block[rows, positive]
    block[rows, positive] = float("-inf")
    return pos


def _relative_terms(off: Tensor, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """From ``off = logsumexp`` over the negatives and the positive score ``pos``: the cross-entropy
    ``softplus(off - pos)`` (= lse - pos, accurate near 0), the log-sum-exp shift ``pos + it`` of the
    softmax, and the gradient at the positive ``softmax - 1 = -sigmoid(off - pos)``."""
    x = off - pos
    term = torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))
    return term, pos + term, torch.sigmoid(x).neg_()


class TiledCrossEntropy(torch.autograd.Function):
    """``(row_sum, col_sum)`` of cross-entropies of ``S = s * A @ B^T`` without the whole ``S``; see the
    module docstring."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, scale: Tensor | None, positive: Tensor, row_labels: Tensor | None,
                col_labels: Tensor | None, n_col: int, rows_per_block: int):
        s = 1.0 if scale is None else scale.detach().to(a.dtype)
        alpha = float(s)  # one host read per call (addmm_'s alpha is a number)
        R = a.shape[0]
        pos = torch.empty(R, dtype=a.dtype, device=a.device)
        row_off = torch.empty(R, dtype=a.dtype, device=a.device)
        col_off = torch.full((n_col,), float("-inf"), dtype=a.dtype, device=a.device) if n_col else None
        eager = n_col == 0 and any(ctx.needs_input_grad[:3])
        grads = [torch.zeros_like(a), torch.zeros_like(b), torch.zeros((), dtype=a.dtype, device=a.device)] \
            if eager else None
        bt = b.t()
        for start in range(0, R, rows_per_block):
            stop = min(R, start + rows_per_block)
            block = _scores_block(a, bt, s, start, stop, positive, row_labels, col_labels)
            positive_block = positive[start:stop]
            pos[start:stop] = _take_positives(block, positive_block)
            row_off[start:stop] = torch.logsumexp(block, dim=1)
            if n_col:
                col_off = torch.logaddexp(col_off, torch.logsumexp(block[:, :n_col], dim=0))
            if eager:
                _, shift, at_positive = _relative_terms(row_off[start:stop], pos[start:stop])
                g = block.sub_(shift[:, None]).exp_()
                g[torch.arange(stop - start, device=g.device), positive_block] = at_positive
                gb = torch.mm(g, b)
                grads[0][start:stop] = gb.mul(s)
                grads[1].addmm_(g.t(), a[start:stop], alpha=alpha)
                grads[2] += (gb * a[start:stop]).sum()
        row_terms, row_shift, row_at_positive = _relative_terms(row_off, pos)
        if n_col:
            col_pos = pos[torch.argsort(positive)]  # column j's positive is row p^-1(j)
            col_terms, col_shift, col_at_positive = _relative_terms(col_off, col_pos)
        ctx.shape_info = (n_col, rows_per_block, s, alpha)
        ctx.eager = eager
        if eager:
            ctx.save_for_backward(*grads)
        else:
            empty = row_shift.new_empty(0)
            ctx.save_for_backward(a, b, row_shift, row_at_positive, col_shift if n_col else empty,
                                  col_at_positive if n_col else empty, positive,
                                  row_labels if row_labels is not None else positive.new_empty(0),
                                  col_labels if col_labels is not None else positive.new_empty(0))
            ctx.has_labels = row_labels is not None and col_labels is not None
        col_sum = col_terms.sum() if n_col else row_terms.new_zeros(())
        return row_terms.sum(), col_sum

    @staticmethod
    def backward(ctx, g_row: Tensor, g_col: Tensor):
        with torch.autocast(g_row.device.type, enabled=False):
            return TiledCrossEntropy._backward(ctx, g_row, g_col)

    @staticmethod
    def _backward(ctx, g_row: Tensor, g_col: Tensor):
        n_col, rows_per_block, s, alpha = ctx.shape_info
        needs_scale = ctx.needs_input_grad[2]
        if ctx.eager:
            da, db, ds = ctx.saved_tensors
            return (g_row * da, g_row * db, (g_row * ds) if needs_scale else None,
                    None, None, None, None, None)
        a, b, row_shift, row_at_positive, col_shift, col_at_positive, positive, row_labels, col_labels = \
            ctx.saved_tensors
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
            positive_block = positive[start:stop]
            _take_positives(block, positive_block)
            at_positive = row_at_positive[start:stop] * gr
            if n_col:
                grad_block = torch.sub(block, row_shift[start:stop, None]).exp_().mul_(gr)
                grad_block[:, :n_col].add_(block[:, :n_col].sub_(col_shift[None, :]).exp_(), alpha=float(gc))
                at_positive = at_positive + col_at_positive[positive_block] * gc
            else:
                grad_block = block.sub_(row_shift[start:stop, None]).exp_().mul_(gr)
            grad_block[torch.arange(stop - start, device=grad_block.device), positive_block] = at_positive
            gb = torch.mm(grad_block, b)
            da[start:stop] = gb.mul(s)
            db.addmm_(grad_block.t(), a[start:stop], alpha=alpha)
            if needs_scale:
                ds += (gb * a[start:stop]).sum()
        return da, db, ds if needs_scale else None, None, None, None, None, None


def tiled_cross_entropy(a: Tensor, b: Tensor, scale: Tensor | None, positive: Tensor, *,
                        row_labels: Tensor | None = None, col_labels: Tensor | None = None, n_col: int = 0,
                        budget_mb: float = 64.0) -> tuple[Tensor, Tensor]:
    """Summed cross-entropies (nats) of ``S = scale * a @ b.T``, rows and optionally the first columns.

    ``(sum_i [logsumexp_j S_ij - S_{i, positive_i}], sum_{j < n_col} [logsumexp_i S_ij - S_{p^-1(j), j}])``;
    the second is 0 when ``n_col`` is 0. Each term is formed relative to its positive (see the module
    docstring), so saturated batches keep their relative accuracy.

    Args:
        a: ``[R, M]`` row features; b: ``[C, M]`` column features (same floating dtype; half precision is
            computed in float32).
        scale: a tensor with one element, shape ``[]`` or ``[1]`` (may require grad; its gradient has its
            shape), or None for 1.
        positive: ``[R]`` int64 column of each row's positive (never masked).
        row_labels, col_labels: ``[R]`` and ``[L]`` (L <= C) labels for label-aware masking, or None.
        n_col: number of leading columns whose cross-entropy over rows is also wanted (0: rows only); when
            > 0, ``positive`` must be a permutation of ``0..n_col-1`` (so R == n_col).
        budget_mb: memory of one block of scores.

    Raises:
        ValueError: ``scale`` with more than one element, or ``n_col`` > 0 different from R.
    """
    if scale is not None and scale.dim() != 0:
        if scale.numel() != 1:
            raise ValueError(f"scale must have one element (shape [] or [1]), got shape {list(scale.shape)}")
        scale = scale.reshape(())
    if n_col and n_col != a.shape[0]:
        raise ValueError(f"n_col = {n_col} must equal the number of rows {a.shape[0]} (positive a permutation)")
    dtype = torch.promote_types(a.dtype, torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    rows = block_rows(b.shape[0], a.element_size(), budget_mb)
    with torch.autocast(a.device.type, enabled=False):
        return TiledCrossEntropy.apply(a, b, scale, positive, row_labels, col_labels, n_col, rows)
