"""The composition root: spec + registry -> :class:`Pipeline`, by constructor injection.

Fixed order: dataset, sampler, encoders, scorer, loss, decoder, objectives, evaluators. Each factory
``build(params, ctx)`` sees only what is already built, through :class:`BuildContext`; no component
looks anything up in a global registry (a factory that builds nested components, as an objective with its
own loss table or an encoder taken from an earlier run, goes through :func:`build_nested`, which uses the
build's own registry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch
from attrs import evolve, field, frozen

from .components import (
    Dataset,
    Decoder,
    Encoder,
    Evaluator,
    Loss,
    Objective,
    Sampler,
    Scorer,
    TrainContext,
    TrainingLoop,
)
from .errors import BuildError, ClError, Problem, SpecError
from .pipeline import Pipeline
from .registry import Registry
from .spec import ComponentRef, PipelineSpec
from .spec.model import ObjectiveRef


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
        scorer: the top-level scorer, once built (None when the spec has none).
        loss: the top-level loss, once built (None when the spec has none).
        decoder: the decoder, once built (None when the spec has none).
        registry: the registry this build resolves names with (for :func:`build_nested`).
        source: where the spec came from (a file name), for located errors.
        weights_follow: the caller loads the pipeline's own weights after the build (``from_pretrained``,
            ``cl eval``, a resumed run), so a factory need not fetch initial weights it would overwrite.
        pinned: where :meth:`pin` records params (shared by every context of one build).
    """

    spec: PipelineSpec | None = None
    seed: int = 0
    device: torch.device = torch.device("cpu")
    path: str = ""
    role: str | None = None
    dataset: Dataset | None = None
    encoders: Mapping[str, Encoder] = {}
    scorer: Scorer | None = None
    loss: Loss | None = None
    decoder: Decoder | None = None
    registry: Registry | None = None
    source: str = "spec"
    weights_follow: bool = False
    pinned: dict[str, Any] = field(factory=dict, eq=False)

    def pin(self, params: Any) -> None:
        """Record the params the saved spec should hold for the encoder being built, in place of those the spec
        gave (``core.from-run`` records the source tower's own table, so the saved run rebuilds it without the
        source). Only encoder tables (``encoders.<role>``) are pinned."""
        self.pinned[self.path] = params


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


def build_nested(ctx: BuildContext, ref: ComponentRef, path: str, expected: type) -> Any:
    """Build a component a factory's params name (an objective's own ``loss`` table, a tower's saved table)
    with the build's registry; errors are located at ``path``.

    Raises:
        BuildError: the context has no registry, or the factory failed.
    """
    if ctx.registry is None:
        raise BuildError(f"{path}: building a nested component needs the build's registry (BuildContext.registry)")
    return _build(ctx.registry, ref, evolve(ctx, path=path), expected, path)


def spec_problem(ctx: BuildContext, path: str, message: str, *hints: str) -> SpecError:
    """A :class:`SpecError` found while building (one that needs what other tables built), located at
    ``path`` of the spec ``ctx.source``."""
    return SpecError(ctx.source, [Problem(path, message, hints)])


def _objective_refs(spec: PipelineSpec) -> list[tuple[str, ObjectiveRef]]:
    """The objectives to build, with the spec path errors are located at: the ``[[objective]]`` tables, or
    the one contrastive objective a top-level ``[loss]`` means without them."""
    if spec.objective:
        return [(f"objective[{i}]", ref) for i, ref in enumerate(spec.objective)]
    if spec.loss is None:
        return []
    from ._builtin.composition_params import ContrastiveObjectiveParams

    return [("loss", ObjectiveRef(type="core.contrastive", params=ContrastiveObjectiveParams()))]


def _check_names(objectives: list[Objective], paths: list[str], ctx: BuildContext) -> None:
    """Objectives are logged by name: two with one name would mix their curves."""
    seen: dict[str, str] = {}
    for objective, path in zip(objectives, paths):
        if objective.name in seen:
            raise spec_problem(ctx, f"{path}.name", f"{objective.name!r} names {seen[objective.name]} already",
                               "give each objective its own name = \"...\"")
        seen[objective.name] = path


