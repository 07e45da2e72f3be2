"""Specs: TOML files -> frozen attrs :class:`PipelineSpec`, with every problem located by TOML path.

Torch-free: validating a spec builds nothing. No import paths, no interpolation: a spec can never
execute code. Overrides (``--set trainer.lr=1e-4``) are parsed as TOML values.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import tomli_w

from ..errors import Problem, SpecError
from ..registry import Registry
from .model import (
    AdamWParams,
    ComponentRef,
    DatasetRef,
    DecoderRef,
    EncoderRef,
    EvaluatorRef,
    LossRef,
    PipelineSpec,
    RunSpec,
    SamplerRef,
    ScorerRef,
    TrainerRef,
    TrainerSpec,
)
from .structure import Structurer

__all__ = [
    "ComponentRef", "DatasetRef", "DecoderRef", "EncoderRef", "EvaluatorRef", "LossRef", "PipelineSpec",
    "RunSpec", "SamplerRef", "ScorerRef", "TrainerSpec", "TrainerRef", "AdamWParams", "load_spec", "loads_spec", "dump_spec",
    "unstructure_spec", "parse_overrides", "structure_spec", "with_absolute_paths",
]

SUPPORTED_FORMATS = (1,)


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter()

    def unstructure_ref(ref: ComponentRef) -> dict[str, Any]:
        return {"type": ref.type, **conv.unstructure(ref.params)}

    conv.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, ComponentRef), unstructure_ref
    )
    return conv


CONVERTER = _converter()


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


def unstructure_spec(spec: PipelineSpec) -> dict[str, Any]:
    """Plain data of a spec with every default filled (None values left out: TOML has no null)."""
    return _drop_none(CONVERTER.unstructure(spec))


def dump_spec(spec: PipelineSpec, provenance: Mapping[str, Any] | None = None) -> str:
    """TOML text of the fully resolved spec, optionally with a ``[provenance]`` table."""
    data = unstructure_spec(spec)
    data.pop("provenance", None)
    if provenance is not None:
        data["provenance"] = _drop_none(dict(provenance))
    return tomli_w.dumps(data)


def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    """Parse ``a.b.c=value`` strings; values are TOML (``1e-4``, ``true``, ``["x"]``) or bare strings."""
    out = []
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(Problem("--set", f"expected KEY=VALUE, got {item!r}"))
            continue
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out.append((key, value))
    if problems:
        raise SpecError("--set", problems)
    return out


def _apply_overrides(data: dict[str, Any], overrides: Iterable[tuple[str, Any]]) -> None:
    for key, value in overrides:
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError("--set", [Problem(key, f"'{part}' is not a table")])
        node[parts[-1]] = value


def structure_spec(data: Mapping[str, Any], registry: Registry, source: str = "<spec>") -> PipelineSpec:
    """Structure raw spec data; raises :class:`SpecError` listing every problem at once."""
    problems: list[Problem] = []
    fmt = data.get("format", 1)
    if fmt not in SUPPORTED_FORMATS:
        problems.append(Problem("format", f"unsupported spec format {fmt!r}; this cl-core reads format 1"))
        raise SpecError(source, problems)
    structurer = Structurer(registry, CONVERTER)
    ok, spec = structurer.attrs_class(data, PipelineSpec, "")
    if not ok:
        raise SpecError(source, structurer.problems)
    return spec


def loads_spec(
    text: str, registry: Registry, *, source: str = "<string>", overrides: Iterable[tuple[str, Any]] = ()
) -> PipelineSpec:
    """Parse TOML text into a :class:`PipelineSpec`. Raises :class:`SpecError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, [Problem("", f"invalid TOML: {exc}")]) from None
    _apply_overrides(data, overrides)
    return structure_spec(data, registry, source)


def load_spec(
    path: str | Path, registry: Registry, *, overrides: Iterable[tuple[str, Any]] = ()
) -> PipelineSpec:
    """Read and structure a spec file. Raises :class:`SpecError` (also for a missing file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), [Problem("", "spec file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [Problem("", f"cannot read the spec file: {exc}")]) from None
    return loads_spec(text, registry, source=str(path), overrides=overrides)


def with_absolute_paths(spec: PipelineSpec) -> PipelineSpec:
    """The spec with every path parameter of every component made absolute (what a run saves, so it can be
    evaluated or resumed from another working directory)."""
    from .validators import absolute_paths

    def fix(ref: Any) -> Any:
        return attrs.evolve(ref, params=absolute_paths(ref.params)) if isinstance(ref, ComponentRef) else ref

    return attrs.evolve(
        spec, data=fix(spec.data), sampler=fix(spec.sampler), scorer=fix(spec.scorer), loss=fix(spec.loss),
        decoder=fix(spec.decoder), trainer=fix(spec.trainer), evaluate=tuple(fix(r) for r in spec.evaluate),
        encoders={role: fix(ref) for role, ref in spec.encoders.items()},
    )


def evolve_params(ref: ComponentRef, **changes: Any) -> ComponentRef:
    """A copy of a component reference with some params changed."""
    return attrs.evolve(ref, params=attrs.evolve(ref.params, **changes))
