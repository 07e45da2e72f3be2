"""The training loop: AdamW with linear warmup and cosine decay, gradient clipping and accumulation,
autocast (bf16 on GPUs that support it, fp16 with a grad scaler on request), resumable checkpoints.

Deterministic on CPU: the data order of epoch ``e`` is drawn from a generator seeded with
``(seed, e)``, the global torch RNG (init, augmentation, dropout) is saved in every checkpoint, and a
resumed run skips the micro-batches already consumed, so resuming gives the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import functools
import math
import os
import queue
from concurrent.futures import BrokenExecutor, Executor, ThreadPoolExecutor
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .components import DataSource, TrainContext, TrainingLoop
from .components.training import CHECKPOINT_NAME, METRICS_NAME
from .errors import BuildError, CheckpointError, ClError, ClWarning, Problem, SpecError
from .spec import AdamWParams
from .types import Batch

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "Trainer", "build_adamw", "resolve_device", "resolve_precision"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an explicit device that is unavailable is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClError(f"run.device = '{name}' but CUDA is not available; use 'auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ClError(f"run.device = '{name}' but MPS is not available; use 'auto' or 'cpu'")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. ``auto``: bf16 on a CUDA GPU that supports it, else fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        raise ClError("trainer.precision = 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    return torch.float16


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that orders epoch ``epoch``'s batches (independent of anything else in the run)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def warmup_cosine(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices/kernels only (not biases, norms, embeddings' scales)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or "logit_scale" in name or "logit_bias" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    if not decay and not no_decay:
        raise ClError("the pipeline has no trainable parameters (every tower is frozen and nothing else learns)")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _prefetch(batches: Iterator[Batch], prepare: Callable[[Batch], Any], depth: int = 2,
              workers: int = 1, executor: Executor | None = None) -> Iterator[tuple[Batch, Any]]:
    """Prepare the next batches in the background while the model computes on this one: a thread draws the
    batches, and ``workers`` threads run ``prepare`` on them (decoding, resizing and tokenising release the GIL),
    up to ``depth + workers`` batches ahead; batches come out in the sampler's order whatever finishes first.

    ``prepare`` must not draw from the global RNG (augmentation happens on the device, in the encoder) and must be
    thread-safe (the encoders' caches are). With ``executor`` (``workers`` worker processes of
    :mod:`cl_core.prepare_processes`, owned by the caller) ``prepare`` runs there instead, and batches that
    were submitted but not taken are cancelled when the stream stops.
    """
    pool = executor or ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cl-prepare")
    q: queue.Queue = queue.Queue(maxsize=depth + max(0, workers - 1))
    done = object()
    stop = threading.Event()

    def feeder() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                q.put((batch, pool.submit(prepare, batch)))
            q.put(done)
        except BaseException as exc:  # re-raised in the consumer
            q.put(exc)

    thread = threading.Thread(target=feeder, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            batch, prepared = item
            try:
                result = prepared.result()
            except BrokenExecutor as exc:
                raise ClError(f"a data-path worker process died ({exc}); its own error, if it printed one, is above. "
                              "A script that calls train() must do so under `if __name__ == \"__main__\":`; if the "
                              "machine ran out of memory, lower trainer.data_processes or prepare in threads "
                              "(trainer.data_processes = 0)") from None
            yield batch, result
    finally:
        stop.set()
        while thread.is_alive() or not q.empty():
            try:
                item = q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
                continue
            if isinstance(item, tuple):
                item[1].cancel()
        if executor is None:
            pool.shutdown(wait=True, cancel_futures=True)


def check_roles(pipeline: Pipeline, source: DataSource) -> None:
    """Raise :class:`~cl_core.errors.BuildError`, before anything is written, when an encoder role that
    needs raw items is not among the inputs the sampler yields from ``source`` (roles are named after them)."""
    given = pipeline.sampler.input_roles(source) if pipeline.sampler is not None else ()
    missing = [role for role in pipeline.input_roles() if role not in given]
    if given and missing:
        spec = pipeline.spec
        assert spec.sampler is not None and spec.data is not None  # a pipeline that trains has both
        readers = [i for i, o in enumerate(pipeline.objectives) if missing[0] in o.input_roles]
        where = f"encoders.{missing[0]}" if missing[0] in pipeline.encoders or not readers else f"objective[{readers[0]}]"
        raise BuildError(
            f"{where}: no inputs for role(s) {', '.join(repr(r) for r in missing)}: sampler "
            f"{spec.sampler.type!r} yields {', '.join(repr(r) for r in given)} from data {spec.data.type!r}; "
            "name the [encoders.<role>] tables and the objectives' roles after those, or choose a sampler that "
            "yields the roles the objectives read")


def check_trainable(pipeline: Pipeline, source: str = "spec") -> None:
    """Raise a located :class:`~cl_core.errors.SpecError` (of the spec file ``source``) when the pipeline cannot
    train: nothing to train (no objective), or no ``[data]`` / ``[sampler]`` to train on."""
    problems = []
    if not pipeline.objectives:
        problems.append(Problem("loss", "nothing to train: the spec has no [loss] and no [[objective]]",
                                ("to run its evaluators as it is: cl eval SPEC",)))
    if pipeline.dataset is None:
        problems.append(Problem("data", "required to train: the table of the data to train on"))
    if pipeline.sampler is None:
        problems.append(Problem("sampler", "required to train: the table of the sampler that draws the batches"))
    if problems:
        raise SpecError(source, problems)


class Trainer(TrainingLoop):
    """``core.adamw``: trains a :class:`Pipeline` on its dataset's "train" split and runs its evaluators.

    Args:
        spec: the ``[trainer]`` params (:class:`~cl_core.spec.AdamWParams`).
        ctx: the pipeline, run directory, seed, device, callbacks and log.
    """

    def __init__(self, spec: AdamWParams, ctx: TrainContext) -> None:
        super().__init__(ctx)
        # The core loop trains the core's pipeline (a plugin's loop may see only the PipelineView).
        pipeline = cast("Pipeline", ctx.pipeline)
        check_trainable(pipeline)
        if spec.grad_cache_chunk:
            readers = [o.name for o in pipeline.objectives if not o.embeddings_only]
            if readers:
                raise BuildError(f"trainer.grad_cache_chunk: gradient caching needs objectives that read embeddings "
                                 f"only; {', '.join(readers)} read more (token states or their own inputs)")
        device = ctx.device
        self.pipeline = pipeline.to(device)
        self.spec = spec
        self.autocast_dtype = resolve_precision(spec.precision, device)
        self.train_source = pipeline.dataset.splits()["train"]
        check_roles(pipeline, self.train_source)
        self.micro_per_epoch = pipeline.sampler.num_batches(self.train_source)
        self.steps_per_epoch = -(-self.micro_per_epoch // spec.accumulate)
        self.epochs = spec.epochs
        self.total_steps = spec.epochs * self.steps_per_epoch
        if spec.max_steps is not None:
            self.total_steps = min(self.total_steps, spec.max_steps)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(pipeline, spec.weight_decay), lr=spec.lr, betas=spec.betas, eps=spec.eps
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(spec.warmup_steps, self.total_steps, spec.min_lr_ratio)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype is torch.float16)
        self.plots = spec.plots
        self.tensorboard = spec.tensorboard
        self.step = 0
        self.step_lr = 0.0  # the learning rate of the last optimizer step (logged as "lr")
        self.epoch = 0
        self.micro = 0  # next micro-batch index within the epoch
        self._workers: Executor | None = None  # trainer.data_processes: started with the first batch
        self._worker_payload: bytes | None = None
        if spec.data_processes:  # a data path that cannot be copied is said now, before any work
            from .prepare_processes import data_path_payload

            self._worker_payload = data_path_payload(pipeline)
            cores = os.cpu_count() or 1
            if spec.data_processes > cores:
                warnings.warn(ClWarning(f"trainer.data_processes = {spec.data_processes} on a machine with {cores} "
                                        "CPU cores: each worker holds a copy of the data path, and more workers "
                                        "than cores only share them"), stacklevel=2)
        # Under torchrun each rank trains on its share of every batch; losses gather across ranks, gradients
        # are averaged before each step, and only rank 0 writes files. Averaging once per optimizer step
        # (distributed.average_gradients) is what DDP does, without DDP's requirements: the loss is not a
        # module forward, frozen or unused modules (a decoder) need no find_unused_parameters, and
        # gradient accumulation needs no no_sync().
        self.rank, self.world_size = distributed.world()
        distributed.broadcast_module(self.pipeline)
        if self.rank != 0:
            self.log = lambda message: None

    def divergence_hints(self) -> list[str]:
        hints = [f"lower trainer.lr (now {self.spec.lr:g})"]
        clip = self.spec.grad_clip
        hints.append("enable trainer.grad_clip (e.g. 1.0)" if clip == 0 else f"lower trainer.grad_clip (now {clip:g})")
        if self.autocast_dtype is not None:  # trains in bf16 / fp16
            hints.append("set trainer.precision = 'fp32'")
        return hints

    def lower_lr_override(self) -> str:
        return f"--set trainer.lr={self.spec.lr / 10:g}"

    # -- state ---------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write the checkpoint (rank 0). ``total_steps`` is saved too, so that ``cl train --resume`` can tell
        a finished run before it builds the data.

        Raises:
            FloatingPointError: the weights are no longer finite (checked on every rank, which hold the same
                weights): the checkpoint on disk is left as it was, one that can still be resumed.
        """
        self._check_weights_finite()
        if self.rank != 0:
            return
        save_checkpoint(
            self.checkpoint_path, model=self.pipeline, optimizer=self.optimizer, scheduler=self.scheduler,
            scaler=self.scaler, progress={"step": self.step, "epoch": self.epoch, "micro": self.micro,
                                          "total_steps": self.total_steps, "eval": self.eval_results,
                                          "start_eval": self.start_results},
        )

    def _check_weights_finite(self) -> None:
        counts = [(~torch.isfinite(p.detach())).sum() for p in self.pipeline.parameters() if p.is_floating_point()]
        bad = int(torch.stack(counts).sum()) if counts else 0  # one device sync, not one per tensor
        if bad:
            raise FloatingPointError(f"the weights have {bad} non-finite values (NaN or inf) after step {self.step}")

    def resume(self) -> None:
        """Restore the last checkpoint of ``run_dir`` and drop metric lines logged after it.

        The optimizer and schedule keep this spec's hyper-parameters (lr, betas, eps, weight decay), not the
        checkpoint's, so ``cl train --resume RUN --set trainer.lr=...`` (the way on after a diverged run) takes
        effect; unchanged values give the same numbers, so a plain resume stays exact.

        Raises:
            CheckpointError: the checkpoint is missing, unreadable or does not fit the pipeline.
        """
        configured = [{k: group[k] for k in ("betas", "eps", "weight_decay")} for group in self.optimizer.param_groups]
        progress = load_checkpoint(
            self.checkpoint_path, model=self.pipeline, optimizer=self.optimizer, scheduler=self.scheduler,
            scaler=self.scaler,
        )
        self._reapply_hyperparameters(configured)
        self.step, self.epoch, self.micro = progress["step"], progress["epoch"], progress["micro"]
        self.eval_results = dict(progress.get("eval") or {})
        self.start_results = progress.get("start_eval")
        if self.step > self.total_steps:
            raise CheckpointError(f"checkpoint is at step {self.step}, past this run's {self.total_steps} steps")
        self.drop_metrics_after(self.step)

    def _reapply_hyperparameters(self, configured: list[dict[str, Any]]) -> None:
        """Undo what loading a checkpoint does to the hyper-parameters: ``configured`` (each group's before the
        load) and the spec's lr as the schedule's base, with the current lr recomputed as LambdaLR does."""
        groups = self.optimizer.param_groups
        for group, values in zip(groups, configured):
            group.update(values, initial_lr=self.spec.lr)
        self.scheduler.base_lrs = [self.spec.lr] * len(groups)
        for group, factor in zip(groups, self.scheduler.lr_lambdas):
            group["lr"] = self.spec.lr * factor(self.scheduler.last_epoch)

    # -- loop ----------------------------------------------------------------------------------------
    def _micro_batches(self) -> Iterator[tuple[int, Batch, Any]]:
        while self.epoch < self.spec.epochs and self.step < self.total_steps:
            generator = epoch_generator(self.seed, self.epoch)
            start = self.micro
            assert self.pipeline.sampler is not None  # a training pipeline has one
            batches = self.pipeline.sampler.batches(self.train_source, generator=generator, start=start)
            if self.world_size > 1 and not self.pipeline.sampler.rank_local:
                batches = (distributed.shard_batch(batch) for batch in batches)
            yielded = 0
            if self.spec.data_processes:
                if self._workers is None:
                    from .prepare_processes import start_workers

                    assert self._worker_payload is not None  # taken in __init__
                    self._workers = start_workers(self._worker_payload, self.spec.data_processes)
                from .prepare_processes import prepare_in_worker

                prefetched = _prefetch(batches, prepare_in_worker, workers=self.spec.data_processes,
                                       executor=self._workers)
            else:
                prefetched = _prefetch(batches, self.pipeline.prepare, workers=self.spec.data_workers)
            for offset, (batch, prepared) in enumerate(prefetched):
                yielded += 1
                yield start + offset, batch, prepared
            if self.micro < self.micro_per_epoch and yielded == 0:
                # The sampler drew fewer batches than num_batches() promised (e.g. labels too repeated for
                # no-duplicate batches): end the epoch rather than ask for the same missing batches forever.
                self.epoch, self.micro = self.epoch + 1, 0

    def fit(self, plots_dir: Path | None = None) -> dict[str, float]:
        """Train to ``total_steps`` (continuing from the current state), evaluate, return eval metrics."""
        from tqdm.auto import tqdm

        spec = self.spec
        self.pipeline.train()
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not spec.progress or self.rank != 0,
                   unit="step",
                   dynamic_ncols=True, desc="train")
        if spec.eval_on_start and self.step == 0:
            self.start_results = self.evaluate()
            self.pipeline.train()
        started = time.perf_counter()
        first_step = self.step  # a resumed run reports the steps of this process, not of the whole run
        seen = 0
        running: dict[str, float] = {}
        in_group = 0
        try:
            for micro, batch, prepared in self._micro_batches():
                group_size = min(spec.accumulate, self.micro_per_epoch - (micro - micro % spec.accumulate))
                with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                    enabled=self.autocast_dtype is not None):
                    if spec.grad_cache_chunk:
                        out = self.pipeline.grad_cache_backward(
                            prepared, self.device, spec.grad_cache_chunk,
                            scale=functools.partial(self._scaled, group_size=group_size),
                        )
                    else:
                        out = self.pipeline.training_loss(prepared, self.device)
                if not spec.grad_cache_chunk:
                    self._scaled(out.value, group_size).backward()
                seen += len(batch)
                in_group += 1
                for name, value in {"loss": out.value, **out.parts}.items():
                    running[name] = running.get(name, 0.0) + float(value.detach()) / group_size
                self.micro = micro + 1
                if in_group < group_size:
                    continue
                in_group = 0
                self._optimizer_step()
                if self.micro >= self.micro_per_epoch:
                    self.epoch, self.micro = self.epoch + 1, 0
                    if spec.eval_every and self.epoch % spec.eval_every == 0 and self.epoch < spec.epochs:
                        self.evaluate()
                        self.pipeline.train()
                record = {"step": self.step, "epoch": self.epoch, **running, "lr": self.step_lr,
                          **self.pipeline.logged_scalars()}
                running = {}
                if self.step % spec.log_every == 0 or self.step == self.total_steps:
                    self.write_metrics(record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                at_epoch_end = self.micro == 0
                if (spec.checkpoint_every and self.step % spec.checkpoint_every == 0) or at_epoch_end \
                        or self.step == self.total_steps:
                    self.save_checkpoint()
                for callback in self.callbacks:
                    callback(self, self.step)
                if self.step >= self.total_steps:
                    break
        finally:
            bar.close()
            if self._workers is not None:
                self._workers.shutdown(wait=True, cancel_futures=True)
                self._workers = None
        elapsed = time.perf_counter() - started
        if seen:
            self.log(f"trained {_steps_done(first_step, self.step)} in {elapsed:.1f} s "
                     f"({seen / max(elapsed, 1e-9):.0f} pairs/s)")
        results = self.evaluate(plots_dir)
        self.save_checkpoint()
        return results

    def _scaled(self, value: torch.Tensor, group_size: int) -> torch.Tensor:
        """What a micro-batch backpropagates: its share of the accumulated step, loss-scaled for fp16."""
        return self.scaler.scale(value / group_size)

    def _optimizer_step(self) -> None:
        distributed.average_gradients(p for g in self.optimizer.param_groups for p in g["params"])
        if self.spec.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.spec.grad_clip
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        # The rate this step used: after scheduler.step() the groups hold the next step's (0 after the last).
        self.step_lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.pipeline.post_step()
        self.step += 1


def _steps_done(first: int, last: int) -> str:
    """``"192 steps"``, or for a resumed run ``"172 steps (20 -> 192)"``."""
    done = f"{last - first} step{'s' if last - first != 1 else ''}"
    return f"{done} ({first} -> {last})" if first else done


def build_adamw(params: AdamWParams, ctx: TrainContext) -> Trainer:
    return Trainer(params, ctx)
