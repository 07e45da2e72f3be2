"""Built-in scorers: dot, cosine, negative L1 / L2 / squared L2 distances, bilinear.

All share :class:`~cl_core._builtin.scale.ScaledScorer` (optional temperature / learnable clamped logit
scale). Energy ``F = -S``: for the distance scorers the energy is the (scaled) distance itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .params import BilinearParams, CosineParams, DotParams, NegL1Params, NegL2Params, NegSqL2Params, ScaleParams
from .scale import ScaledScorer


def squared_distances(queries: Tensor, candidates: Tensor) -> Tensor:
    """``||q_i - k_j||^2`` as ``[Q, C]`` by ``|q|^2 + |k|^2 - 2 q.k`` (one matmul, no [Q, C, N] tensor).

    Clamped at 0 (rounding can make the expansion slightly negative); the absolute error is about
    ``eps * (|q|^2 + |k|^2)`` (float32: 1e-7 relative to the squared norms).
    """
    q2 = queries.pow(2).sum(1, keepdim=True)
    k2 = candidates.pow(2).sum(1)
    return (q2 + k2 - 2.0 * (queries @ candidates.t())).clamp_min(0.0)


class _SafeSqrt(torch.autograd.Function):
    """``sqrt(x)`` for ``x >= 0`` whose derivative at 0 is 0 (the subgradient), not inf.

    At zero distance the squared distance also has zero gradient, so autograd's plain ``sqrt`` would give
    ``inf * 0 = NaN``; this is case 2 of the field cases (ST's batch-hard triplet bug, PML's LpDistance).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = x.sqrt()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        safe = torch.where(out > 0, out, torch.ones_like(out))
        return torch.where(out > 0, grad / (2 * safe), torch.zeros_like(grad))


def safe_sqrt(x: Tensor) -> Tensor:
    """Square root with a zero (finite) gradient at 0; see :class:`_SafeSqrt`."""
    return _SafeSqrt.apply(x)


CLOSE = 1e-2  # pairs with |q - k|^2 <= CLOSE * (|q|^2 + |k|^2) are recomputed from differences
CLOSE_BUDGET = 2**24  # elements of the [pairs, N] differences recomputed by index; more: exact cdist


def euclidean_distances(queries: Tensor, candidates: Tensor) -> Tensor:
    """``||q_i - k_j||`` ``[Q, C]``: fast, accurate near zero, finite gradient at zero.

    Far pairs use the one-matmul expansion (:func:`squared_distances`); its cancellation error
    ``~eps * (|q|^2 + |k|^2)`` would dominate close pairs (a query next to its key: float32 distances off by
    ~3e-4 |q|, gradients by as much), so pairs closer than ``sqrt(CLOSE)`` of their norms are recomputed
    from the differences ``q_i - k_j``. The derivative of the square root at 0 is taken as 0 (case 2).
    """
    q2 = queries.pow(2).sum(1, keepdim=True)
    k2 = candidates.pow(2).sum(1)
    d2 = (q2 + k2 - 2.0 * (queries @ candidates.t())).clamp_min(0.0)
    distances = safe_sqrt(d2)
    with torch.no_grad():
        close = d2 <= CLOSE * (q2 + k2)
        count = int(close.sum())
    if count == 0:
        return distances
    if count * queries.shape[1] > CLOSE_BUDGET:  # many close pairs (collapsed embeddings): exact everywhere
        return torch.cdist(queries, candidates, compute_mode="donot_use_mm_for_euclid_dist")
    i, j = close.nonzero(as_tuple=True)
    exact = safe_sqrt((queries[i] - candidates[j]).pow(2).sum(1))
    return distances.index_put((i, j), exact)


