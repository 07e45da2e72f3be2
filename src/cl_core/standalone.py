"""Build one component by hand, outside a spec: ``build("loss", "core.clip")``.

The parameters are checked exactly as the keys of a spec table are (the same structurer, so the same
located :class:`~cl_core.errors.SpecError` with "did you mean" and the list of parameters), then the
component's factory is called with a default :class:`~cl_core.build.BuildContext` (no spec, no dataset, no
encoders built, CPU). Nothing here imports torch until :func:`build` runs.

Example (``queries`` and ``candidates`` are ``[B, N]`` embeddings, row i of each a positive pair)::

    from cl_core.standalone import build
    from cl_core.types import Targets

    scorer = build("scorer", "core.cosine", temperature=0.05, learn_temperature=False)
    loss = build("loss", "core.clip")
    value = loss.compute(queries, candidates, scorer, Targets(positive=torch.arange(len(queries)))).value
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import Problem, SpecError, did_you_mean

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["build"]

#: Kinds whose factories take a BuildContext (a trainer's takes the TrainContext of a built pipeline).
_NOT_STANDALONE = ("trainer",)


def _plain(value: Any) -> Any:
    """A Python value as TOML would give it: tuples as lists, paths as strings (recursively)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def build(kind: str, name: str, /, *, registry: Registry | None = None, **params: Any) -> Any:
    """Build the component ``name`` of ``kind`` from keyword parameters, checked as in a spec table.

    ``build("scorer", "core.cosine", temperature=0.05)`` is the ``[scorer]`` table
    ``type = "core.cosine"`` / ``temperature = 0.05``: unset parameters take their defaults, values are
    checked against their declared types (an integer where a float is expected is fine; a string is not)
    and ranges, and the factory gets a default :class:`~cl_core.build.BuildContext` (so components that
    take a width from the encoders, as ``core.bilinear`` or ``core.memory-queue``, need it as a parameter).
    Tuples are passed as arrays and paths as strings.

    Args:
        kind: the component kind: "loss", "scorer", "sampler", "encoder", "decoder", "dataset",
            "evaluator" (any kind of the spec but "trainer").
        name: the registered name, e.g. ``"core.clip"``.
        registry: where ``name`` is looked up; default the installed plugins'
            (``cl_core.plugins.default_host().registry()``, configured by ``CL_LOAD_PLUGINS`` and friends).
        **params: the component's parameters, as keys of its spec table.

    Returns:
        What the factory builds: a :class:`~cl_core.components.Loss` for "loss", a
        :class:`~cl_core.components.Scorer` for "scorer", and so on.

    Raises:
        ValueError: ``kind`` is not a spec kind, or is "trainer".
        SpecError: an unknown ``name`` (with "did you mean" and the available names, or the plugin to
            install), an unknown parameter (with "did you mean" and the parameter list), a value of the wrong
            type or out of range, a missing required parameter; every problem at once, each located at
            ``<kind>.<parameter>``.
        Exception: whatever the factory raises for parameters valid on their own but not together with the
            (empty) build context, e.g. ``ValueError`` naming the missing ``dim``.
    """
    from .registry import KIND_HOOKS
    from .spec.model import ref_class

    kinds = [k for k in KIND_HOOKS if k not in _NOT_STANDALONE]
    if kind not in kinds:
        mean = did_you_mean(kind, kinds)
        raise ValueError(f"kind must be one of {', '.join(map(repr, sorted(kinds)))}, got {kind!r}"
                         + (f"; {mean}" if mean else ""))
    source = f"build({kind!r}, {name!r})"
    if "type" in params:
        raise SpecError(source, [Problem(f"{kind}.type", "reserved: the component is build()'s second argument, "
                                                          "not a parameter")])
    from .spec import CONVERTER
    from .spec.structure import Structurer

    if registry is None:
        from .plugins import default_host

        registry = default_host().registry()
    structurer = Structurer(registry, CONVERTER)
    ok, ref = structurer.component({"type": name, **_plain(params)}, ref_class(kind), kind)
    if not ok:
        raise SpecError(source, structurer.problems)
    from .build import BuildContext

    factory = registry.get(kind, ref.type).info.load_factory()
    return factory(ref.params, BuildContext(path=kind, registry=registry, source=source))
