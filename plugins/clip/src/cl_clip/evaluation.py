"""Helpers shared by the evaluators: which splits to evaluate, role checks, and embedding a split."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_core.api import DataError, DataSource, Dataset

#: Examples fetched from a data source at once (bounds the raw items held in memory).
FETCH_CHUNK = 4096


def check_roles(encoders: Mapping[str, Any], roles: Iterable[str], component: str) -> None:
    """Raise ValueError when a role is not one of the pipeline's encoder roles (checked at build time)."""
    if not encoders:
        return  # built without encoders (e.g. a standalone evaluator in a notebook): checked later
    for role in roles:
        if role not in encoders:
            raise ValueError(f"{component}: no encoder for role {role!r}; the spec's roles are {', '.join(encoders)}")


def select_splits(dataset: Dataset, requested: Sequence[str] | None) -> list[tuple[str, DataSource]]:
    """``(name, source)`` of the requested splits, or of every split except ``"train"``.

    Raises:
        DataError: a requested split does not exist.
    """
    splits = dataset.splits()
    if requested is None:
        return [(name, src) for name, src in splits.items() if name != "train"]
    missing = [name for name in requested if name not in splits]
    if missing:
        raise DataError(f"split(s) {', '.join(missing)} not found; the dataset has {', '.join(splits)}")
    return [(name, splits[name]) for name in requested]


def field_items(source: DataSource, field: str, indices: Sequence[int]) -> list[Any]:
    """Raw items of one field; DataError when the source lacks the field."""
    if source.fields and field not in source.fields:
        raise DataError(f"the data has no field {field!r}; its fields are {', '.join(source.fields)}")
    got = source.get(list(indices))
    if field not in got:
        raise DataError(f"the data has no field {field!r}; it returned {', '.join(got)}")
    return list(got[field])


def embed_field(pipeline: Any, role: str, source: DataSource, field: str, batch_size: int) -> Tensor:
    """L2-normalised embeddings ``[len(source), N]`` (CPU, float32) of one field of every example."""
    chunks = []
    for start in range(0, len(source), FETCH_CHUNK):
        items = field_items(source, field, range(start, min(start + FETCH_CHUNK, len(source))))
        chunks.append(pipeline.embed(role, items, batch_size=batch_size))
    return F.normalize(torch.cat(chunks).float(), dim=-1)


def logit_scale(pipeline: Any, query_role: str, candidate_role: str, default: float = 100.0) -> float:
    """The logit scale of the scorer that scored these roles in training, when it has one (``core.cosine``),
    else CLIP's 100; for probabilities."""
    scorer = pipeline.scorer_for(query_role, candidate_role)
    return float((scorer.logged_scalars() if scorer is not None else {}).get("logit_scale", default))
