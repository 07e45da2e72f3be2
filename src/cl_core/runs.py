"""Runs: spec -> pipeline -> trained run directory.

A run directory holds ``spec.toml`` (resolved, with provenance), ``checkpoint.safetensors``,
``model.safetensors``, ``metrics.jsonl``, ``README.md`` (model card), ``plots/`` and, when the tensorboard
package is installed, ``tensorboard/`` (:mod:`cl_core.tensorboard_log`). Never a half-written
run: everything that can fail on bad input (spec, plugins, data, batch size) is checked *before* the
directory is created, and a run that stops before its first checkpoint (interrupted, diverged, crashed)
removes its directory, so a run directory left behind can be resumed or evaluated (short of a SIGKILL
before the first checkpoint). A run that stops later keeps its directory and says how to resume it.

The directory is claimed atomically (``mkdir`` that fails if it exists): two runs of one spec started in
the same second get ``<stem>-<time>`` and ``<stem>-<time>-2``; an explicit ``run.name`` that exists is an
error.
"""

from __future__ import annotations

import datetime as dt
import itertools
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
from .atomic import atomic_write_text
from .checkpoint import STATE_KEY, read_metadata, read_state
from .errors import CheckpointError, ClError, Problem, SpecError, TrainingDivergedError
from .pipeline import Pipeline
from .plugins import PluginHost, default_host
from .spec import PipelineSpec, dump_spec, load_spec, with_absolute_paths
from .trainer import CHECKPOINT_NAME, METRICS_NAME, check_trainable, resolve_device
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


def _now() -> dt.datetime:
    return dt.datetime.now()  # a function of its own, so a test can start two runs in the same second


def _exists_error(run_dir: Path) -> ClError:
    return ClError(f"run directory {run_dir} already exists; choose another run.name or resume it with "
                   f"`cl train --resume {run_dir}`")


def _planned_run_dir(spec: PipelineSpec, spec_path: Path) -> Path:
    """Where a new run goes: ``output_dir/run.name``, or ``output_dir/<spec stem>-<YYYYmmdd-HHMMSS>``.

    Nothing is created yet (the data is built first); :func:`_create_run_dir` claims the directory.

    Raises:
        ClError: an explicit ``run.name`` exists already (said now, before the data is built).
    """
    if spec.run.name:
        run_dir = Path(spec.run.output_dir) / spec.run.name
        if run_dir.exists():
            raise _exists_error(run_dir)
        return run_dir
    return Path(spec.run.output_dir) / f"{spec_path.stem}-{_now():%Y%m%d-%H%M%S}"


def _claim_run_dir(planned: Path, *, explicit: bool) -> Path:
    """Create the run directory with a ``mkdir`` that fails if it exists, so two runs never share one.

    An auto-named run whose name is taken (another run of the spec started in the same second) takes the
    next free suffix, ``-2``, ``-3``, ...

    Raises:
        ClError: the explicit ``run.name`` ``planned`` was created by another run since it was checked.
    """
    planned.parent.mkdir(parents=True, exist_ok=True)
    candidate = planned
    for n in itertools.count(2):
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if explicit:
                raise _exists_error(planned) from None
            candidate = planned.with_name(f"{planned.name}-{n}")
    raise AssertionError("unreachable")  # itertools.count never ends


