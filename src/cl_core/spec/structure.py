"""Structure plain TOML data into attrs classes, collecting every problem located by TOML path.

cattrs does the conversion (lists to tuples, nested classes); before that, this module checks each
value against its annotation *strictly* (TOML ``1.5`` is not silently an ``int``), runs each field's
validators one by one so an error names its field, and resolves component references (``type``)
through the registry.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from ..errors import Problem, UnknownComponentError, did_you_mean
from ..registry import Registry, plural
from .model import ComponentRef
from .text import toml_value

_NONE = type(None)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def describe(value: Any) -> str:
    """The TOML type of a value and, for a scalar, its TOML spelling (``boolean true``, ``string "abc"``)."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    kind = names.get(type(value), type(value).__name__)
    shown = toml_value(value) if not isinstance(value, (dict, list)) else ""
    return f"{kind} {shown}".strip()


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any value"
    if origin is typing.Literal:
        return "one of " + ", ".join(toml_value(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not _NONE)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"array of {type_name(args[0])}" if args else "array"
    if origin is dict:
        return "table"
    if attrs.has(tp):
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "boolean", Path: "path"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def param_parts(cls: type) -> list[str]:
    """``name: type = default`` for each field, in declaration order (defaults spelled as TOML, ``(not set)``
    for none): what ``cl components`` wraps, one whole parameter at a time."""
    attrs.resolve_types(cls)
    parts = []
    for f in attrs.fields(cls):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        shown = "required" if default is attrs.NOTHING else toml_value(default)
        parts.append(f"{f.name}: {type_name(f.type)} = {shown}")
    return parts


def param_signature(cls: type) -> str:
    """:func:`param_parts` on one line, for "parameters: ..." hints."""
    return ", ".join(param_parts(cls))


class Structurer:
    """Turns raw TOML data into spec objects; ``problems`` collects everything found."""

    def __init__(self, registry: Registry, converter: cattrs.Converter):
        self.registry = registry
        self.converter = converter
        self.problems: list[Problem] = []

    def error(self, path: str, message: str, *hints: str) -> None:
        self.problems.append(Problem(path, message, hints))

    # -- values ----------------------------------------------------------------------------------
    def value(self, data: Any, tp: Any, path: str) -> tuple[bool, Any]:
        """Check and convert one value; returns (ok, converted)."""
        origin = typing.get_origin(tp)
        if tp is Any:
            return True, data
        if isinstance(tp, type) and issubclass(tp, ComponentRef):
            return self.component(data, tp, path)
        if isinstance(tp, type) and attrs.has(tp):
            if not isinstance(data, Mapping):
                self.error(path, f"expected a table, got {describe(data)}")
                return False, None
            return self.attrs_class(data, tp, path)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not _NONE]
            for option in options:
                trial = Structurer(self.registry, self.converter)
                ok, out = trial.value(data, option, path)
                if ok:
                    return True, out
            if len(options) == 1:
                return self.value(data, options[0], path)
            self.error(path, f"expected {type_name(tp)}, got {describe(data)}")
            return False, None
        if origin is typing.Literal:
            choices = typing.get_args(tp)
            if data in choices and type(data) is type(choices[choices.index(data)]):
                return True, data
            spelled = {str(c): toml_value(c) for c in choices}
            mean = did_you_mean(str(data), spelled, show=spelled.__getitem__)
            self.error(path, f"expected {type_name(tp)}, got {describe(data)}" + (f"; {mean}" if mean else ""))
            return False, None
        if origin in (list, tuple):
            if not isinstance(data, list):
                self.error(path, f"expected {type_name(tp)}, got {describe(data)}")
                return False, None
            args = typing.get_args(tp)
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(args) != len(data):
                    self.error(path, f"expected an array of {len(args)} items, got {len(data)}")
                    return False, None
                item_types = list(args)
            else:
                item_types = [args[0] if args else Any] * len(data)
            results = [self.value(item, t, join(path, i)) for i, (item, t) in enumerate(zip(data, item_types))]
            if not all(ok for ok, _ in results):
                return False, None
            items = [v for _, v in results]
            return True, tuple(items) if origin is tuple else items
        if origin is dict:
            if not isinstance(data, Mapping):
                self.error(path, f"expected a table, got {describe(data)}")
                return False, None
            _, vt = typing.get_args(tp) or (str, Any)
            entries = {k: self.value(v, vt, join(path, k)) for k, v in data.items()}
            if not all(ok for ok, _ in entries.values()):
                return False, None
            return True, {k: v for k, (_, v) in entries.items()}
        if tp is bool:
            ok = isinstance(data, bool)
        elif tp is int:
            ok = isinstance(data, int) and not isinstance(data, bool)
        elif tp is float:
            ok = isinstance(data, (int, float)) and not isinstance(data, bool)
            data = float(data) if ok else data
        elif tp in (str, Path):
            ok = isinstance(data, str)
        else:
            ok = isinstance(data, tp)
        if not ok:
            self.error(path, f"expected {type_name(tp)}, got {describe(data)}")
            return False, None
        return True, data

    # -- attrs classes ---------------------------------------------------------------------------
    def attrs_class(
        self, data: Mapping[str, Any], cls: type, path: str, owner: str | None = None
    ) -> tuple[bool, Any]:
        """Structure ``data`` into ``cls``; ``owner`` names the component for messages."""
        attrs.resolve_types(cls)
        fields = {f.name: f for f in attrs.fields(cls) if f.init}
        before = len(self.problems)
        kwargs: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in fields:
                what = f"unknown parameter for {owner}" if owner else "unknown key"
                mean = did_you_mean(key, fields)
                hint = f"parameters: {param_signature(cls)}" if owner else f"keys: {', '.join(fields)}"
                self.error(join(path, key), what + (f"; {mean}" if mean else ""), hint)
                continue
            ok, value = self.value(raw, fields[key].type, join(path, key))
            if ok:
                kwargs[key] = value
        for name, f in fields.items():
            if name not in data and f.default is attrs.NOTHING:
                if isinstance(f.type, type) and (issubclass(f.type, ComponentRef) or attrs.has(f.type)):
                    self.error(join(path, name), "required table missing")
                else:
                    self.error(join(path, name), f"required parameter missing (expected {type_name(f.type)})")
        for name, value in kwargs.items():
            validator = fields[name].validator
            if validator is None:
                continue
            try:
                validator(None, fields[name], value)
            except Exception as exc:  # validators raise ValueError/TypeError with their own wording
                self.error(join(path, name), _validator_message(exc, name))
        if len(self.problems) > before:
            return False, None
        try:
            return True, cls(**kwargs)
        except Exception as exc:  # cross-field checks in __attrs_post_init__
            self.error(path, _validator_message(exc, ""))
            return False, None

    # -- components ------------------------------------------------------------------------------
    def component(self, data: Any, ref_cls: type[ComponentRef], path: str) -> tuple[bool, Any]:
        kind = ref_cls.kind
        if not isinstance(data, Mapping):
            self.error(path, f"expected a table with a 'type' key naming a {kind}, got {describe(data)}")
            return False, None
        table = dict(data)
        name = table.pop("type", ref_cls.default_type)
        if name is None:
            self.error(join(path, "type"), f"missing: name the {kind} to use",
                       f"available {plural(kind)}: {', '.join(self.registry.names(kind))}")
            return False, None
        if not isinstance(name, str):
            self.error(join(path, "type"), f"expected a {kind} name (string), got {describe(name)}")
            return False, None
        try:
            entry = self.registry.get(kind, name)
        except UnknownComponentError as exc:
            self.error(join(path, "type"), str(exc), *exc.hints)
            return False, None
        ok, params = self.attrs_class(table, entry.info.params, path, owner=f"{kind} '{name}'")
        if not ok:
            return False, None
        return True, ref_cls(type=name, params=params)


def _validator_message(exc: Exception, name: str) -> str:
    text = str(exc)
    quoted = f"'{name}' "
    if name and text.startswith(quoted):
        text = text[len(quoted):]
    return text
