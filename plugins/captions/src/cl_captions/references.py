"""What a caption is scored against: the references of each example of a split (torch-free).

A data split (:class:`cl_core.api.DataSource`) gives, per example, its raw fields, and may give ``labels``,
``class_names`` and ``class_descriptions``. An example's references are (``references`` of ``captions.metrics``):

* ``"text"``: every distinct value of the text field among the split's examples with the example's label (all
  the captions of its concept); without labels, the example's own text;
* ``"name"``: its class name (``class_names[label]``);
* ``"descriptions"``: its class descriptions (``class_descriptions[label]``).

Kinds a split cannot give are skipped; repeats and blank texts are removed, order kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cl_core.api import DataError, DataSource

#: Examples fetched from a data source at once (bounds the raw items held in memory).
FETCH_CHUNK = 2048


def fetch(source: DataSource, fields: Sequence[str], indices: Sequence[int]) -> dict[str, list[Any]]:
    """The given fields of the examples at ``indices``, fetched in chunks.

    Raises:
        DataError: the source lacks one of the fields.
    """
    out: dict[str, list[Any]] = {f: [] for f in fields}
    for start in range(0, len(indices), FETCH_CHUNK):
        got = source.get(list(indices[start : start + FETCH_CHUNK]))
        for f in fields:
            if f not in got:
                raise DataError(f"the data has no field {f!r}; it gives {', '.join(got)}")
            out[f] += list(got[f])
    return out


def has_field(source: DataSource, field: str) -> bool:
    """Whether ``source`` declares ``field`` (a source that declares no fields is asked)."""
    if source.fields:
        return field in source.fields
    return len(source) > 0 and field in source.get([0])


def labels_of(source: DataSource) -> np.ndarray | None:
    """``[len]`` int64 labels of the split, or None."""
    if source.labels is None:
        return None
    labels = np.asarray(source.labels, dtype=np.int64)
    if labels.shape != (len(source),):
        raise DataError(f"the split has {len(source)} examples but labels of shape {list(labels.shape)}")
    return labels


def class_names_of(source: DataSource, indices: Sequence[int]) -> list[str] | None:
    """The class name of each example at ``indices``, or None when the split has no labels or class names."""
    labels = labels_of(source)
    if labels is None or source.class_names is None:
        return None
    names = source.class_names
    chosen = labels[list(indices)]
    if chosen.size and (chosen.min() < 0 or chosen.max() >= len(names)):
        raise DataError(f"labels outside 0..{len(names) - 1} (the split's class_names)")
    return [str(names[int(c)]) for c in chosen]


def references(source: DataSource, indices: Sequence[int], kinds: Sequence[str], text_field: str,
               texts: Sequence[str] | None = None) -> list[list[str]]:
    """The references of each example at ``indices`` (module rules).

    Args:
        source: the split.
        indices: examples to give references for.
        kinds: any of ``"text"``, ``"name"``, ``"descriptions"``, in the order they are listed.
        text_field: the field of reference captions.
        texts: the text field of *every* example of the split, when the caller fetched it already.
    """
    labels = labels_of(source)
    by_label: dict[int, list[str]] = {}
    own: list[str] | None = None
    if "text" in kinds and has_field(source, text_field):
        if labels is None:
            own = [str(t) for t in (fetch(source, [text_field], indices)[text_field] if texts is None
                                    else [texts[i] for i in indices])]
        else:
            wanted = set(labels[list(indices)].tolist())
            every = texts if texts is not None else fetch(source, [text_field], range(len(source)))[text_field]
            for label, text in zip(labels.tolist(), every):
                if label in wanted:
                    by_label.setdefault(label, []).append(str(text))
    names = class_names_of(source, indices) if "name" in kinds else None
    described = labels is not None and source.class_descriptions is not None and "descriptions" in kinds
    out = []
    for row, index in enumerate(indices):
        refs: list[str] = []
        for kind in kinds:
            if kind == "text" and own is not None:
                refs.append(own[row])
            elif kind == "text" and labels is not None:
                refs += by_label.get(int(labels[index]), [])
            elif kind == "name" and names is not None:
                refs.append(names[row])
            elif kind == "descriptions" and described:
                assert labels is not None and source.class_descriptions is not None
                refs += [str(d) for d in source.class_descriptions[int(labels[index])]]
        out.append(list(dict.fromkeys(r for r in refs if r.strip())))
    return out
