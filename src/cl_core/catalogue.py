"""The component catalogue as Markdown, generated from the registry: every registered component with its
summary and each ``Params`` field's type, default and ``Attributes:`` text (torch-free).

The docs build (``docs/hooks.py``) writes the spec reference page with :func:`reference_page` and fills
each plugin page's component table with :func:`plugin_section`, so the docs cannot drift from the code.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable

import attrs
from attrs import frozen

from .registry import KIND_HOOKS, Registered, Registry, plural
from .spec.structure import type_name
from .spec.text import toml_value

KIND_TABLES = {"dataset": "[data]", "sampler": "[sampler]", "encoder": "[encoders.<role>]", "scorer": "[scorer]",
               "loss": "[loss]", "decoder": "[decoder]", "objective": "[[objective]]", "evaluator": "[[evaluate]]",
               "trainer": "[trainer]"}
_SECTION = re.compile(r"^(Args|Arguments|Attributes|Returns|Raises|Example|Examples|Note|Notes|Yields):\s*$")


@frozen
class FieldDoc:
    """One spec key of a component: name, TOML type, default (``None`` if required) and description."""

    name: str
    type: str
    default: str | None
    doc: str


def attribute_docs(docstring: str | None) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style docstring: field name -> text (continuation lines joined)."""
    lines = inspect.cleandoc(docstring or "").splitlines()
    out: dict[str, str] = {}
    inside, current, indent = False, None, None
    for line in lines:
        if _SECTION.match(line.strip()) and not line.startswith(" "):
            inside = line.strip() == "Attributes:"
            current = None
            continue
        if not inside or not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        match = re.match(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line.strip())
        if match and (indent is None or depth <= indent):
            indent = depth
            current = match.group(1)
            out[current] = match.group(2).strip()
        elif current is not None:
            out[current] = (out[current] + " " + line.strip()).strip()
    return out


def summary_line(docstring: str | None) -> str:
    """First paragraph of a docstring, on one line."""
    text = inspect.cleandoc(docstring or "").split("\n\n", 1)[0]
    return " ".join(text.split())


def fields(params: type) -> list[FieldDoc]:
    """The documented fields of a ``Params`` class, in declaration order; a field a subclass inherits keeps the
    ``Attributes:`` text of the base class that documents it."""
    attrs.resolve_types(params)
    docs: dict[str, str] = {}
    for cls in reversed(params.__mro__):  # the most derived class's text wins
        docs.update(attribute_docs(cls.__doc__) if attrs.has(cls) else {})
    out = []
    for f in attrs.fields(params):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        shown = None if default is attrs.NOTHING else "not set" if default is None else toml_value(default)
        out.append(FieldDoc(f.name, type_name(f.type), shown, _markdown(docs.get(f.name, ""))))
    return out


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(text: str) -> str:
    """reStructuredText literals (````x````) as Markdown code (```x```)."""
    return text.replace("``", "`")


def _table(rows: list[FieldDoc]) -> list[str]:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for r in rows:
        default = "**required**" if r.default is None else "not set" if r.default == "not set" else \
            f"`{_escape(r.default)}`"
        lines.append(f"| `{r.name}` | {_escape(r.type)} | {default} | {_escape(r.doc)} |")
    return lines


def component_section(entry: Registered, level: int = 3) -> str:
    """Markdown for one component: heading, provider, summary, Params description and a field table."""
    params = entry.info.params
    head = "#" * level
    lines = [f"{head} `{entry.name}`", "",
             f"*{entry.kind}* in `{KIND_TABLES[entry.kind]}` · from `{entry.distribution or entry.plugin}` · "
             f"`{params.__qualname__}`", "", entry.info.summary, ""]
    description = _markdown(summary_line(params.__doc__))
    if description and description != entry.info.summary:
        lines += [description, ""]
    rows = fields(params)
    if rows:
        lines += _table(rows)
    else:
        lines.append("No parameters.")
    return "\n".join(lines) + "\n"


def _sorted(entries: Iterable[Registered]) -> list[Registered]:
    order = list(KIND_HOOKS)
    return sorted(entries, key=lambda e: (order.index(e.kind), e.name))


def plugin_section(registry: Registry, plugin: str, level: int = 3) -> str:
    """Every component of one plugin (entry-point name), grouped by kind."""
    entries = _sorted(registry.by_plugin(plugin))
    if not entries:
        raise LookupError(f"plugin {plugin!r} registers no components (is it installed?)")
    return "\n".join(component_section(e, level) for e in entries)


def reference_page(registry: Registry) -> str:
    """The whole spec reference: the spec's own tables, then every component by kind."""
    from .spec.model import RunSpec

    parts = ["# Spec reference", "",
             "Generated from the installed plugins' `Params` classes when the docs are built: every key a spec "
             "file may use, with its type, default and meaning. `type` names the component; every other key of a "
             "component table is one of its fields.", ""]
    for table, cls in (("[run]", RunSpec),):
        description = _markdown(summary_line(cls.__doc__)).removeprefix(f"`{table}`").lstrip(":. ")
        parts += [f"## `{table}`", "", *([description, ""] if description else []), *_table(fields(cls)), ""]
    entries = _sorted(registry)
    for kind in KIND_HOOKS:
        of_kind = [e for e in entries if e.kind == kind]
        if not of_kind:
            continue
        parts += [f"## {plural(kind).capitalize()} `{KIND_TABLES[kind]}`", ""]
        parts += [component_section(e, 3) for e in of_kind]
    return "\n".join(parts)
