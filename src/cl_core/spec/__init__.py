"""Specs: TOML files -> frozen attrs :class:`PipelineSpec`, with every problem located by TOML path.

Torch-free: validating a spec builds nothing. No import paths, no interpolation: a spec can never
execute code. Overrides (``--set trainer.lr=1e-4``) are parsed as TOML values.
"""

from __future__ import annotations

import re
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
    ObjectiveRef,
    PipelineSpec,
    RunSpec,
    SamplerRef,
    ScorerRef,
    TrainerRef,
    TrainerSpec,
)
from .structure import Structurer, join
from .text import override_value, toml_value

__all__ = [
    "ComponentRef", "DatasetRef", "DecoderRef", "EncoderRef", "EvaluatorRef", "LossRef", "ObjectiveRef", "PipelineSpec",
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
    """Parse ``a.b.c=value`` strings; values are TOML (``1e-4``, ``true``, ``["x"]``) or bare strings. A key
    reaches into an array of tables by index: ``evaluate[0].max_pairs`` (or ``evaluate.0.max_pairs``).

    Raises:
        SpecError: an item without ``=`` or without a key.
    """
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


_KEY_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def _override_path(key: str) -> list[str | int]:
    """The parts of an override key: ``evaluate[0].max_pairs`` -> ``["evaluate", 0, "max_pairs"]``. A part of
    digits after a dot (``evaluate.0``) stays text: it is an index only where it meets an array.

    Raises:
        SpecError: a key that is not dotted names, each optionally followed by ``[N]`` indexes.
    """
    parts: list[str | int] = []
    for segment in key.split("."):
        match = _KEY_PART.fullmatch(segment.strip())
        if match is None:
            raise SpecError("--set", [Problem(key, "expected a key like trainer.lr or evaluate[0].max_pairs "
                                                   "(names joined by dots, [N] to pick an entry of an array)")])
        parts.append(match.group(1))
        parts += [int(i) for i in re.findall(r"\d+", match.group(2))]
    return parts


def _entries(n: int) -> str:
    return {0: "no entries", 1: "1 entry (index 0)"}.get(n, f"{n} entries (indexes 0 to {n - 1})")


def _index(node: list, part: str | int, where: str, key: str) -> int:
    """The array index ``part`` names in ``node`` (the array at ``where``)."""
    if isinstance(part, str) and not part.isdigit():
        raise SpecError("--set", [Problem(key, f"'{where}' is an array with {_entries(len(node))}: pick one "
                                               f"with {where}[N]")])
    index = int(part)
    if index >= len(node):
        raise SpecError("--set", [Problem(key, f"index {index} is out of range: '{where}' has "
                                               f"{_entries(len(node))}")])
    return index


def _step(node: Any, part: str | int, where: str, key: str) -> tuple[Any, str]:
    """The child ``part`` of ``node`` (the table or array at ``where``) and the child's path; a missing table
    is created (``--set encoders.text.width=4`` may add ``[encoders.text]``)."""
    if isinstance(node, list):
        index = _index(node, part, where, key)
        return node[index], join(where, index)
    if isinstance(part, int):
        raise SpecError("--set", [Problem(key, f"'{where}' is not an array")])
    return node.setdefault(part, {}), join(where, part)


def _set_override(data: dict[str, Any], key: str, value: Any) -> str:
    """Put ``value`` at ``key`` in ``data``; returns the TOML path it went to (``evaluate[0].max_pairs``)."""
    *parents, last = _override_path(key)
    node: Any = data
    where = ""
    for part in parents:
        node, where = _step(node, part, where, key)
        if not isinstance(node, (dict, list)):
            raise SpecError("--set", [Problem(key, f"'{where}' is not a table")])
    if isinstance(node, list):
        index = _index(node, last, where, key)
        node[index] = value
        return join(where, index)
    if isinstance(last, int):
        raise SpecError("--set", [Problem(key, f"'{where}' is not an array")])
    node[last] = value
    return join(where, last)


def _apply_overrides(data: dict[str, Any], overrides: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """Apply ``--set`` overrides in order; returns ``(TOML path, "--set key=value")`` of each."""
    applied = []
    for key, value in overrides:
        applied.append((_set_override(data, key, value), f"--set {key}={override_value(value)}"))
    return applied


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _override_hints(path: str, applied: list[tuple[str, str]]) -> list[str]:
    """What ``--set`` has to do with a problem at ``path``: the override that put the value there (the last
    one that reached it), else those that changed a value inside the table the problem is about."""
    own = next((text for where, text in reversed(applied) if _under(path, where)), None)
    if own is not None:
        return [f"the value comes from {own}"]
    return [f"a value in it comes from {text}" for where, text in applied if path and _under(where, path)]


def _blame_overrides(error: SpecError, applied: list[tuple[str, str]]) -> SpecError:
    """``error`` with each problem that an override is part of saying which ``--set`` it was, so nobody
    searches the spec file for a value the command line gave."""
    problems = [attrs.evolve(p, hints=(*_override_hints(p.path, applied), *p.hints)) for p in error.problems]
    return SpecError(error.source, problems)


def structure_spec(data: Mapping[str, Any], registry: Registry, source: str = "<spec>") -> PipelineSpec:
    """Structure raw spec data; raises :class:`SpecError` listing every problem at once."""
    problems: list[Problem] = []
    fmt = data.get("format", 1)
    if fmt not in SUPPORTED_FORMATS:
        problems.append(Problem("format", f"unsupported spec format {toml_value(fmt)}; this cl-core reads format 1"))
        raise SpecError(source, problems)
    structurer = Structurer(registry, CONVERTER)
    ok, spec = structurer.attrs_class(data, PipelineSpec, "")
    if not ok:
        raise SpecError(source, structurer.problems)
    return spec


def loads_spec(
    text: str, registry: Registry, *, source: str = "<string>", overrides: Iterable[tuple[str, Any]] = ()
) -> PipelineSpec:
    """Parse TOML text into a :class:`PipelineSpec`, after applying ``overrides`` (see :func:`parse_overrides`).

    Raises:
        SpecError: invalid TOML, an override that cannot be applied (a key through a value that is not a table,
            an array index out of range), or problems in the structured spec; a problem in a value an
            override set says which ``--set`` gave it.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, [Problem("", f"invalid TOML: {exc}")]) from None
    applied = _apply_overrides(data, overrides)
    try:
        return structure_spec(data, registry, source)
    except SpecError as exc:
        raise _blame_overrides(exc, applied) from None


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
        objective=tuple(fix(r) for r in spec.objective),
        encoders={role: fix(ref) for role, ref in spec.encoders.items()},
    )


def evolve_params(ref: ComponentRef, **changes: Any) -> ComponentRef:
    """A copy of a component reference with some params changed."""
    return attrs.evolve(ref, params=attrs.evolve(ref.params, **changes))
