"""The TrainingLoop interface: what turns a built pipeline into a trained run directory."""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from attrs import field, frozen

from .. import tensorboard_log
from .evaluator import run_evaluators

if TYPE_CHECKING:
    from .view import PipelineView

METRICS_NAME = "metrics.jsonl"
CHECKPOINT_NAME = "checkpoint.safetensors"


@frozen(kw_only=True)
class TrainContext:
    """What a training-loop factory ``build(params, ctx)`` may depend on.

    Attributes:
        pipeline: the built pipeline, with its dataset and sampler, on the CPU: the loop moves it to
            ``device`` (or keeps parts where its own backend runs them, as word2vec's numba loop does).
        run_dir: the planned run directory (checkpoints and metrics go there). A new run's is created,
            holding ``spec.toml``, after the loop is built and before ``fit``; an auto-named run that finds
            the name taken gets a ``-2`` suffix, and the loop's ``run_dir`` attribute is set to the
            directory created: use that attribute, not this field.
        seed: the run seed (``spec.run.seed``): data order and noise draws derive from it.
        device: where to train.
        callbacks: ``f(loop, step)`` to call after each optimizer step (after any checkpoint).
        log: where to print human-readable lines.
    """

    pipeline: PipelineView
    run_dir: Path
    seed: int = 0
    device: torch.device = torch.device("cpu")
    callbacks: Sequence[Callable[[TrainingLoop, int], None]] = field(factory=tuple)
    log: Callable[[str], None] = print


class TrainingLoop(abc.ABC):
    """Trains a pipeline on its dataset's ``"train"`` split, checkpoints and evaluates it.

    Attributes (read by the CLI and the model card):
        step: optimizer steps done.
        total_steps: steps of the whole run.
        steps_per_epoch: steps per pass over the training data.
        epochs: passes over the training data.
    """

    step: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 0
    epochs: int = 0
    epoch: int = 0
    #: whether the run writes plots into ``plots/`` (a loop whose params have a ``plots`` switch sets it)
    plots: bool = True
    #: whether the metrics also go to TensorBoard event files in ``tensorboard/`` when the ``tensorboard``
    #: package is installed (a loop whose params have a ``tensorboard`` switch sets it); see
    #: :mod:`cl_core.tensorboard_log`
    tensorboard: bool = True
    # The TensorBoard writer, opened on the first record (None: not yet; False: off or not installed), and on a
    # resumed run the first step trained again, whose older events TensorBoard is told to discard. Class-level
    # defaults, so a loop that does not call ``TrainingLoop.__init__`` still has them.
    _events: tensorboard_log.EventWriter | bool | None = None
    _purge_step: int | None = None

    def __init__(self, ctx: TrainContext) -> None:
        self.pipeline = ctx.pipeline
        self.run_dir = Path(ctx.run_dir)
        self.seed = ctx.seed
        self.device = ctx.device
        self.callbacks = list(ctx.callbacks)
        self.log = ctx.log
        self.rank = 0
        self.eval_results: dict[str, float] = {}
        #: evaluation results before training (when the loop evaluates at the start), else None
        self.start_results: dict[str, float] | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    @abc.abstractmethod
    def fit(self, plots_dir: Path | None = None) -> dict[str, float]:
        """Train to ``total_steps`` (continuing from the current state), evaluate, checkpoint; return the
        evaluation metrics."""

    def divergence_hints(self) -> list[str]:
        """What to change when the run diverged (a non-finite loss, embedding or weight), most likely first,
        each a short imperative naming the spec key and its value: ``lower trainer.lr (now 0.1)``."""
        return ["lower trainer.lr"]

    def lower_lr_override(self) -> str:
        """The ``--set`` option that retries with a lower learning rate (``--set trainer.lr=0.01``)."""
        return "--set trainer.lr=..."

    @abc.abstractmethod
    def resume(self) -> None:
        """Restore ``checkpoint_path``; raises :class:`~cl_core.errors.CheckpointError` when unusable."""

    def write_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (rank 0 only), and its scalars to the run's TensorBoard
        event files when ``tensorboard`` is on and the package is installed (:mod:`cl_core.tensorboard_log`)."""
        if self.rank != 0:
            return
        with open(self.run_dir / METRICS_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._events is None:
            writer = (tensorboard_log.open_writer(self.run_dir / tensorboard_log.TENSORBOARD_DIR,
                                                  purge_step=self._purge_step) if self.tensorboard else None)
            self._events = writer if writer is not None else False
        if isinstance(self._events, tensorboard_log.EventWriter):
            self._events.log(record)

    def close_metrics(self) -> None:
        """Close the TensorBoard event file, if one is open (the run calls it when the loop stops, finished or
        not); a later record opens a new one."""
        if isinstance(self._events, tensorboard_log.EventWriter):
            self._events.close()
        self._events = None

    def drop_metrics_after(self, step: int) -> None:
        """On resume: remove the ``metrics.jsonl`` lines logged after ``step`` (rank 0 only), so the metrics of
        the steps that are trained again are not counted twice; TensorBoard is told to discard their events
        too (the next event file starts with a purge of the steps after ``step``)."""
        metrics = self.run_dir / METRICS_NAME
        if self.rank != 0:
            return
        self.close_metrics()
        self._purge_step = step + 1
        if not metrics.exists():
            return
        kept = [line for line in metrics.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        metrics.write_text("".join(line + "\n" for line in kept))

    def evaluate(self, plots_dir: Path | None = None) -> dict[str, float]:
        """Run every evaluator of the pipeline; results are logged to metrics.jsonl and returned."""
        if not self.pipeline.evaluators:
            return {}
        results = run_evaluators(self.pipeline, self.device, plots_dir if self.rank == 0 else None)
        self.eval_results = results
        self.write_metrics({"step": self.step, "epoch": self.epoch, "eval": results})
        return results
