"""``core.hard-negatives``: in-batch pairs plus mined hard negatives on the candidate side.

Mining (the idea of ANCE, Xiong et al. 2021, and sentence-transformers' ``mine_hard_negatives``): score
every example against every other with a scorer over one vector per example, drop the example itself,
same-label examples and the ``skip_top`` most similar (likely unlabelled duplicates: false negatives), and
keep the next ``pool`` as the example's pool. Each batch then draws ``num_negatives`` per query from its
pool (with the epoch's generator, so batches stay a function of the generator alone).

Vectors come from the source's ``embedding_field`` (e.g. precomputed embeddings), read once, or from a call
to :meth:`HardNegativesSampler.mine` (e.g. with embeddings of the current model; call it between epochs).

Batch layout: every input role has the B rows of the batch, except ``candidate_field``, which has the B
rows followed by ``B * num_negatives`` mined candidates, row ``i``'s at ``B + i * k ... B + i * k + k - 1``.
InfoNCE-family losses treat candidates past the first B as negatives of every query.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..components import DataSource, Sampler
from ..errors import DataError
from ..types import Batch
from .params import HardNegativesParams
from .samplers import InBatchSampler

SCORERS = ("cosine", "dot", "neg-l2")


def _score(kind: str, a: Tensor, b: Tensor) -> Tensor:
    if kind == "cosine":
        return F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()
    if kind == "dot":
        return a @ b.t()
    return -torch.cdist(a, b)


class HardNegativesSampler(Sampler):
    """In-batch pairs with ``num_negatives`` mined candidates per query; see the module docstring.

    Raises:
        ValueError: bad sizes, ``pool < num_negatives``, or an unknown scorer.
        DataError (at use): no vectors to mine from, an unknown field, or too few candidates for a pool.
    """

    def __init__(self, batch_size: int = 256, drop_last: bool = True, num_negatives: int = 1,
                 embedding_field: str = "embedding", candidate_field: str = "", scorer: str = "cosine",
                 skip_top: int = 0, pool: int = 10, exclude_same_label: bool = True):
        if num_negatives <= 0:
            raise ValueError(f"num_negatives must be > 0, got {num_negatives}")
        if pool < num_negatives:
            raise ValueError(f"pool = {pool} must be >= num_negatives = {num_negatives}")
        if skip_top < 0:
            raise ValueError(f"skip_top must be >= 0, got {skip_top}")
        if scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
        self.in_batch = InBatchSampler(batch_size, drop_last)
        self.num_negatives, self.embedding_field, self.candidate_field = num_negatives, embedding_field, candidate_field
        self.scorer, self.skip_top, self.pool, self.exclude_same_label = scorer, skip_top, pool, exclude_same_label
        self.pools: Tensor | None = None  # [n, pool] int64, -1 where no candidate

    @torch.no_grad()
    def mine(self, vectors: Tensor, labels: Tensor | np.ndarray | None = None, *, block: int = 1024) -> Tensor:
        """Mine the pool ``[n, pool]`` of every example from ``vectors`` ``[n, N]`` (kept for later batches).

        Raises:
            DataError: an example has fewer than ``num_negatives`` eligible candidates.
        """
        vectors = torch.as_tensor(vectors).float()
        if vectors.dim() != 2 or vectors.shape[0] < 2:
            raise ValueError(f"vectors must have shape [examples >= 2, dim], got {list(vectors.shape)}")
        n = vectors.shape[0]
        labels_t = None if labels is None or not self.exclude_same_label else torch.as_tensor(np.asarray(labels))
        width = min(n, self.skip_top + self.pool)
        pools = torch.full((n, self.pool), -1, dtype=torch.long)
        for start in range(0, n, block):
            stop = min(n, start + block)
            scores = _score(self.scorer, vectors[start:stop], vectors)
            rows = torch.arange(stop - start)
            scores[rows, rows + start] = float("-inf")
            if labels_t is not None:
                scores.masked_fill_(labels_t[start:stop, None] == labels_t[None, :], float("-inf"))
            values, index = scores.topk(width, dim=1)
            index = torch.where(torch.isfinite(values), index, torch.full_like(index, -1))
            kept = index[:, self.skip_top :]
            pools[start:stop, : kept.shape[1]] = kept
        eligible = (pools >= 0).sum(1)
        if int(eligible.min()) < self.num_negatives:
            worst = int(eligible.argmin())
            raise DataError(f"example {worst} has only {int(eligible[worst])} eligible hard negatives (other "
                            f"label, past skip_top = {self.skip_top}); need num_negatives = {self.num_negatives}")
        self.pools = pools
        return pools

    def _fields(self, source: DataSource) -> str:
        fields = list(source.fields)
        field = self.candidate_field or next((f for f in reversed(fields) if f != self.embedding_field), "")
        if field not in fields:
            raise DataError(f"core.hard-negatives: candidate_field {field!r} is not a field of the source "
                            f"(fields: {', '.join(fields)})")
        return field

    def _ensure_pools(self, source: DataSource) -> Tensor:
        if self.pools is not None and self.pools.shape[0] == len(source):
            return self.pools
        if self.embedding_field not in source.fields:
            raise DataError(f"core.hard-negatives mines with the source field {self.embedding_field!r}, which this "
                            f"source does not have (fields: {', '.join(source.fields)}); set "
                            f"sampler.embedding_field, or call sampler.mine(vectors) first")
        vectors = []
        for start in range(0, len(source), 4096):
            items = source.get(list(range(start, min(len(source), start + 4096))))[self.embedding_field]
            vectors.append(torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in items])))
        return self.mine(torch.cat(vectors), source.labels)

    def num_batches(self, source: DataSource) -> int:
        return self.in_batch.num_batches(source)

    def _draw(self, pools: Tensor, rows: list[int], generator: torch.Generator) -> list[int]:
        """``num_negatives`` random members of each row's pool, row-major."""
        pool = pools[rows]
        keys = torch.rand(pool.shape, generator=generator).masked_fill(pool < 0, 2.0)
        picked = pool.gather(1, keys.argsort(dim=1)[:, : self.num_negatives])
        return picked.reshape(-1).tolist()

    def batches(self, source: DataSource, *, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        self.num_batches(source)
        field = self._fields(source)
        pools = self._ensure_pools(source)
        plan = [(rows, self._draw(pools, rows, generator)) for rows in self.in_batch._index_batches(source, generator)]
        for rows, negatives in plan[start:]:
            inputs = dict(source.get(rows))
            inputs[field] = list(inputs[field]) + list(source.get(negatives)[field])
            labels = None if source.labels is None else torch.as_tensor(np.asarray(source.labels)[rows],
                                                                         dtype=torch.long)
            yield Batch(inputs=inputs, labels=labels, indices=torch.tensor(rows, dtype=torch.long))


def candidate_role(spec) -> str:
    """The pipeline's candidate role: that of the first contrastive objective naming its roles, else the second
    encoder of the spec (the first when there is one)."""
    for ref in getattr(spec, "objective", ()):  # a spec without [[objective]] tables (or none at all)
        if ref.type == "core.contrastive" and ref.params.roles is not None:
            return ref.params.roles[1]
    roles = list(spec.encoders) if spec is not None else []
    return roles[1] if len(roles) > 1 else (roles[0] if roles else "")


def build_hard_negatives(params: HardNegativesParams, ctx) -> HardNegativesSampler:
    field = params.candidate_field or candidate_role(getattr(ctx, "spec", None))
    return HardNegativesSampler(params.batch_size, params.drop_last, params.num_negatives, params.embedding_field,
                                field, params.scorer, params.skip_top, params.pool, params.exclude_same_label)
