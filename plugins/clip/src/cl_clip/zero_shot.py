"""``clip.zero-shot``: zero-shot classification with prompt ensembles (Radford et al., 2021, sec. 3.1.4).

For each class c and template t the text tower embeds ``t.format(name_c)``; each embedding is
L2-normalised, the template embeddings of a class are averaged and the mean re-normalised (the CLIP
notebook and CLIP_benchmark's ``zero_shot_classifier``). An image's logits are the cosine similarities
of its normalised embedding with these class embeddings; the predicted class is the arg-max.

With ``descriptions = true`` the split's ``class_descriptions`` (further texts per class, e.g. "carrot,
food vegetable") go through the same templates and join the class's average, as class descriptions do
in Menon & Vondrick (2023, "Visual Classification via Description from Large Language Models") and
CuPL (Pratt et al., 2023). Only class texts change; the images and the model are the same.

Metrics per split (every split but ``"train"`` by default):

* ``zero-shot/<split>/top<k>``: fraction of images whose class ranks within the first k (ties count
  against the model, see :mod:`cl_clip.ranking`). A k >= the number of candidate classes would be 1 for
  any model: it is left out, with a warning.
* ``zero-shot/<split>/balanced_top1``: top-1 averaged per class (CLIP_benchmark's mean per-class recall).
* ``zero-shot/<split>/chance``: 1 / number of candidate classes.
* ``zero-shot/<split>/names/top<k>``: with ``descriptions = true``, the same accuracies with class names
  alone, so the effect of the descriptions is on record.

A split with fewer than 2 candidate classes (e.g. a held-out split whose images share one label, with
``classes = "split"``) is skipped with a warning: every score would be trivially perfect. Warnings are
:class:`~cl_core.errors.EvaluationWarning` (one ``warning: ...`` line in the CLI).

With a plots folder it also writes ``zero-shot-<split>.png``: example images with their five most
probable classes (probabilities = softmax of the scorer's logit scale times the cosines; scale 100
when the scorer has none) and the true class marked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cl_core.api import DataError, DataSource, Dataset, EvalContext, Evaluator, reportable_ks, warn_evaluation

from .evaluation import check_roles, embed_field, field_items, logit_scale, select_splits
from .params import ZeroShotParams
from .ranking import hit_rate, ranks


class ZeroShotEvaluator(Evaluator):
    """Zero-shot classification of each evaluation split's images by prompted class names."""

    def __init__(self, params: ZeroShotParams) -> None:
        self.params = params

    def class_embeddings(self, pipeline: Any, names: list[str], batch_size: int = 256,
                         descriptions: list[tuple[str, ...]] | None = None) -> Tensor:
        """``[C, N]`` unit-norm class embeddings: the normalised mean of the normalised embeddings of every
        template applied to the class name and, when ``descriptions`` is given (one tuple per class), to
        each of the class's descriptions."""
        return F.normalize(self._prompt_sums(pipeline, names, batch_size, descriptions).sum(dim=0), dim=-1)

    @torch.no_grad()
    def _prompt_sums(self, pipeline: Any, names: list[str], batch_size: int,
                     descriptions: list[tuple[str, ...]] | None) -> Tensor:
        """``[2, C, N]``: per class, the sum of the normalised embeddings of its templated name (row 0) and
        of its templated descriptions (row 1; zero without any). Normalising a sum normalises the mean, so
        row 0 gives the names-only classifier and the sum of both rows the described one, from one pass."""
        prompts = self.params.prompts
        groups = [(name, *(descriptions[c] if descriptions is not None else ())) for c, name in enumerate(names)]
        texts = [template.format(phrase) for group in groups for phrase in group for template in prompts]
        # the sum each text adds to: class c's name prompts -> c, its description prompts -> C + c
        slot = [c + (len(names) if i else 0) for c, group in enumerate(groups) for i in range(len(group)) for _ in prompts]
        emb = F.normalize(pipeline.embed(self.params.text_role, texts, batch_size=batch_size).float(), dim=-1)
        total = emb.new_zeros(2 * len(names), emb.shape[1])
        return total.index_add_(0, torch.tensor(slot, device=emb.device), emb).view(2, len(names), -1)

    def _classes(self, split: str, source: DataSource) -> tuple[list[str], list | None, np.ndarray] | None:
        """(candidate class names, their descriptions when asked for, target column per example), or None
        to skip the split."""
        if source.labels is None or source.class_names is None:
            message = f"zero-shot: split {split!r} has no labels or class names"
            if self.params.splits is not None:
                raise DataError(message)
            warn_evaluation(message + "; skipped")
            return None
        labels = np.asarray(source.labels, dtype=np.int64)
        n_names = len(source.class_names)
        if labels.size and (labels.min() < 0 or labels.max() >= n_names):
            raise DataError(f"zero-shot: split {split!r} has labels outside 0..{n_names - 1} (its class_names)")
        if self.params.classes == "split":
            class_ids = np.unique(labels)
            target = np.searchsorted(class_ids, labels)
        else:
            class_ids = np.arange(n_names)
            target = labels
        descriptions = None
        if self.params.descriptions:
            if source.class_descriptions is None:
                warn_evaluation(f"zero-shot: split {split!r} has no class_descriptions; class names only")
            else:
                descriptions = [tuple(source.class_descriptions[c]) for c in class_ids]
        return [str(source.class_names[c]) for c in class_ids], descriptions, target

    def evaluate(self, pipeline: Any, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        p = self.params
        metrics: dict[str, float] = {}
        for split, source in select_splits(dataset, p.splits):
            if len(source) == 0:
                warn_evaluation(f"zero-shot: split {split!r} is empty; skipped")
                continue
            classes = self._classes(split, source)
            if classes is None:
                continue
            names, descriptions, target = classes
            if _too_few_classes(split, names):
                continue
            top_k = reportable_ks(p.top_k, len(names), f"zero-shot: split {split!r}")
            sums = self._prompt_sums(pipeline, names, ctx.batch_size, descriptions)
            weights = F.normalize(sums.sum(dim=0), dim=-1)
            images = embed_field(pipeline, p.image_role, source, p.image_role, ctx.batch_size)
            logits = images @ weights.t()  # [n, C] cosine similarities
            target_t = torch.from_numpy(target)
            correct = F.one_hot(target_t, num_classes=len(names)).bool()
            rank = ranks(logits, correct)
            prefix = f"zero-shot/{split}"
            for k in top_k:
                metrics[f"{prefix}/top{k}"] = hit_rate(rank, k)
            top1 = (rank == 1).float()
            counts = torch.bincount(target_t, minlength=len(names)).float()
            hits = torch.bincount(target_t, weights=top1, minlength=len(names))
            present = counts > 0
            metrics[f"{prefix}/balanced_top1"] = float((hits[present] / counts[present]).mean())
            metrics[f"{prefix}/chance"] = 1.0 / len(names)
            if descriptions is not None:
                name_rank = ranks(images @ F.normalize(sums[0], dim=-1).t(), correct)
                for k in top_k:
                    metrics[f"{prefix}/names/top{k}"] = hit_rate(name_rank, k)
            if ctx.plots_dir is not None and p.examples > 0:
                self._plot(pipeline, split, source, logits, target, names, ctx)
        return metrics

    def _plot(self, pipeline: Any, split: str, source: DataSource, logits: Tensor, target: np.ndarray,
              names: list[str], ctx: EvalContext) -> None:
        from .plots import plot_zero_shot

        n = logits.shape[0]
        idx = np.unique(np.linspace(0, n - 1, min(self.params.examples, n)).round().astype(int)).tolist()
        images = field_items(source, self.params.image_role, idx)
        scale = logit_scale(pipeline, self.params.image_role, self.params.text_role)
        probs = torch.softmax(scale * logits[idx], dim=-1)
        k = min(5, len(names))
        top_p, top_i = probs.topk(k, dim=-1)
        rows = [
            ([names[j] for j in top_i[r].tolist()], top_p[r].tolist(), names[int(target[i])])
            for r, i in enumerate(idx)
        ]
        path = ctx.plots_dir / f"zero-shot-{split}.png"
        plot_zero_shot(path, images, rows, title=f"zero-shot, split {split!r}")


def _too_few_classes(split: str, names: list[str]) -> bool:
    """Whether ``split`` has under 2 candidate classes (then warn): every image would be classified right."""
    if len(names) >= 2:
        return False
    warn_evaluation(f"zero-shot: split {split!r} has {len(names)} candidate class{'' if len(names) == 1 else 'es'} "
                    f"({', '.join(map(repr, names))}): every image would be classified right, so its scores would "
                    "say nothing; skipped")
    return True


def build_zero_shot(params: ZeroShotParams, ctx) -> ZeroShotEvaluator:
    check_roles(ctx.encoders, (params.image_role, params.text_role), "clip.zero-shot")
    return ZeroShotEvaluator(params)
