"""Data sources and datasets: what samplers draw from and evaluators measure on."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class DataSource(abc.ABC):
    """A finite, indexable split of examples, each a dict of field -> raw item.

    Attributes:
        fields: names of the fields each example has (e.g. ``("image", "text")``).
        labels: ``[len]`` int64 concept labels, or None.
        class_names: label -> human-readable class name (for zero-shot), or None.
        class_descriptions: label -> further texts that describe the class (synonyms, keywords, its
            category), or None. Zero-shot classifiers may embed them next to the name (class
            descriptions as in Menon & Vondrick, 2023, "Visual Classification via Description from Large
            Language Models"). When set, it has one entry per class name; an entry may be empty.
        groups: ``[len]`` int64 index of the dataset each example comes from, when the source joins several
            (samplers with ``mix`` keep each batch within one group), or None.
        group_names: group index -> dataset name, or None.
    """

    fields: tuple[str, ...] = ()
    labels: np.ndarray | None = None
    class_names: Sequence[str] | None = None
    class_descriptions: Sequence[Sequence[str]] | None = None
    groups: np.ndarray | None = None
    group_names: Sequence[str] | None = None

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        """Field -> list of raw items for the given example indices."""


class Dataset(abc.ABC):
    """A dataset: named splits. ``"train"`` is trained on; the others are evaluation splits."""

    @abc.abstractmethod
    def splits(self) -> Mapping[str, DataSource]: ...

    def describe(self) -> str:
        """One line per split for logs and the model card."""
        return "; ".join(f"{name}: {len(src)} examples" for name, src in self.splits().items())
