"""``bert-nsp.nsp-accuracy``: next-sentence-prediction accuracy on held-out documents.

For each evaluation split, NSP pairs are drawn once with a fixed seed exactly as ``bert-nsp.pairs``
draws them (the random B of a pair comes from another document *of the same split*: a held-out split
never shows training text), embedded with the pipeline's query encoder, scored against the candidate
set (``bert-nsp.nsp-head``) with the pipeline's scorer, and classified by arg-max. Metrics per split:

* ``nsp/<split>/accuracy``: share of pairs classified correctly (chance: the larger class share, ~0.5);
* ``nsp/<split>/accuracy_is_next`` and ``nsp/<split>/accuracy_random``: accuracy within each true class;
* ``nsp/<split>/count``: pairs evaluated.
"""

from __future__ import annotations

import numpy as np
import torch

from cl_core.api import ClError, DataError, Dataset, EvalContext, Evaluator

from .nsp_pairs import IS_NEXT, RANDOM, SentenceIndex
from .params import NSPAccuracyParams


def nsp_predictions(pipeline, pairs, *, batch_size: int, device: torch.device) -> np.ndarray:
    """Predicted NSP classes ``[len(pairs)]`` int64 (0 = is next, 1 = random) of a trained pipeline.

    Raises:
        ClError: the pipeline's second encoder is not a candidate set (e.g. ``bert-nsp.nsp-head``).
    """
    q_role, k_role = pipeline.pair_roles
    head = pipeline.candidate_set()
    if head is None:
        raise ClError("bert-nsp.nsp-accuracy needs the NSP classes as a candidate set: a second encoder role "
                      "of type bert-nsp.nsp-head")
    encoder = pipeline.encoder(q_role)
    scorer = pipeline.scorer_for(q_role, k_role)
    was_training = pipeline.training
    pipeline.eval()
    out = []
    try:
        with torch.no_grad():
            candidates = head.candidates().to(device)
            for start in range(0, len(pairs), batch_size):
                prepared = encoder.prepare(pairs[start : start + batch_size])
                queries = encoder.encode({k: v.to(device) for k, v in prepared.items()})
                out.append(scorer.score(queries, candidates).argmax(dim=1).cpu())
    finally:
        pipeline.train(was_training)
    return torch.cat(out).numpy().astype(np.int64)


class NSPAccuracy(Evaluator):
    """See the module docstring. Args mirror :class:`~cl_bert_nsp.params.NSPAccuracyParams`."""

    def __init__(self, params: NSPAccuracyParams) -> None:
        self.params = params

    def split_names(self, dataset: Dataset) -> list[str]:
        """The splits to evaluate. Raises DataError for a named split the dataset lacks."""
        splits = dataset.splits()
        if self.params.splits is None:
            return [name for name in splits if name != "train"]
        missing = [s for s in self.params.splits if s not in splits]
        if missing:
            raise DataError(f"bert-nsp.nsp-accuracy: split(s) {missing} not in the dataset (has {list(splits)})")
        return list(self.params.splits)

    def pairs(self, dataset: Dataset, split: str):
        """The fixed ``(pairs, labels)`` of ``split`` (raises DataError when NSP pairs cannot be drawn)."""
        index = SentenceIndex.from_source(dataset.splits()[split])
        index.check(f"evaluation split {split!r}")
        generator = torch.Generator().manual_seed(self.params.seed)
        a, b, labels, seeds = index.draw(generator, self.params.random_next_probability, limit=self.params.max_pairs)
        return index.pairs(a, b, seeds), labels

    def evaluate(self, pipeline, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        results: dict[str, float] = {}
        for split in self.split_names(dataset):
            pairs, labels = self.pairs(dataset, split)
            predicted = nsp_predictions(pipeline, pairs, batch_size=self.params.batch_size, device=ctx.device)
            correct = predicted == labels
            results[f"nsp/{split}/accuracy"] = float(correct.mean())
            for name, cls in (("is_next", IS_NEXT), ("random", RANDOM)):
                chosen = labels == cls
                results[f"nsp/{split}/accuracy_{name}"] = float(correct[chosen].mean()) if chosen.any() else float("nan")
            results[f"nsp/{split}/count"] = float(len(labels))
        return results


def build_nsp_accuracy(params: NSPAccuracyParams, ctx) -> NSPAccuracy:
    evaluator = NSPAccuracy(params)
    dataset = getattr(ctx, "dataset", None)
    if dataset is not None:  # fail before training when a split cannot give NSP pairs
        names = evaluator.split_names(dataset)
        if not names:
            raise DataError("bert-nsp.nsp-accuracy: the dataset has no evaluation split (set data.holdout > 0)")
        for split in names:
            SentenceIndex.from_source(dataset.splits()[split]).check(f"evaluation split {split!r}")
    return evaluator
