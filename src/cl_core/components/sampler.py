"""The Sampler interface: draws batches of positives (and negatives) from a data source."""

from __future__ import annotations

import abc
from collections.abc import Iterator

import torch

from ..types import Batch
from .data import DataSource


class Sampler(abc.ABC):
    """Yields training batches from a :class:`DataSource`.

    The order of batches must be a function of ``generator``'s state alone, so a run resumed at
    ``start`` (batches already consumed this epoch) sees exactly the batches it would have seen.

    Under ``torchrun`` every rank draws the same global batch and the trainer keeps the rank's share of it, unless
    the sampler is ``rank_local``: then each rank's :meth:`batches` yields only that rank's share itself (a streaming
    sampler whose ranks read different shards, ``datasets.stream``), the union over ranks being the global batch.
    """

    #: :meth:`batches` yields this rank's share of each global batch (see the class docstring)
    rank_local: bool = False

    @abc.abstractmethod
    def num_batches(self, source: DataSource) -> int:
        """Batches per epoch; raises :class:`~cl_core.errors.DataError` when the source is too small."""

    @abc.abstractmethod
    def batches(self, source: DataSource, *, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        """Batches of one epoch, skipping the first ``start``."""

    def input_roles(self, source: DataSource) -> tuple[str, ...]:
        """The keys of ``Batch.inputs`` that :meth:`batches` yields from ``source``: the encoder roles that get
        raw items. Default: the source's ``fields`` (samplers that pass examples through); a sampler that
        builds its own inputs (e.g. sentence pairs) names them. Empty means unknown (nothing is checked)."""
        return tuple(source.fields)
