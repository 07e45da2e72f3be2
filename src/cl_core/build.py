"""The composition root: spec + registry -> :class:`Pipeline`, by constructor injection.

Fixed order: dataset, sampler, encoders, scorer, loss, decoder, evaluators. Each factory
``build(params, ctx)`` sees only what is already built, through :class:`BuildContext`; no component
looks anything up in a global registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from attrs import evolve, frozen

from .components import Dataset, Decoder, Encoder, Evaluator, Loss, Sampler, Scorer, TrainContext, TrainingLoop
from .errors import BuildError, ClError, SpecError
from .pipeline import Pipeline
from .registry import Registry
from .spec import ComponentRef, PipelineSpec


@frozen(kw_only=True)
class BuildContext:
    """What a factory may depend on.

    Attributes:
        spec: the whole resolved spec (None when a component is built on its own, as in contract tests).
        seed: the run seed (``spec.run.seed``), for factories that draw random splits.
        device: where training will run (factories build on CPU; the trainer moves modules).
        path: TOML path of the component being built (``encoders.image``).
        role: encoder role being built, if any.
        dataset: the built dataset, if built already (None when loading weights only).
        encoders: encoders built so far, by role.
        scorer: the scorer, once built.
    """

    spec: PipelineSpec | None = None
    seed: int = 0
    device: torch.device = torch.device("cpu")
    path: str = ""
    role: str | None = None
    dataset: Dataset | None = None
    encoders: Mapping[str, Encoder] = {}
    scorer: Scorer | None = None


def _located(exc: ClError, path: str, type_name: str) -> ClError:
    """``exc`` with its message prefixed by the spec path of the component whose factory raised it (a
    factory knows its params, not where they stand in the spec), unless the message starts with it."""
    if path and exc.args and isinstance(exc.args[0], str) and not exc.args[0].startswith((path, f"building {path}")):
        exc.args = (f"{path} ({type_name}): {exc.args[0]}", *exc.args[1:])
    return exc


def _build(registry: Registry, ref: ComponentRef, ctx: Any, expected: type, path: str | None = None) -> Any:
    entry = registry.get(ref.kind, ref.type)
    path = path if path is not None else ctx.path
    provider = f"{ref.type} from {entry.distribution or entry.plugin}"
    try:
        component = entry.info.load_factory()(ref.params, ctx)
    except SpecError:
        raise
    except ClError as exc:
        raise _located(exc, path, ref.type)
    except Exception as exc:
        raise BuildError(f"building {path} ({provider}) failed:\n  {type(exc).__name__}: {exc}") from exc
    if not isinstance(component, expected):
        raise BuildError(
            f"building {path} ({provider}) returned {type(component).__name__}, expected a {expected.__name__}"
        )
    return component


def build_pipeline(
    spec: PipelineSpec,
    registry: Registry,
    *,
    device: torch.device | str = "cpu",
    with_data: bool = True,
) -> Pipeline:
    """Build every component of ``spec``. ``with_data=False`` skips the dataset (loading weights).

    Raises:
        BuildError: a factory failed (message names the spec path and the providing plugin).
        DataError: the dataset is missing or unreadable.
    """
    ctx = BuildContext(spec=spec, seed=spec.run.seed, device=torch.device(device))
    dataset = None
    if with_data:
        dataset = _build(registry, spec.data, evolve(ctx, path="data"), Dataset)
        ctx = evolve(ctx, dataset=dataset)
    sampler = _build(registry, spec.sampler, evolve(ctx, path="sampler"), Sampler)
    encoders: dict[str, Encoder] = {}
    for role, ref in spec.encoders.items():
        encoders[role] = _build(registry, ref, evolve(ctx, path=f"encoders.{role}", role=role, encoders=dict(encoders)), Encoder)
    ctx = evolve(ctx, encoders=encoders)
    scorer = _build(registry, spec.scorer, evolve(ctx, path="scorer"), Scorer)
    ctx = evolve(ctx, scorer=scorer)
    loss = _build(registry, spec.loss, evolve(ctx, path="loss"), Loss)
    decoder = None
    if spec.decoder is not None:
        decoder = _build(registry, spec.decoder, evolve(ctx, path="decoder"), Decoder)
    evaluators = [
        _build(registry, ref, evolve(ctx, path=f"evaluate[{i}]"), Evaluator) for i, ref in enumerate(spec.evaluate)
    ]
    return Pipeline(
        spec=spec, dataset=dataset, sampler=sampler, encoders=encoders, scorer=scorer, loss=loss,
        decoder=decoder, evaluators=evaluators,
    )



def build_training_loop(spec: PipelineSpec, registry: Registry, ctx: TrainContext) -> TrainingLoop:
    """Build the ``[trainer]`` component (``core.adamw`` unless the spec names another) for ``ctx.pipeline``.

    Raises:
        BuildError: the factory failed or returned something that is not a :class:`TrainingLoop`.
    """
    return _build(registry, spec.trainer, ctx, TrainingLoop, path="trainer")