def _create_run_dir(planned: Path, *, explicit: bool, spec_text: str) -> Path:
    """Claim the run directory (:func:`_claim_run_dir`) and write its ``spec.toml``; returns the directory.

    Raises:
        ClError: as :func:`_claim_run_dir`. A failed write removes the directory again.
    """
    run_dir = _claim_run_dir(planned, explicit=explicit)
    try:
        atomic_write_text(run_dir / SPEC_NAME, spec_text)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def _require_directory(path: Path) -> None:
    """Raises :class:`CheckpointError` when ``path``, given as a run directory, does not exist or is a file."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist (give a run directory, written by `cl train`)")
    if not path.is_dir():
        hint = f"; to train from a spec file: `cl train {path}`" if path.suffix == ".toml" else ""
        raise CheckpointError(f"{path} is a file, not a run directory{hint}")


def _require_run_dir(path: Path) -> None:
    """Raises :class:`CheckpointError` unless ``path`` is a run directory (a folder with ``spec.toml``)."""
    _require_directory(path)
    if not (path / SPEC_NAME).is_file():
        raise CheckpointError(f"{path} is not a run directory (no {SPEC_NAME})")


def _finished_error(run_dir: Path, step: int, total: int) -> CheckpointError:
    return CheckpointError(
        f"{run_dir} has finished ({step} of {total} steps): `cl eval {run_dir}` re-runs "
        "its evaluators; to train further, resume with a larger --set trainer.epochs=N")


def _check_resumable(run_dir: Path, overrides: Sequence[tuple[str, Any]]) -> None:
    """What can be told of a resume before the data is built (which can take minutes): ``run_dir`` is a run
    directory, its checkpoint is readable, and the run has not finished.

    Whether it has finished is known here only when the checkpoint records the run's total steps (the core
    trainer's do) and no override can change that total; otherwise the check after the build tells.

    Raises:
        CheckpointError: not a run directory; no checkpoint, or an unreadable one; a finished run.
    """
    _require_run_dir(run_dir)
    checkpoint = run_dir / CHECKPOINT_NAME
    meta = read_metadata(checkpoint)  # exists and is whole, whichever loop wrote it
    if STATE_KEY not in meta or overrides:  # another loop's format, or an override may change the total
        return
    progress = read_state(checkpoint)["progress"]
    step, total = progress.get("step"), progress.get("total_steps")
    if total is not None and step >= total and (run_dir / WEIGHTS_NAME).is_file():
        raise _finished_error(run_dir, step, total)


def _restore(trainer: TrainingLoop, run_dir: Path, overrides: Sequence[tuple[str, Any]]) -> None:
    """``trainer.resume()``, then refuse a run that has finished.

    Raises:
        CheckpointError: from ``resume()`` (an override that changes the model: the checkpoint does not fit),
            or the run has finished; with a note that the overrides were not saved to ``spec.toml``.
    """
    try:
        trainer.resume()
        if trainer.step >= trainer.total_steps and (run_dir / WEIGHTS_NAME).is_file():
            raise _finished_error(run_dir, trainer.step, trainer.total_steps)
    except CheckpointError as exc:
        if overrides:
            exc.add_note(f"{_overrides_text(overrides)} not applied: {run_dir / SPEC_NAME} is unchanged")
        raise


def _overrides_text(overrides: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in overrides)


def _keep_or_remove(run_dir: Path, checkpoint: Path, *, new_run: bool, zero: bool) -> bool:
    """After a run stopped early: keep ``run_dir`` if it holds a checkpoint (it can be resumed), else remove it:
    nothing in it could be resumed, and ``cl train --resume`` would only fail on it. Only a directory this run
    created is removed (never a resumed one), and only by rank 0. Returns whether the directory is kept."""
    if checkpoint.is_file() or not new_run:
        return True
    if zero:
        shutil.rmtree(run_dir, ignore_errors=True)
    return False


def _checkpoint_step(checkpoint: Path, total: int) -> str:
    """`` at step 20 of 192`` for a core checkpoint; empty for another loop's format (it has no such record)."""
    try:
        return f" at step {read_state(checkpoint)['progress']['step']} of {total}"
    except (CheckpointError, KeyError, TypeError):
        return ""


def _kept(run_dir: Path, trainer: TrainingLoop) -> str:
    """``"<run_dir> keeps its checkpoint at step 20 of 192"``: the start of both notes on a kept run."""
    return f"{run_dir} keeps its checkpoint{_checkpoint_step(trainer.checkpoint_path, trainer.total_steps)}"


def _stopped_note(run_dir: Path, trainer: TrainingLoop, kept: bool, restart: str) -> str:
    """What a run that stopped early (Ctrl-C, a closed pipe, a crash) left behind, and what to do next."""
    if kept:
        return (f"{_kept(run_dir, trainer)}: "
                f"continue the run with `cl train --resume {run_dir}`")
    return (f"{run_dir} was removed: it stopped before its first checkpoint, so there was nothing to resume; "
            f"the run must be restarted: {restart}")


