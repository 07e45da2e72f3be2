"""The Evaluator interface: metrics of a trained pipeline on a dataset's evaluation splits."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from attrs import frozen

if TYPE_CHECKING:
    from ..pipeline import Pipeline
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
    def evaluate(self, pipeline: Pipeline, dataset: Dataset, ctx: EvalContext) -> dict[str, float]: ...