def _check_shared_used(spec: PipelineSpec, objectives: list[Objective], ctx: BuildContext) -> None:
    """A top-level ``[loss]`` that no ``[[objective]]`` uses is a mistake (it would train nothing)."""
    if not spec.objective or ctx.loss is None:
        return
    if not any(getattr(o, "loss", None) is ctx.loss for o in objectives):
        raise spec_problem(ctx, "loss", "no [[objective]] uses this loss (each has its own loss table)",
                           "remove [loss], or leave 'loss' out of an objective to use it")


def build_pipeline(
    spec: PipelineSpec,
    registry: Registry,
    *,
    device: torch.device | str = "cpu",
    with_data: bool = True,
    source: str = "spec",
    weights_follow: bool | None = None,
) -> Pipeline:
    """Build every component of ``spec``. ``with_data=False`` skips the dataset (loading weights).

    The pipeline's ``spec`` is ``spec`` with the encoder tables factories pinned (see
    :meth:`BuildContext.pin`): what a run saves.

    Args:
        source: the spec's file name, for errors found while building.
        weights_follow: whether the caller loads the pipeline's weights afterwards (default: not
            ``with_data``, i.e. a load).

    Raises:
        SpecError: a problem only the build can see (an objective's role that is not an encoder role, a
            top-level loss no objective uses), located by TOML path.
        BuildError: a factory failed (message names the spec path and the providing plugin).
        DataError: the dataset is missing or unreadable.
    """
    follow = (not with_data) if weights_follow is None else weights_follow
    ctx = BuildContext(spec=spec, seed=spec.run.seed, device=torch.device(device), registry=registry, source=source,
                       weights_follow=follow)
    dataset = None
    if with_data and spec.data is not None:
        dataset = _build(registry, spec.data, evolve(ctx, path="data"), Dataset)
        ctx = evolve(ctx, dataset=dataset)
    sampler = _build(registry, spec.sampler, evolve(ctx, path="sampler"), Sampler) if spec.sampler else None
    encoders: dict[str, Encoder] = {}
    for role, ref in spec.encoders.items():
        encoders[role] = _build(registry, ref, evolve(ctx, path=f"encoders.{role}", role=role, encoders=dict(encoders)),
                                Encoder)
    ctx = evolve(ctx, encoders=encoders)
    scorer = _build(registry, spec.scorer, evolve(ctx, path="scorer"), Scorer) if spec.scorer else None
    ctx = evolve(ctx, scorer=scorer)
    loss = _build(registry, spec.loss, evolve(ctx, path="loss"), Loss) if spec.loss else None
    ctx = evolve(ctx, loss=loss)
    decoder = _build(registry, spec.decoder, evolve(ctx, path="decoder"), Decoder) if spec.decoder else None
    ctx = evolve(ctx, decoder=decoder)
    refs = _objective_refs(spec)
    objectives = [_build(registry, ref, evolve(ctx, path=path), Objective) for path, ref in refs]
    _check_names(objectives, [path for path, _ in refs], ctx)
    _check_shared_used(spec, objectives, ctx)
    evaluators = [
        _build(registry, ref, evolve(ctx, path=f"evaluate[{i}]"), Evaluator) for i, ref in enumerate(spec.evaluate)
    ]
    return Pipeline(
        spec=_pinned(spec, ctx.pinned), dataset=dataset, sampler=sampler, encoders=encoders, scorer=scorer, loss=loss,
        decoder=decoder, objectives=objectives, evaluators=evaluators,
    )


def _pinned(spec: PipelineSpec, pinned: Mapping[str, Any]) -> PipelineSpec:
    encoders = {role: attrs.evolve(ref, params=pinned.get(f"encoders.{role}", ref.params))
                for role, ref in spec.encoders.items()}
    return attrs.evolve(spec, encoders=encoders) if pinned else spec


def build_training_loop(spec: PipelineSpec, registry: Registry, ctx: TrainContext) -> TrainingLoop:
    """Build the ``[trainer]`` component (``core.adamw`` unless the spec names another) for ``ctx.pipeline``.

    Raises:
        BuildError: the factory failed or returned something that is not a :class:`TrainingLoop`.
    """
    return _build(registry, spec.trainer, ctx, TrainingLoop, path="trainer")