def _diverged(exc: FloatingPointError, trainer: TrainingLoop, run_dir: Path, kept: bool,
              restart: str) -> TrainingDivergedError:
    """The user error for a non-finite loss, embedding or weight: the step, what went non-finite, what to
    change (the loop's own hints), and whether the run can be resumed (with the change) or must be restarted."""
    hints = trainer.divergence_hints()
    lower = trainer.lower_lr_override()
    try_ = hints[0] if len(hints) == 1 else ", ".join(hints[:-1]) + " or " + hints[-1]
    if kept:
        where = (f"{_kept(run_dir, trainer)}: "
                 f"resume it with a lower learning rate: `cl train --resume {run_dir} {lower}`")
    else:
        where = (f"{run_dir} was removed: no checkpoint had been written, so there was nothing to resume; "
                 f"start again with a lower learning rate: {restart}, adding `{lower}`")
    return TrainingDivergedError(
        f"training diverged after {trainer.step} of {trainer.total_steps} steps: {exc}\n"
        f"  {try_}\n{where}")


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
            change = value - before
            change = change if round(change, 4) != 0 else 0.0  # no "-0.0000" for a change that rounds to zero
            lines.append(f"  {key:<{width}}  {before:8.4f}  {value:8.4f}  {change:+8.4f}")
    return "\n".join(lines)


@attrs.frozen
class _Plan:
    """What a run is, decided before anything is built: its spec, where it goes, where it trains.

    Attributes:
        spec: the loaded spec (with ``--set`` overrides).
        source: the spec file (or the resumed run's ``spec.toml``), for messages.
        run_dir: the resumed directory, or the planned one of a new run (claimed later).
        resuming: whether ``run_dir`` is a run being continued.
        overrides: the ``--set`` overrides.
        restart: the command that starts this run again, for messages.
        device: where it trains.
        zero: whether this process is rank 0 (the one that writes files).
    """

    spec: PipelineSpec
    source: str
    run_dir: Path
    resuming: bool
    overrides: list[tuple[str, Any]]
    restart: str
    device: torch.device
    zero: bool


def _plan_run(spec_path: str | Path | None, resume: str | Path | None, overrides: list[tuple[str, Any]],
              registry: Any) -> _Plan:
    """Step 1: read the spec (a resumed run's own, after checking it can be resumed), pick the device and rank
    (joining a torchrun group), and plan the run directory.

    Raises:
        ClError: both or neither of a spec and a run; SpecError, CheckpointError as :func:`train` says.
    """
    if resume is not None and spec_path is not None:
        raise ClError(f"give a spec file or --resume RUN, not both (a resumed run uses its own {SPEC_NAME})")
    if resume is not None:
        run_dir = Path(resume)
        _check_resumable(run_dir, overrides)  # before the data is built, which can take minutes
        source = run_dir / SPEC_NAME
    elif spec_path is None:
        raise ClError("give a spec file, or --resume RUN")
    else:
        source = Path(spec_path)
    spec = load_spec(source, registry, overrides=overrides)
    if spec.run.num_threads:
        torch.set_num_threads(spec.run.num_threads)
    device = distributed.launch(resolve_device(spec.run.device))  # torchrun: join the group, pick the GPU
    if resume is None:
        run_dir = distributed.from_rank_zero(lambda: _planned_run_dir(spec, source))
    restart = f"`cl train {spec_path}`" + (" with the same --set options" if overrides else "")
    return _Plan(spec=spec, source=str(source), run_dir=run_dir, resuming=resume is not None, overrides=overrides,
                 restart=restart, device=device, zero=distributed.world()[0] == 0)


def _build_run(plan: _Plan, registry: Any, callbacks: Sequence[Callable[[TrainingLoop, int], None]],
               log: Callable[[str], None]) -> tuple[Pipeline, TrainingLoop]:
    """Step 2: seed every generator, build the pipeline with its data, check it can train, build the loop.

    Raises:
        SpecError, BuildError, DataError: as :func:`train` says; nothing is written yet.
    """
    seed_everything(plan.spec.run.seed)
    pipeline = build_pipeline(plan.spec, registry, device=plan.device, source=plan.source,
                              weights_follow=plan.resuming)
    check_trainable(pipeline, plan.source)
    assert pipeline.dataset is not None  # check_trainable
    log(f"data: {pipeline.dataset.describe()}")
    ctx = TrainContext(pipeline=pipeline, run_dir=plan.run_dir, seed=plan.spec.run.seed, device=plan.device,
                       callbacks=callbacks, log=log)
    return pipeline, build_training_loop(plan.spec, registry, ctx)


