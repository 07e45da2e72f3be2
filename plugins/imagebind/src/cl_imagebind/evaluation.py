"""``imagebind.bind``: the cross-modal table of a bound model — direct, emergent, arithmetic.

For each evaluation split with labelled examples in several modalities (``imagebind.emoji``'s ``voices`` and
``heldout``), every modality that has both an encoder role and a data field is embedded (L2-normalised), and
every ordered pair (query modality -> gallery modality) is scored as retrieval among the split's classes: the
gallery holds one item per class (the first example of the label), the queries are every example whose item
differs between examples of a label (speech: each held-out voice) or one per class otherwise. Reported:

* ``bind/<split>/<q>2<g>@K``: hit@K (recall@K as CLIP papers report it: the query's class among the K best);
  ``bind/<split>/chance@K`` = K / classes beside them.
* ``bind/<split>/<m>/emergent_ratio``: for a bound modality m, (m -> the other frozen modality)@1 over
  (m -> anchor)@1. With the image anchor, audio -> text is *emergent* (no (audio, text) pair was ever trained)
  and audio -> image *direct*; ImageBind (Girdhar et al., 2023) claims the first follows from the second.

On an ``arithmetic`` split (rows: the image of concept a, the speech of concept b, labelled with z = a ZWJ b;
``source.gallery()`` the images of every concept), the query is ImageBind's sum of normalised embeddings
(0.5 + 0.5, then cosine retrieval) over the gallery images: ``bind/arithmetic/image+audio@K``, against each input
alone (``image@K``, ``audio@K``) and the sum with the *text* of b (``image+text@K``, the frozen tower's own
arithmetic, for reference).

Plots (with a plots folder): ``bind-<split>-similarity.png``, the cosine similarity of the first 12 classes
between each pair of modalities, and ``bind-<split>-examples.txt``, a few speech and line-art queries with their
top-3 names.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cl_clip.evaluation import embed_field, select_splits
from cl_clip.ranking import hit_rate, ranks
from cl_core.api import Dataset, EvalContext, Evaluator, warn_evaluation

from .params import BindParams

#: how many classes the similarity plot shows
PLOT_CLASSES = 12


def class_ranks(queries: Tensor, query_labels: Tensor, gallery: Tensor) -> Tensor:
    """``[Q]`` rank (1 = first) of each query's class among the gallery's classes.

    Args:
        queries: ``[Q, N]`` normalised embeddings; ``query_labels`` ``[Q]`` their class (a gallery row).
        gallery: ``[C, N]`` normalised embeddings, one per class (row c = class c).
    """
    scores = queries @ gallery.t()
    correct = torch.zeros_like(scores, dtype=torch.bool)
    correct[torch.arange(len(queries)), query_labels] = True
    return ranks(scores, correct)


def _first_per_label(labels: np.ndarray) -> np.ndarray:
    """Row of the first example of each label 0..C-1 (every label must occur)."""
    classes = int(labels.max()) + 1
    first = np.full(classes, -1, dtype=np.int64)
    for row in range(len(labels) - 1, -1, -1):
        first[labels[row]] = row
    if (first < 0).any():
        raise ValueError(f"labels {np.flatnonzero(first < 0)[:5].tolist()} have no example")
    return first


class BindEvaluator(Evaluator):
    """Every ordered pair of modalities as class retrieval, the emergent ratios and the arithmetic table."""

    def __init__(self, params: BindParams) -> None:
        self.params = params

    def evaluate(self, pipeline: Any, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        p = self.params
        metrics: dict[str, float] = {}
        for split, source in select_splits(dataset, p.splits):
            if source.labels is None or len(source) == 0:
                warn_evaluation(f"imagebind.bind: split {split!r} has no labelled examples; skipped")
                continue
            if split == "arithmetic" or hasattr(source, "gallery"):
                metrics.update(self._arithmetic(pipeline, split, source, ctx))
                continue
            metrics.update(self._split(pipeline, split, source, ctx))
        return metrics

    def _roles(self, pipeline: Any, source: Any) -> list[str]:
        wanted = self.params.modalities or tuple(pipeline.encoders)
        return [m for m in wanted if m in pipeline.encoders and m in source.fields]

    def _split(self, pipeline: Any, split: str, source: Any, ctx: EvalContext) -> dict[str, float]:
        p = self.params
        labels = np.asarray(source.labels, dtype=np.int64)
        first = _first_per_label(labels)
        classes = len(first)
        roles = self._roles(pipeline, source)
        if len(roles) < 2 or classes < 2:
            warn_evaluation(f"imagebind.bind: split {split!r} has {len(roles)} modality and {classes} class(es); "
                            "skipped")
            return {}
        emb = {m: embed_field(pipeline, m, source, m, ctx.batch_size) for m in roles}
        # A modality whose item differs between the examples of a class (speech in several voices) queries with
        # every example; the others would repeat one item, so they query once per class.
        varies = {m: not torch.equal(emb[m], emb[m][torch.as_tensor(first[labels])]) for m in roles}
        ks = [k for k in p.ks if k < classes]
        prefix = f"bind/{split}"
        out: dict[str, float] = {f"{prefix}/chance@{k}": k / classes for k in ks}
        for q, g in itertools.permutations(roles, 2):
            rows = np.arange(len(labels)) if varies[q] else first
            rank = class_ranks(emb[q][torch.as_tensor(rows)], torch.as_tensor(labels[rows]), emb[g][torch.as_tensor(first)])
            for k in ks:
                out[f"{prefix}/{q}2{g}@{k}"] = hit_rate(rank, k)
        other = "text" if p.anchor == "image" else "image"
        for m in roles:
            if m in (p.anchor, other) or p.anchor not in roles or other not in roles:
                continue
            direct, emergent = out.get(f"{prefix}/{m}2{p.anchor}@1"), out.get(f"{prefix}/{m}2{other}@1")
            if direct:
                out[f"{prefix}/{m}/emergent_ratio"] = emergent / direct
        if ctx.plots_dir is not None:
            self._plots(ctx, split, source, emb, first, roles)
        return out

    def _arithmetic(self, pipeline: Any, split: str, source: Any, ctx: EvalContext) -> dict[str, float]:
        roles = self._roles(pipeline, source)
        if "image" not in roles or "audio" not in roles:
            warn_evaluation(f"imagebind.bind: split {split!r} needs image and audio encoders; skipped")
            return {}
        image = embed_field(pipeline, "image", source, "image", ctx.batch_size)
        audio = embed_field(pipeline, "audio", source, "audio", ctx.batch_size)
        gallery = F.normalize(pipeline.embed("image", source.gallery(), batch_size=ctx.batch_size).float(), dim=-1)
        labels = torch.as_tensor(np.asarray(source.labels, dtype=np.int64))
        queries = {"image": image, "audio": audio, "image+audio": F.normalize(0.5 * image + 0.5 * audio, dim=-1)}
        if "text" in roles:
            text = embed_field(pipeline, "text", source, "text", ctx.batch_size)
            queries["image+text"] = F.normalize(0.5 * image + 0.5 * text, dim=-1)
        ks = [k for k in self.params.ks if k < len(gallery)]
        out: dict[str, float] = {f"bind/{split}/count": float(len(labels)),
                                 **{f"bind/{split}/chance@{k}": k / len(gallery) for k in ks}}
        for name, q in queries.items():
            rank = class_ranks(q, labels, gallery)
            for k in ks:
                out[f"bind/{split}/{name}@{k}"] = hit_rate(rank, k)
        return out

    def _plots(self, ctx: EvalContext, split: str, source: Any, emb: dict[str, Tensor], first: np.ndarray,
               roles: list[str]) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        shown = torch.as_tensor(first[:PLOT_CLASSES])
        pairs = list(itertools.combinations(roles, 2))
        fig = Figure(figsize=(3.2 * len(pairs), 3.4))
        FigureCanvasAgg(fig)
        for i, (a, b) in enumerate(pairs):
            ax = fig.add_subplot(1, len(pairs), i + 1)
            sim = (emb[a][shown] @ emb[b][shown].t()).numpy()
            ax.imshow(sim, cmap="viridis", vmin=-0.2, vmax=1.0)
            ax.set_title(f"{a} x {b}", fontsize=9)
            ax.set_xlabel(b, fontsize=8)
            ax.set_ylabel(a, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"cosine similarity, first {len(shown)} classes of '{split}' (diagonal = same concept)",
                     fontsize=9)
        fig.tight_layout()
        ctx.plots_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(ctx.plots_dir / f"bind-{split}-similarity.png", dpi=110)
        if self.params.examples <= 0 or "text" not in emb:
            return
        names = source.class_names
        gallery = emb["text"][torch.as_tensor(first)]
        lines = [f"# {split}: queries and their 3 nearest class names (through the text tower)"]
        for m in (r for r in roles if r not in ("text", "image")):
            for label in range(min(self.params.examples, len(first))):
                top = (emb[m][int(first[label])] @ gallery.t()).topk(3).indices.tolist()
                lines.append(f"{m} of '{names[label]}' -> " + ", ".join(repr(names[t]) for t in top))
        (ctx.plots_dir / f"bind-{split}-examples.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_bind(params: BindParams, ctx) -> BindEvaluator:
    return BindEvaluator(params)
