"""``core.m-per-class``: batches of ``batch_size / m`` labels with ``m`` examples each, so every anchor of a
supervised loss (SupCon, triplet, contrastive with labels) has positives in its batch (the PML
MPerClassSampler / "PK sampling" of Hermans et al. 2017)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..components import DataSource, Sampler
from ..errors import DataError
from ..types import Batch
from .params import MPerClassParams


class MPerClassSampler(Sampler):
    """Each batch: ``batch_size / m`` distinct labels drawn uniformly, ``m`` examples of each.

    Each label's examples are visited in a shuffled order that is reshuffled when used up, so all examples
    of a label are seen before any repeats; a label with fewer than ``m`` examples repeats some (a batch
    may then hold the same example twice). An epoch is ``batches_per_epoch`` batches (default
    ``len(source) // batch_size``). The order is a function of the generator alone.

    Raises:
        ValueError: batch_size not a multiple of m, or a non-positive size.
        DataError (at use): an unlabelled source, fewer labels than ``batch_size / m``, or fewer examples
            than one batch.
    """

    def __init__(self, batch_size: int, m: int = 4, batches_per_epoch: int | None = None):
        if batch_size <= 0 or m <= 0:
            raise ValueError(f"batch_size and m must be > 0, got batch_size = {batch_size}, m = {m}")
        if batch_size % m:
            raise ValueError(f"batch_size = {batch_size} must be a multiple of m = {m}")
        if batches_per_epoch is not None and batches_per_epoch <= 0:
            raise ValueError(f"batches_per_epoch must be > 0, got {batches_per_epoch}")
        self.batch_size, self.m, self.batches_per_epoch = batch_size, m, batches_per_epoch

    def _classes(self, source: DataSource) -> list[np.ndarray]:
        if source.labels is None:
            raise DataError("core.m-per-class needs labelled examples; this source has no labels")
        labels = np.asarray(source.labels)
        classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        need = self.batch_size // self.m
        if len(classes) < need:
            raise DataError(f"core.m-per-class needs {need} labels per batch (batch_size {self.batch_size} / m "
                            f"{self.m}) but the source has {len(classes)}; lower batch_size or raise m")
        return classes

    def num_batches(self, source: DataSource) -> int:
        self._classes(source)
        if self.batches_per_epoch is not None:
            return self.batches_per_epoch
        n = len(source) // self.batch_size
        if n == 0:
            raise DataError(f"the training split has {len(source)} examples, fewer than batch_size = "
                            f"{self.batch_size}; lower sampler.batch_size or set batches_per_epoch")
        return n

    def _index_batches(self, source: DataSource, generator: torch.Generator) -> list[list[int]]:
        classes = self._classes(source)
        streams: list[list[int]] = [[] for _ in classes]
        positions = [0] * len(classes)

        def take(c: int) -> list[int]:
            """m examples of label c: the rest of its shuffled order, then a new order that starts with the
            examples not just taken (no repeat within a batch unless the label has fewer than m)."""
            out = streams[c][positions[c] : positions[c] + self.m]
            positions[c] += len(out)
            while len(out) < self.m:
                order = [int(classes[c][i]) for i in torch.randperm(len(classes[c]), generator=generator).tolist()]
                taken = set(out)
                streams[c] = [i for i in order if i not in taken] + [i for i in order if i in taken]
                more = streams[c][: self.m - len(out)]
                positions[c] = len(more)
                out += more
            return out

        batches = []
        for _ in range(self.num_batches(source)):
            chosen = torch.randperm(len(classes), generator=generator)[: self.batch_size // self.m].tolist()
            batches.append([i for c in chosen for i in take(c)])
        return batches

    def batches(self, source: DataSource, *, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        for indices in self._index_batches(source, generator)[start:]:
            yield Batch(inputs=source.get(indices),
                        labels=torch.as_tensor(np.asarray(source.labels)[indices], dtype=torch.long),
                        indices=torch.tensor(indices, dtype=torch.long))


def build_m_per_class(params: MPerClassParams, ctx) -> MPerClassSampler:
    return MPerClassSampler(params.batch_size, params.m, params.batches_per_epoch)