def _open_run_dir(plan: _Plan, pipeline: Pipeline, trainer: TrainingLoop, spec_text: str,
                  log: Callable[[str], None]) -> Path:
    """Step 3: claim a new run's directory and write its ``spec.toml``; or restore a resumed run's checkpoint
    (recording ``--set`` overrides in its ``spec.toml``). Returns the run directory.

    Raises:
        CheckpointError: the checkpoint does not fit or the run has finished; ClError: the name is taken.
    """
    if plan.resuming:
        _restore(trainer, plan.run_dir, plan.overrides)
        log(f"resuming {plan.run_dir} at step {trainer.step} of {trainer.total_steps}")
        if plan.overrides and plan.zero:  # the saved spec must keep describing the weights
            atomic_write_text(plan.run_dir / SPEC_NAME, spec_text)
            log(f"{plan.run_dir / SPEC_NAME}: updated with {_overrides_text(plan.overrides)}")
        return plan.run_dir
    explicit = bool(plan.spec.run.name)
    run_dir = distributed.from_rank_zero(lambda: _create_run_dir(plan.run_dir, explicit=explicit,
                                                                  spec_text=spec_text))
    trainer.run_dir = run_dir  # the claimed name: an auto-named run may have taken a "-2" suffix
    log(f"run directory: {run_dir}")
    return run_dir


def _fit_and_write(plan: _Plan, pipeline: Pipeline, trainer: TrainingLoop, run_dir: Path, info: dict[str, Any],
                   started: float, log: Callable[[str], None]) -> RunResult:
    """Step 4: train, then write the weights, plots and model card. A run that stops early keeps its directory
    when it holds a checkpoint (and says how to resume), else removes it.

    Raises:
        TrainingDivergedError; KeyboardInterrupt, BrokenPipeError or any other exception, with a note.
    """
    written = False  # the weights, plots and model card of the finished run
    try:
        distributed.barrier()
        log(f"training {sum(p.numel() for p in pipeline.parameters() if p.requires_grad):,} parameters "
            f"on {plan.device} for {trainer.total_steps} steps ({trainer.steps_per_epoch} per epoch)")
        plots_dir = run_dir / "plots" if trainer.plots else None
        try:
            results = trainer.fit(plots_dir=plots_dir)
        finally:  # before a stopped run's directory may be removed below
            trainer.close_metrics()
        seconds = time.perf_counter() - started
        if plan.zero:
            _write_outputs(pipeline, trainer, run_dir, plots_dir, results, seconds, info)
        written = True
        if plan.zero:  # last: a closed stdout loses no file
            log("results:\n" + format_results(results, trainer.start_results))
    except FloatingPointError as exc:  # a component's finiteness check: the run diverged (a user's lr, not a bug)
        kept = _keep_or_remove(run_dir, trainer.checkpoint_path, new_run=not plan.resuming, zero=plan.zero)
        raise _diverged(exc, trainer, run_dir, kept, plan.restart) from exc
    except BaseException as exc:  # Ctrl-C, a closed stdout pipe, a crash: say what is left of the run
        kept = _keep_or_remove(run_dir, trainer.checkpoint_path, new_run=not plan.resuming, zero=plan.zero)
        exc.add_note(f"the run is complete: `cl eval {run_dir}` shows its results" if written
                     else _stopped_note(run_dir, trainer, kept, plan.restart))
        raise
    return RunResult(run_dir=run_dir, results=results, steps=trainer.step, seconds=seconds,
                     start_results=trainer.start_results)


def _refuse_spawn_bootstrap() -> None:
    """Raise ClError inside a spawned worker that is re-running its parent's script: a script that calls
    :func:`train` at module level, without ``if __name__ == "__main__":``, would otherwise train again in every data
    worker (``trainer.data_processes``) while the parent waits for them."""
    import multiprocessing.process

    if getattr(multiprocessing.process.current_process(), "_inheriting", False):
        raise ClError("train() was called while a worker process started (it runs your script again to import it): "
                      "put the call under `if __name__ == \"__main__\":` (trainer.data_processes spawns workers, as "
                      "DataLoader's num_workers does)")


