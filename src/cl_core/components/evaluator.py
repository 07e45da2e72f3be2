"""The Evaluator interface: metrics of a trained pipeline on a dataset's evaluation splits, and the warnings an
evaluator gives when a split is too small to say anything."""

from __future__ import annotations

import abc
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from attrs import frozen

from ..errors import EvaluationWarning

if TYPE_CHECKING:
    from .view import PipelineView
    from .data import Dataset


@frozen
class EvalContext:
    """Where an evaluation runs: device, batch size for embedding, and a folder for plots (or None)."""

    device: torch.device
    plots_dir: Path | None = None
    batch_size: int = 256


class Evaluator(abc.ABC):
    """Computes named metrics (``{"zero-shot/noto/top1": 0.41, ...}``) from a pipeline and a dataset."""

    @abc.abstractmethod
    def evaluate(self, pipeline: PipelineView, dataset: Dataset, ctx: EvalContext) -> dict[str, float]: ...


def run_evaluators(pipeline: PipelineView, device: torch.device, plots_dir: Path | None = None) -> dict[str, float]:
    """Every evaluator of ``pipeline`` on its dataset, in eval mode on ``device``; their metrics merged.

    Raises:
        SpecError: evaluators but no ``[data]`` to evaluate on.
    """
    from ..errors import Problem, SpecError

    if pipeline.evaluators and pipeline.dataset is None:
        raise SpecError("spec", [Problem("data", "required to evaluate: the [[evaluate]] tables measure on its "
                                                 "splits")])
    pipeline.to(device).eval()
    results: dict[str, float] = {}
    ctx = EvalContext(device=device, plots_dir=plots_dir)
    for evaluator in pipeline.evaluators:
        assert pipeline.dataset is not None
        results.update(evaluator.evaluate(pipeline, pipeline.dataset, ctx))
    return results


def warn_evaluation(message: str) -> None:
    """Tell the user an evaluation was skipped or reduced, as an :class:`~cl_core.errors.EvaluationWarning`:
    the CLI prints it as one ``warning: ...`` line, and Python's default filter shows each message once (an
    evaluator that runs every epoch does not repeat it)."""
    warnings.warn(EvaluationWarning(message), stacklevel=3)


def reportable_ks(ks: Iterable[int], candidates: int, what: str) -> list[int]:
    """The cut-offs of ``ks`` that are below ``candidates``, in order.

    A hit rate (or recall) at K >= the number of candidates is 1 for every query whatever the model does,
    so it must not be reported as a score; one warning names the K left out.

    Args:
        ks: the K of each hit@K / recall@K / top-K.
        candidates: how many items each query ranks (classes, gallery items, documents).
        what: who is speaking, for the warning (``"zero-shot: split 'test'"``).
    """
    ks = list(ks)
    dropped = [k for k in ks if k >= candidates]
    if dropped:
        warn_evaluation(f"{what}: K = {', '.join(map(str, dropped))} not reported: with {candidates} "
                        f"candidate{'s' if candidates != 1 else ''} to rank, any model would score 1")
    return [k for k in ks if k < candidates]
