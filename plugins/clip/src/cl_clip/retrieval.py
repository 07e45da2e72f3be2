"""``clip.retrieval``: image->text and text->image retrieval as reported for CLIP (Radford et al., 2021).

Every image of a split queries the split's texts, and every text its images, by cosine similarity.
Reported per split (``K`` from ``ks``):

* ``retrieval/<split>/i2t@K``, ``t2i@K``: hit@K, the CLIP paper's and CLIP_benchmark's "recall@K": a
  query counts when **any** correct item is among its K best. With ``match = "label"`` every gallery
  item with the query's label is correct (a caption shared by two images, or two images of one concept,
  are not each other's negatives); with ``"pair"`` only the item of the same example. This is not IR
  recall (correct retrieved / all correct, torchmetrics' ``RetrievalRecall``): with 5 captions per image
  one right caption at rank 1 gives hit@1 = 1 but IR recall 0.2.
* ``i2t_mean_rank``, ``t2i_mean_rank``, ``i2t_median_rank``, ``t2i_median_rank``: rank of the best
  correct item (1 = first). Ties count against the model (see :mod:`cl_clip.ranking`).

A K >= the number of gallery items would be a hit for every query: it is left out, with a warning. A split
with fewer than 2 items, or (``match = "label"``) whose items all share one label, is skipped with a
warning: every item would be correct for every query. Warnings are
:class:`~cl_core.errors.EvaluationWarning` (one ``warning: ...`` line in the CLI).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from cl_core.api import Dataset, EvalContext, Evaluator, reportable_ks, warn_evaluation

from .evaluation import check_roles, embed_field, select_splits
from .params import RetrievalParams
from .ranking import hit_rate, ranks

#: Queries scored at once (bounds the [queries, gallery] score matrix).
QUERY_CHUNK = 2048


def retrieval_ranks(queries: Tensor, gallery: Tensor, labels: Tensor | None) -> Tensor:
    """``[Q]`` rank of the best correct gallery item for each query (row i of both sides is one example).

    Args:
        queries: ``[Q, N]`` normalised query embeddings.
        gallery: ``[Q, N]`` normalised gallery embeddings; item i is the pair of query i.
        labels: ``[Q]`` labels (same-label items are correct) or None (only the pair is correct).
    """
    if queries.shape != gallery.shape:
        raise ValueError(
            f"queries and gallery must have the same shape, got {list(queries.shape)} and {list(gallery.shape)}"
        )
    out = []
    for start in range(0, queries.shape[0], QUERY_CHUNK):
        stop = min(start + QUERY_CHUNK, queries.shape[0])
        scores = queries[start:stop] @ gallery.t()
        rows = torch.arange(start, stop)
        if labels is None:
            correct = torch.zeros_like(scores, dtype=torch.bool)
            correct[torch.arange(stop - start), rows] = True
        else:
            correct = labels[start:stop, None] == labels[None, :]
        out.append(ranks(scores, correct))
    return torch.cat(out)


class RetrievalEvaluator(Evaluator):
    """Image<->text hit@K and rank statistics per evaluation split."""

    def __init__(self, params: RetrievalParams) -> None:
        self.params = params

    def evaluate(self, pipeline: Any, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        p = self.params
        metrics: dict[str, float] = {}
        for split, source in select_splits(dataset, p.splits):
            if len(source) == 0:
                warn_evaluation(f"retrieval: split {split!r} is empty; skipped")
                continue
            labels = None
            if p.match == "label" and source.labels is not None:
                labels = torch.as_tensor(np.asarray(source.labels, dtype=np.int64))
            if _trivial(split, len(source), labels):
                continue
            ks = reportable_ks(p.ks, len(source), f"retrieval: split {split!r}")
            images = embed_field(pipeline, p.image_role, source, p.image_role, ctx.batch_size)
            texts = embed_field(pipeline, p.text_role, source, p.text_role, ctx.batch_size)
            prefix = f"retrieval/{split}"
            for direction, q, g in (("i2t", images, texts), ("t2i", texts, images)):
                rank = retrieval_ranks(q, g, labels)
                for k in ks:
                    metrics[f"{prefix}/{direction}@{k}"] = hit_rate(rank, k)
                metrics[f"{prefix}/{direction}_mean_rank"] = float(rank.float().mean())
                metrics[f"{prefix}/{direction}_median_rank"] = float(np.median(rank.numpy()))
        return metrics


def _trivial(split: str, size: int, labels: Tensor | None) -> bool:
    """Whether every gallery item is correct for every query of ``split`` (then warn): under 2 items, or a
    single label when items of the query's label count."""
    if size < 2:
        reason = f"has {size} item"
    elif labels is not None and int(labels.unique().numel()) < 2:
        reason = f"has a single label ({int(labels[0])}) and match = \"label\""
    else:
        return False
    warn_evaluation(f"retrieval: split {split!r} {reason}: every query would find a correct item first, so its "
                    "scores would say nothing; skipped")
    return True


def build_retrieval(params: RetrievalParams, ctx) -> RetrievalEvaluator:
    check_roles(ctx.encoders, (params.image_role, params.text_role), "clip.retrieval")
    return RetrievalEvaluator(params)