def train(
    spec_path: str | Path | None = None,
    *,
    overrides: Iterable[tuple[str, Any]] = (),
    resume: str | Path | None = None,
    host: PluginHost | None = None,
    callbacks: Sequence[Callable[[TrainingLoop, int], None]] = (),
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train from a spec file, or continue the run directory ``resume``: plan, build, open the run directory,
    fit and write (one step each, below).

    Raises:
        SpecError, BuildError, DataError, CheckpointError: user errors, raised before anything is written (a
            resumed run: before its files change; a missing, unreadable or finished checkpoint before the
            data is built). A spec with nothing to train is a SpecError that suggests ``cl eval SPEC``.
        TrainingDivergedError: the loss, an embedding or the weights became non-finite; the message names the
            step and what to change. The run directory is kept if it holds a checkpoint, else removed.
        KeyboardInterrupt, BrokenPipeError or any other exception while training: re-raised with a note
            (``__notes__``): the run directory is kept with the resume command if it holds a checkpoint, else
            removed.
    """
    _refuse_spawn_bootstrap()
    host = host or default_host()
    registry = host.registry()
    plan = _plan_run(spec_path, resume, list(overrides), registry)
    started = time.perf_counter()
    pipeline, trainer = _build_run(plan, registry, callbacks, log)
    info = provenance.collect(host)
    # pipeline.spec, not plan.spec: a tower taken from an earlier run saves its own table (see BuildContext.pin)
    spec_text = dump_spec(with_absolute_paths(pipeline.spec), info)
    run_dir = _open_run_dir(plan, pipeline, trainer, spec_text, log)
    return _fit_and_write(plan, pipeline, trainer, run_dir, info, started, log)


def _write_outputs(pipeline: Pipeline, trainer: TrainingLoop, run_dir: Path, plots_dir: Path | None,
                   results: dict[str, float], seconds: float, info: dict[str, Any]) -> None:
    """What a finished run adds to its directory (rank 0): the weights, plots and the model card."""
    dataset = pipeline.dataset
    assert dataset is not None  # a training pipeline has one
    save_weights(pipeline, run_dir / WEIGHTS_NAME)
    if plots_dir is not None:
        plots.loss_curve(run_dir / METRICS_NAME, plots_dir / "loss.png")
        plots.similarity_matrix(pipeline, plots_dir / "similarity.png")
    training = {"steps": trainer.step, "epochs": trainer.epochs, "device": str(trainer.device),
                "wall time (s)": f"{seconds:.0f}", "data": dataset.describe()}
    start = trainer.start_results
    atomic_write_text(run_dir / "README.md", modelcard.render(pipeline.spec, results=results, training=training,
                                                              provenance=info, start_results=start,
                                                              usage=modelcard.usage_notes(pipeline)))


def evaluate_run(run_dir: str | Path, *, host: PluginHost | None = None, overrides: Iterable[tuple[str, Any]] = (),
                 log: Callable[[str], None] = print) -> dict[str, float]:
    """Rebuild a finished run with its data, load ``model.safetensors`` and run the evaluators; or, given a spec
    file with nothing to train (an iterative decoder over saved models), build it and run its evaluators.

    Raises:
        CheckpointError: ``run_dir`` does not exist, is a file that is not a spec, or is not a finished run.
        SpecError: a spec file that trains (train it first: its evaluators would measure a random model), or
            one without ``[data]`` to evaluate on. SpecError, BuildError, DataError, WeightsError: as when the
            run was trained.
    """
    from .components.evaluator import run_evaluators
    from .weights import load_weights

    host = host or default_host()
    registry = host.registry()
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".toml":
        spec = load_spec(run_dir, registry, overrides=overrides)
        if spec.trains:
            raise SpecError(str(run_dir), [Problem("", "this spec trains: `cl train` it, then `cl eval` the run "
                                                       "directory it writes")])
        pipeline = build_pipeline(spec, registry, device=resolve_device(spec.run.device), source=str(run_dir))
    else:
        _require_directory(run_dir)
        if not (run_dir / WEIGHTS_NAME).is_file():
            raise CheckpointError(f"{run_dir} has no {WEIGHTS_NAME} (not a finished run)")
        spec = load_spec(run_dir / SPEC_NAME, registry, overrides=overrides)
        pipeline = build_pipeline(spec, registry, device=resolve_device(spec.run.device), weights_follow=True)
        load_weights(pipeline, run_dir / WEIGHTS_NAME)
    results = run_evaluators(pipeline, resolve_device(spec.run.device))
    log("results:\n" + format_results(results))
    return results
