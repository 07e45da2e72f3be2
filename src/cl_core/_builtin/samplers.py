"""Built-in samplers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..components import DataSource, Sampler
from ..errors import DataError
from ..types import Batch
from .params import InBatchParams


class InBatchSampler(Sampler):
    """Shuffled batches of positive pairs; every other row of a batch is a negative (CLIP, SimCLR).

    With ``no_duplicate_labels`` each batch holds at most one example per label: examples are taken
    in shuffled order and an example whose label is already in the current batch waits for a later one.

    With ``mix`` set and a source that has ``groups`` (several datasets in one), every batch comes from one
    group, as sentence-transformers batches multi-dataset training, so in-batch negatives are of the same
    kind as the positive. ``"round-robin"``: groups take turns and the epoch ends when the smallest group
    runs out of batches; ``"proportional"``: every batch of every group, in an order drawn so each group
    appears in proportion to its size.
    """

    def __init__(self, batch_size: int, drop_last: bool = True, no_duplicate_labels: bool = False,
                 mix: str = "none"):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if mix not in ("none", "round-robin", "proportional"):
            raise ValueError(f"mix must be 'none', 'round-robin' or 'proportional', got {mix!r}")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.no_duplicate_labels = no_duplicate_labels
        self.mix = mix

    def _groups(self, source: DataSource) -> list[list[int]] | None:
        """Example indices of each group (``mix`` on and the source grouped), else None."""
        if self.mix == "none":
            return None
        groups = getattr(source, "groups", None)
        if groups is None:
            raise DataError(f"sampler.mix = '{self.mix}' needs a data source made of several groups (datasets); "
                            "this one has none: set mix = 'none'")
        groups = np.asarray(groups)
        return [np.flatnonzero(groups == g).tolist() for g in np.unique(groups)]

    def _count(self, n: int) -> int:
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def num_batches(self, source: DataSource) -> int:
        n = len(source)
        if n == 0:
            raise DataError("the training split is empty")
        groups = self._groups(source)
        sizes = [len(g) for g in groups] if groups is not None else [n]
        if self.drop_last and min(sizes) < self.batch_size:
            where = "the training split"
            if groups is not None:
                smallest = int(np.asarray(source.groups)[groups[int(np.argmin(sizes))][0]])
                names = source.group_names
                where = f"group '{names[smallest] if names is not None else smallest}'"
            raise DataError(
                f"{where} has {min(sizes)} examples, fewer than batch_size = {self.batch_size}; "
                f"lower sampler.batch_size or set sampler.drop_last = false"
            )
        counts = [self._count(size) for size in sizes]
        if groups is not None and self.mix == "round-robin":
            return len(counts) * min(counts)
        return sum(counts)

    def _batches_of(self, order: list[int], labels: np.ndarray | None) -> list[list[int]]:
        if not self.no_duplicate_labels or labels is None:
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        else:
            batches, open_batches = [], []  # open_batches: (indices, labels) still filling
            for index in order:
                label = int(labels[index])
                for members, seen in open_batches:
                    if label not in seen:
                        members.append(index)
                        seen.add(label)
                        break
                else:
                    open_batches.append(([index], {label}))
                full = [b for b in open_batches if len(b[0]) == self.batch_size]
                batches.extend(b[0] for b in full)
                open_batches = [b for b in open_batches if len(b[0]) < self.batch_size]
            batches.extend(b[0] for b in open_batches)
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def _index_batches(self, source: DataSource, generator: torch.Generator) -> list[list[int]]:
        order = torch.randperm(len(source), generator=generator).tolist()
        groups = self._groups(source)
        if groups is None:
            return self._batches_of(order, source.labels)
        group_of = np.asarray(source.groups)
        per_group: dict[int, list[int]] = {}
        for index in order:  # each group's members in the epoch's shuffled order
            per_group.setdefault(int(group_of[index]), []).append(index)
        lists = [self._batches_of(per_group[g], source.labels) for g in sorted(per_group)]
        if self.mix == "round-robin":
            rounds = min(len(b) for b in lists)
            return [lists[g][r] for r in range(rounds) for g in range(len(lists))]
        turns = torch.cat([torch.full((len(b),), g) for g, b in enumerate(lists)])
        turns = turns[torch.randperm(len(turns), generator=generator)].tolist()
        taken = [0] * len(lists)
        out = []
        for g in turns:
            out.append(lists[g][taken[g]])
            taken[g] += 1
        return out

    def batches(self, source: DataSource, *, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        self.num_batches(source)  # raises DataError on a source that is too small
        for indices in self._index_batches(source, generator)[start:]:
            inputs = source.get(indices)
            labels = None
            if source.labels is not None:
                labels = torch.as_tensor(source.labels[indices], dtype=torch.long)
            yield Batch(inputs=inputs, labels=labels, indices=torch.tensor(indices, dtype=torch.long))


def build_in_batch(params: InBatchParams, ctx) -> InBatchSampler:
    return InBatchSampler(params.batch_size, params.drop_last, params.no_duplicate_labels, params.mix)
