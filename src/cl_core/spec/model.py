"""The spec model: frozen attrs classes a TOML spec file is structured into (torch-free).

Component tables (``[data]``, ``[sampler]``, ``[encoders.<role>]``, ``[scorer]``, ``[loss]``,
``[decoder]``, ``[[objective]]``, ``[[evaluate]]``) hold one reserved key, ``type`` (a registered component name); every
other key is a field of that component's ``Params`` class.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs
from attrs import field, frozen, validators

Device = str  # "auto", "cpu", "cuda", "cuda:1", "mps"
Precision = Literal["auto", "fp32", "bf16", "fp16"]


def _device(_: Any, attribute: Any, value: str) -> None:
    base = value.split(":", 1)[0]
    if base not in ("auto", "cpu", "cuda", "mps") or (":" in value and not value.split(":", 1)[1].isdigit()):
        raise ValueError("expected 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'")


@frozen(kw_only=True)
class ComponentRef:
    """A component chosen in a spec: its registered name and its structured ``Params`` instance."""

    kind: ClassVar[str] = ""
    #: the component used when the table has no ``type`` key (None: ``type`` is required)
    default_type: ClassVar[str | None] = None
    type: str
    params: Any


@frozen(kw_only=True)
class DatasetRef(ComponentRef):
    kind: ClassVar[str] = "dataset"


@frozen(kw_only=True)
class SamplerRef(ComponentRef):
    kind: ClassVar[str] = "sampler"


@frozen(kw_only=True)
class EncoderRef(ComponentRef):
    kind: ClassVar[str] = "encoder"


@frozen(kw_only=True)
class ScorerRef(ComponentRef):
    kind: ClassVar[str] = "scorer"


@frozen(kw_only=True)
class LossRef(ComponentRef):
    kind: ClassVar[str] = "loss"


@frozen(kw_only=True)
class DecoderRef(ComponentRef):
    kind: ClassVar[str] = "decoder"


@frozen(kw_only=True)
class ObjectiveRef(ComponentRef):
    kind: ClassVar[str] = "objective"


@frozen(kw_only=True)
class EvaluatorRef(ComponentRef):
    kind: ClassVar[str] = "evaluator"


@frozen(kw_only=True)
class TrainerRef(ComponentRef):
    kind: ClassVar[str] = "trainer"
    default_type: ClassVar[str | None] = "core.adamw"


def ref_class(kind: str) -> type[ComponentRef]:
    """The :class:`ComponentRef` subclass of a component kind (``"loss"`` -> :class:`LossRef`).

    Raises:
        KeyError: no such kind.
    """
    for cls in ComponentRef.__subclasses__():
        if cls.kind == kind:
            return cls
    raise KeyError(kind)


@frozen(kw_only=True)
class RunSpec:
    """``[run]``.

    Attributes:
        seed: seeds every random number generator of the run (data order, init, augmentation).
        device: ``auto`` picks cuda, then mps, then cpu.
        output_dir: parent folder of run directories.
        name: run directory name; default ``<spec stem>-<timestamp>``.
        num_threads: CPU threads for torch; default: all cores.
    """

    seed: int = 0
    device: Device = field(default="auto", validator=_device)
    output_dir: str = "runs"
    name: str | None = None
    num_threads: int | None = field(default=None, validator=validators.optional(validators.gt(0)))


@frozen(kw_only=True)
class AdamWParams:
    """``core.adamw``, the default ``[trainer]``: AdamW, linear warmup then cosine decay, and bookkeeping.

    Attributes:
        epochs: passes over the training data.
        max_steps: stop after this many optimizer steps (default: epochs x steps per epoch).
        lr: peak learning rate.
        min_lr_ratio: final learning rate as a fraction of ``lr`` at the end of the cosine.
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms, logit scales).
        betas: AdamW betas.
        eps: AdamW epsilon.
        warmup_steps: linear warmup length in optimizer steps.
        grad_clip: clip the global gradient norm to this value; 0 disables.
        accumulate: micro-batches per optimizer step (gradient accumulation).
        grad_cache_chunk: gradient caching (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size
            under Memory Limited Setup"): encode each micro-batch in chunks of this many rows, once without
            gradients for the loss and once per chunk with the cached embedding gradients, so a large batch
            of in-batch negatives fits in memory. 0 = off. Same loss and gradients as without it.
        precision: ``auto`` = bf16 autocast on GPUs that support it, fp32 on CPU; ``fp16`` uses a grad scaler.
        checkpoint_every: write a resumable checkpoint every N optimizer steps (0: at each epoch end only).
        log_every: write a metrics line every N optimizer steps.
        eval_every: run the evaluators every N epochs (0: only at the end).
        eval_on_start: also run the evaluators before the first step, so the results show the starting
            point (e.g. the pretrained model) next to the trained one.
        plots: write plots (loss curve, similarity matrix, zero-shot examples) into the run directory.
        tensorboard: write TensorBoard event files when the tensorboard package is installed: every scalar
            of ``metrics.jsonl`` (losses, lr, logit scale, evaluation results) at its step, into the run's
            ``tensorboard/`` folder. Without the package (the ``tensorboard`` extra) nothing is written and
            nothing is said: it is optional.
        progress: show a progress bar.
        data_workers: threads that run the encoders' ``prepare`` (decoding, resizing, tokenising) on the next
            batches while the model trains on this one (1: one background thread). The batches and their order are
            the same for every value; more threads feed a fast accelerator from several CPU cores.
        data_processes: run ``prepare`` in this many spawned worker processes instead of threads, as
            ``DataLoader(num_workers=N)`` does (0: in this process's ``data_workers`` threads). The batches and
            their order are the same; each worker holds a copy of the pipeline's data path (see
            :mod:`cl_core.prepare_processes`), so a frozen tower's cached rows are still decoded there.
    """

    epochs: int = field(default=1, validator=validators.gt(0))
    max_steps: int | None = field(default=None, validator=validators.optional(validators.gt(0)))
    lr: float = field(default=5e-4, validator=validators.gt(0))
    min_lr_ratio: float = field(default=0.0, validator=[validators.ge(0), validators.le(1)])
    weight_decay: float = field(default=0.1, validator=validators.ge(0))
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = field(default=1e-6, validator=validators.gt(0))
    warmup_steps: int = field(default=0, validator=validators.ge(0))
    grad_clip: float = field(default=1.0, validator=validators.ge(0))
    accumulate: int = field(default=1, validator=validators.gt(0))
    grad_cache_chunk: int = field(default=0, validator=validators.ge(0))
    precision: Precision = "auto"
    checkpoint_every: int = field(default=0, validator=validators.ge(0))
    log_every: int = field(default=10, validator=validators.gt(0))
    eval_every: int = field(default=0, validator=validators.ge(0))
    eval_on_start: bool = False
    plots: bool = True
    tensorboard: bool = True
    progress: bool = True
    data_workers: int = field(default=1, validator=validators.ge(1))
    data_processes: int = field(default=0, validator=validators.ge(0))


@frozen(kw_only=True)
class PipelineSpec:
    """A whole spec file.

    What trains: the ``[[objective]]`` tables; without any, ``[loss]`` (with ``[scorer]``) over the first two
    encoder roles is the one objective. A spec with neither trains nothing: its encoders, decoder and
    evaluators run with ``cl eval SPEC`` (an iterative decoder over a trained model). ``[data]`` and
    ``[sampler]`` are needed to train; ``[data]`` also to evaluate.
    """

    format: int = 1
    run: RunSpec = RunSpec()
    data: DatasetRef | None = None
    sampler: SamplerRef | None = None
    encoders: dict[str, EncoderRef] = field(factory=dict)
    scorer: ScorerRef | None = None
    loss: LossRef | None = None
    decoder: DecoderRef | None = None
    objective: tuple[ObjectiveRef, ...] = ()
    trainer: TrainerRef = field(factory=lambda: TrainerRef(type="core.adamw", params=AdamWParams()))
    evaluate: tuple[EvaluatorRef, ...] = ()
    provenance: dict[str, Any] | None = None

    def components(self) -> list[tuple[str, ComponentRef]]:
        """Every component table of the spec with its TOML path, nested ones included (an objective's own
        ``loss`` table, the saved table of a tower taken from a run), top-level tables first."""
        found: list[tuple[str, ComponentRef]] = []

        def walk(path: str, value: Any) -> None:
            if isinstance(value, ComponentRef):
                found.append((path, value))
                walk(path, value.params)
            elif isinstance(value, (tuple, list)):
                for i, item in enumerate(value):
                    walk(f"{path}[{i}]", item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    walk(f"{path}.{key}" if path else key, item)
            elif attrs.has(type(value)):
                for f in attrs.fields(type(value)):
                    walk(f"{path}.{f.name}" if path else f.name, getattr(value, f.name))

        for f in attrs.fields(type(self)):
            if f.name != "provenance":
                walk(f.name, getattr(self, f.name))
        return found

    @property
    def trains(self) -> bool:
        """Whether the spec has anything to train (objectives, or a top-level loss)."""
        return bool(self.objective) or self.loss is not None

    def __attrs_post_init__(self) -> None:
        if not self.encoders and self.decoder is None:
            raise ValueError("a spec needs [encoders.<role>] tables or a [decoder]")


#: The old name of :class:`AdamWParams` (``[trainer]`` before training loops were pluggable).
TrainerSpec = AdamWParams
