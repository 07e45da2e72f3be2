"""Built-in samplers."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..components import DataSource, Sampler
from ..errors import DataError
from ..types import Batch
from .params import InBatchParams


class InBatchSampler(Sampler):
    """Shuffled batches of positive pairs; every other row of a batch is a negative (CLIP, SimCLR).

    With ``no_duplicate_labels`` each batch holds at most one example per label: examples are taken
    in shuffled order and an example whose label is already in the current batch waits for a later one.
    """

    def __init__(self, batch_size: int, drop_last: bool = True, no_duplicate_labels: bool = False):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.no_duplicate_labels = no_duplicate_labels

    def num_batches(self, source: DataSource) -> int:
        n = len(source)
        if n == 0:
            raise DataError("the training split is empty")
        if self.drop_last and n < self.batch_size:
            raise DataError(
                f"the training split has {n} examples, fewer than batch_size = {self.batch_size}; "
                f"lower sampler.batch_size or set sampler.drop_last = false"
            )
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _index_batches(self, source: DataSource, generator: torch.Generator) -> list[list[int]]:
        order = torch.randperm(len(source), generator=generator).tolist()
        if not self.no_duplicate_labels or source.labels is None:
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        else:
            batches, open_batches = [], []  # open_batches: (indices, labels) still filling
            for index in order:
                label = int(source.labels[index])
                for members, labels in open_batches:
                    if label not in labels:
                        members.append(index)
                        labels.add(label)
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

    def batches(self, source: DataSource, *, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        self.num_batches(source)  # raises DataError on a source that is too small
        for indices in self._index_batches(source, generator)[start:]:
            inputs = source.get(indices)
            labels = None
            if source.labels is not None:
                labels = torch.as_tensor(source.labels[indices], dtype=torch.long)
            yield Batch(inputs=inputs, labels=labels, indices=torch.tensor(indices, dtype=torch.long))


def build_in_batch(params: InBatchParams, ctx) -> InBatchSampler:
    return InBatchSampler(params.batch_size, params.drop_last, params.no_duplicate_labels)