class DotScorer(ScaledScorer):
    """``S(q, k) = s * q . k``."""

    factorizable = True

    def _raw(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return queries @ candidates.t()

    def _factorize(self, queries, candidates):
        return queries, candidates


class CosineScorer(ScaledScorer):
    """``S(q, k) = s * cos(q, k)`` (CLIP: learnable s from 1/0.07, clamped to at most 100)."""

    factorizable = True

    def __init__(self, temperature: float | None = 0.07, learn_temperature: bool = True,
                 max_logit_scale: float = 100.0):
        super().__init__(temperature, learn_temperature, max_logit_scale)

    def _raw(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).t()

    def _factorize(self, queries, candidates):
        return F.normalize(queries, dim=-1), F.normalize(candidates, dim=-1)


class NegL1Scorer(ScaledScorer):
    """``S(q, k) = -s * ||q - k||_1`` (Manhattan; gradient sign(q - k), 0 where equal)."""

    def _raw(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return -torch.cdist(queries, candidates, p=1.0)


class NegL2Scorer(ScaledScorer):
    """``S(q, k) = -s * ||q - k||_2``; accurate near zero, gradient 0 at zero distance (finite), see
    :func:`euclidean_distances`."""

    def _raw(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return -euclidean_distances(queries, candidates)


class NegSqL2Scorer(ScaledScorer):
    """``S(q, k) = -s * ||q - k||_2^2`` (the energy of a Gaussian model; no square root)."""

    def _raw(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return -squared_distances(queries, candidates)


class BilinearScorer(ScaledScorer):
    """``S(q, k) = s * q^T A k`` with a learnable ``A`` (CPC's log-bilinear critic, van den Oord et al. 2018).

    Args:
        dim: embedding width N.
        rank: None for a full ``A`` [N, N] initialised to the identity; r for ``A = U V^T`` with
            ``U, V`` [N, r] both initialised to one random orthonormal basis (A starts as a projection).

    Raises:
        ValueError: dim <= 0, or rank not in [1, dim].
    """

    factorizable = True

    def __init__(self, dim: int, rank: int | None = None, temperature: float | None = None,
                 learn_temperature: bool = False, max_logit_scale: float = 100.0):
        super().__init__(temperature, learn_temperature, max_logit_scale)
        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        if rank is not None and not 1 <= rank <= dim:
            raise ValueError(f"rank must be in [1, dim = {dim}], got {rank}")
        self.dim, self.rank = dim, rank
        if rank is None:
            self.weight = nn.Parameter(torch.eye(dim))
        else:
            basis = torch.linalg.qr(torch.randn(dim, rank))[0]
            self.u = nn.Parameter(basis.clone())
            self.v = nn.Parameter(basis.clone())

    def _project(self, queries: Tensor) -> Tensor:
        """``q^T A`` as ``[Q, N]`` (full) or ``[Q, r]`` (low rank, paired with ``k V``)."""
        if self.rank is None:
            return queries @ self.weight.to(queries.dtype)
        return queries @ self.u.to(queries.dtype)

    def _keys(self, candidates: Tensor) -> Tensor:
        return candidates if self.rank is None else candidates @ self.v.to(candidates.dtype)

    def _raw(self, queries: Tensor, candidates: Tensor) -> Tensor:
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries must have width dim = {self.dim}, got shape {list(queries.shape)}")
        return self._project(queries) @ self._keys(candidates).t()

    def _factorize(self, queries, candidates):
        return self._project(queries), self._keys(candidates)


def _scale_args(params: ScaleParams) -> dict:
    return {"temperature": params.temperature, "learn_temperature": params.learn_temperature,
            "max_logit_scale": params.max_logit_scale}


def build_cosine(params: CosineParams, ctx) -> CosineScorer:
    return CosineScorer(**_scale_args(params))


def build_dot(params: DotParams, ctx) -> DotScorer:
    return DotScorer(**_scale_args(params))


def build_neg_l1(params: NegL1Params, ctx) -> NegL1Scorer:
    return NegL1Scorer(**_scale_args(params))


def build_neg_l2(params: NegL2Params, ctx) -> NegL2Scorer:
    return NegL2Scorer(**_scale_args(params))


def build_neg_sq_l2(params: NegSqL2Params, ctx) -> NegSqL2Scorer:
    return NegSqL2Scorer(**_scale_args(params))


def build_bilinear(params: BilinearParams, ctx) -> BilinearScorer:
    dim = params.dim
    if dim is None:
        encoders = list(getattr(ctx, "encoders", {}).values())
        if not encoders:
            raise ValueError("core.bilinear needs its width: set scorer.dim (no encoder is built yet)")
        dim = int(encoders[0].embed_dim)
    return BilinearScorer(dim, params.rank, **_scale_args(params))


__all__ = ["BilinearScorer", "CosineScorer", "DotScorer", "NegL1Scorer", "NegL2Scorer", "NegSqL2Scorer",
           "euclidean_distances", "safe_sqrt", "squared_distances"]
