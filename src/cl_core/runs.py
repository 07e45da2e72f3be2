"""Runs: spec -> pipeline -> trained run directory.

A run directory holds ``spec.toml`` (resolved, with provenance), ``checkpoint.safetensors``,
``model.safetensors``, ``metrics.jsonl``, ``README.md`` (model card) and ``plots/``. Everything that can
fail on bad input (spec, plugins, data, batch size) is checked *before* the directory is created, so a
user mistake never leaves a half-written run.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from . import distributed, modelcard, plots, provenance
from .build import build_pipeline, build_training_loop
from .components import TrainContext, TrainingLoop
from .checkpoint import atomic_write_text
from .errors import CheckpointError, ClError
from .plugins import PluginHost, default_host
from .spec import PipelineSpec, dump_spec, load_spec, with_absolute_paths
from .trainer import METRICS_NAME, resolve_device
from .weights import SPEC_NAME, WEIGHTS_NAME, save_weights


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@attrs.frozen
class RunResult:
    """A finished run: its directory, final evaluation results (and those before training, if measured)."""

    run_dir: Path
    results: dict[str, float]
    steps: int
    seconds: float
    start_results: dict[str, float] | None = None


def _new_run_dir(spec: PipelineSpec, spec_path: Path) -> Path:
    name = spec.run.name or f"{spec_path.stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(spec.run.output_dir) / name
    if run_dir.exists():
        raise ClError(f"run directory {run_dir} already exists; choose another run.name or resume it with "
                      f"`cl train --resume {run_dir}`")
    return run_dir


def format_results(results: dict[str, float], start: dict[str, float] | None = None) -> str:
    """One line per metric; with ``start`` (results before training) a two-column table start | trained."""
    if not results:
        return "no evaluation metrics"
    width = max(len(k) for k in results)
    if start is None:
        return "\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in sorted(results.items()))
    lines = [f"  {'metric':<{width}}  {'start':>8}  {'trained':>8}  {'change':>8}"]
    for key, value in sorted(results.items()):
        before = start.get(key)
        if before is None:
            lines.append(f"  {key:<{width}}  {'':>8}  {value:8.4f}")
        else:
            lines.append(f"  {key:<{width}}  {before:8.4f}  {value:8.4f}  {value - before:+8.4f}")
    return "\n".join(lines)


def train(
    spec_path: str | Path | None = None,
    *,
    overrides: Iterable[tuple[str, Any]] = (),
    resume: str | Path | None = None,
    host: PluginHost | None = None,
    callbacks: Sequence[Callable[[TrainingLoop, int], None]] = (),
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train from a spec file, or continue the run directory ``resume``.

    Raises:
        SpecError, BuildError, DataError, CheckpointError: user errors, raised before anything is written.
    """
    host = host or default_host()
    registry = host.registry()
    overrides = list(overrides)
    if resume is not None and spec_path is not None:
        raise ClError(f"give a spec file or --resume RUN, not both (a resumed run uses its own {SPEC_NAME})")
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / SPEC_NAME).is_file():
            raise CheckpointError(f"{run_dir} is not a run directory (no {SPEC_NAME})")
        spec = load_spec(run_dir / SPEC_NAME, registry, overrides=overrides)
    else:
        if spec_path is None:
            raise ClError("give a spec file, or --resume RUN")
        spec = load_spec(spec_path, registry, overrides=overrides)
    if spec.run.num_threads:
        torch.set_num_threads(spec.run.num_threads)
    device = distributed.launch(resolve_device(spec.run.device))  # torchrun: join the group, pick the GPU
    zero = distributed.world()[0] == 0  # only rank 0 writes files
    if resume is None:
        spec_file = Path(str(spec_path))
        run_dir = distributed.from_rank_zero(lambda: _new_run_dir(spec, spec_file))
    seed_everything(spec.run.seed)
    started = time.perf_counter()
    pipeline = build_pipeline(spec, registry, device=device)
    dataset = pipeline.dataset
    assert dataset is not None  # built with_data
    log(f"data: {dataset.describe()}")
    ctx = TrainContext(pipeline=pipeline, run_dir=run_dir, seed=spec.run.seed, device=device, callbacks=callbacks,
                       log=log)
    trainer = build_training_loop(spec, registry, ctx)
    info = provenance.collect(host)
    if resume is not None:
        trainer.resume()
        if trainer.step >= trainer.total_steps and (run_dir / WEIGHTS_NAME).is_file():
            raise CheckpointError(
                f"{run_dir} has finished ({trainer.step} of {trainer.total_steps} steps): `cl eval {run_dir}` re-runs "
                "its evaluators; to train further, resume with a larger --set trainer.epochs=N")
        log(f"resuming {run_dir} at step {trainer.step} of {trainer.total_steps}")
        if overrides and zero:  # the saved spec must keep describing the weights
            atomic_write_text(run_dir / SPEC_NAME, dump_spec(with_absolute_paths(spec), info))
            log(f"{run_dir / SPEC_NAME}: updated with " + ", ".join(f"{k}={v!r}" for k, v in overrides))
    elif zero:
        run_dir.mkdir(parents=True)
        try:
            atomic_write_text(run_dir / SPEC_NAME, dump_spec(with_absolute_paths(spec), info))
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        log(f"run directory: {run_dir}")
    distributed.barrier()
    log(f"training {sum(p.numel() for p in pipeline.parameters() if p.requires_grad):,} parameters "
        f"on {device} for {trainer.total_steps} steps ({trainer.steps_per_epoch} per epoch)")
    plots_dir = run_dir / "plots" if getattr(spec.trainer.params, "plots", True) else None
    results = trainer.fit(plots_dir=plots_dir)
    seconds = time.perf_counter() - started
    start = trainer.start_results
    if not zero:
        return RunResult(run_dir=run_dir, results=results, steps=trainer.step, seconds=seconds, start_results=start)
    save_weights(pipeline, run_dir / WEIGHTS_NAME)
    if plots_dir is not None:
        plots.loss_curve(run_dir / METRICS_NAME, plots_dir / "loss.png")
        plots.similarity_matrix(pipeline, plots_dir / "similarity.png")
    training = {"steps": trainer.step, "epochs": trainer.epochs, "device": str(device),
                "wall time (s)": f"{seconds:.0f}", "data": dataset.describe()}
    atomic_write_text(run_dir / "README.md", modelcard.render(spec, results=results, training=training,
                                                              provenance=info, start_results=start,
                                                              usage=modelcard.usage_notes(pipeline)))
    log("results:\n" + format_results(results, start))
    return RunResult(run_dir=run_dir, results=results, steps=trainer.step, seconds=seconds, start_results=start)


def evaluate_run(run_dir: str | Path, *, host: PluginHost | None = None, overrides: Iterable[tuple[str, Any]] = (),
                 log: Callable[[str], None] = print) -> dict[str, float]:
    """Rebuild a finished run with its data, load ``model.safetensors`` and run the evaluators."""
    from .components import EvalContext
    from .weights import load_weights

    host = host or default_host()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} does not exist (give a run directory)")
    if not (run_dir / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{run_dir} has no {WEIGHTS_NAME} (not a finished run)")
    registry = host.registry()
    spec = load_spec(run_dir / SPEC_NAME, registry, overrides=overrides)
    device = resolve_device(spec.run.device)
    pipeline = build_pipeline(spec, registry, device=device)
    assert pipeline.dataset is not None  # built with_data
    load_weights(pipeline, run_dir / WEIGHTS_NAME)
    pipeline.to(device).eval()
    results: dict[str, float] = {}
    ctx = EvalContext(device=device)
    for evaluator in pipeline.evaluators:
        results.update(evaluator.evaluate(pipeline, pipeline.dataset, ctx))
    log("results:\n" + format_results(results))
    return results
