"""Component records and the immutable registry built from the loaded plugins (torch-free)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

import attrs
from attrs import field, frozen

from .errors import PluginConflictError, UnknownComponentError, did_you_mean

Kind = Literal["sampler", "encoder", "scorer", "loss", "decoder", "objective", "dataset", "evaluator", "trainer"]

#: Every component kind, in build order, with the registration hook that contributes it.
KIND_HOOKS: dict[str, str] = {
    "dataset": "cl_datasets",
    "sampler": "cl_samplers",
    "encoder": "cl_encoders",
    "scorer": "cl_scorers",
    "loss": "cl_losses",
    "decoder": "cl_decoders",
    "objective": "cl_objectives",
    "evaluator": "cl_evaluators",
    "trainer": "cl_trainers",
}

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.[a-z0-9][a-z0-9-]*$")


def plural(kind: str) -> str:
    """The plural of a component kind as messages and docs spell it: "losses", "encoders", "samplers".

    A kind's plural is the noun of its registration hook (``cl_losses``), so there is one spelling; any other
    word gets the English rule (``-es`` after s, x, z, ch, sh).
    """
    hook = KIND_HOOKS.get(kind)
    if hook is not None:
        return hook.removeprefix("cl_")
    return kind + ("es" if kind.endswith(("s", "x", "z", "ch", "sh")) else "s")


def _check_params(_: Any, __: Any, value: type) -> None:
    if not (isinstance(value, type) and attrs.has(value)):
        raise TypeError(f"params must be an attrs class, got {value!r}")
    if "type" in attrs.fields_dict(value):
        raise TypeError(f"{value.__qualname__} has a field named 'type', which specs reserve")


@frozen(kw_only=True)
class ComponentInfo:
    """What a plugin yields from a registration hook.

    Attributes:
        name: ``"<entry-point name>.<component>"``, lowercase with hyphens (``"clip.vit"``).
        params: frozen attrs class holding every spec key of the component (importable without torch).
        factory: ``build(params, ctx) -> component``, or a lazy ``"module:attr"`` string naming it.
        summary: one line shown by ``cl components``.
    """

    name: str
    params: type = field(validator=_check_params)
    factory: Callable[..., Any] | str
    summary: str = ""

    def load_factory(self) -> Callable[..., Any]:
        """Resolve a lazy ``"module:attr"`` factory (imports the heavy module now)."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


@frozen
class Registered:
    """A component record together with its kind and the plugin that provided it."""

    kind: str
    info: ComponentInfo
    plugin: str  # entry-point name ("core" for built-ins)
    distribution: str | None = None

    @property
    def name(self) -> str:
        return self.info.name


@frozen
class MissingPlugin:
    """A plugin that is known (first-party index) but not installed, or that failed to load."""

    entry_point: str
    distribution: str
    error: str | None = None  # None: not installed; otherwise the one-line load failure


class Registry:
    """Immutable view of every component the loaded plugins provide.

    ``missing`` maps an entry-point name to what is known about a plugin that is not available, so a
    lookup of ``"clip.vit"`` without cl-clip installed can say which distribution to install.
    """

    def __init__(self, entries: list[Registered], missing: dict[str, MissingPlugin] | None = None):
        by_key: dict[tuple[str, str], Registered] = {}
        for entry in entries:
            key = (entry.kind, entry.name)
            if key in by_key:
                other = by_key[key]
                raise PluginConflictError(
                    f"{entry.kind} '{entry.name}' is registered twice: by plugin '{other.plugin}' "
                    f"({other.distribution}) and by plugin '{entry.plugin}' ({entry.distribution})"
                )
            by_key[key] = entry
        self._by_key = by_key
        self._missing = dict(missing or {})

    def __iter__(self) -> Iterator[Registered]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def names(self, kind: str) -> tuple[str, ...]:
        return tuple(sorted(name for (k, name) in self._by_key if k == kind))

    def by_plugin(self, plugin: str) -> tuple[Registered, ...]:
        return tuple(e for e in self._by_key.values() if e.plugin == plugin)

    def _kind_of(self, name: str) -> str | None:
        """The kind ``name`` is registered as (the first in build order), or None."""
        return next((kind for kind in KIND_HOOKS if (kind, name) in self._by_key), None)

    def get(self, kind: str, name: str) -> Registered:
        """Look a component up; raises :class:`UnknownComponentError` with suggestions and hints."""
        try:
            return self._by_key[(kind, name)]
        except KeyError:
            pass
        prefix = name.split(".", 1)[0]
        available = self.names(kind)
        missing = self._missing.get(prefix)
        if missing is not None and missing.error is None:
            raise UnknownComponentError(
                kind,
                name,
                f"{kind} '{name}' comes from plugin '{prefix}', which is not installed",
                [f"install it with: pip install {missing.distribution}"],
            )
        if missing is not None:
            raise UnknownComponentError(
                kind,
                name,
                f"{kind} '{name}' is unavailable: plugin '{prefix}' ({missing.distribution}) failed to "
                f"load: {missing.error}",
                ["run `cl plugins check` for details"],
            )
        hints = []
        if available:
            hints.append(f"available {plural(kind)}: {', '.join(available)}")
        other = self._kind_of(name)
        if other is not None:  # a real component in the wrong table: "unknown" would send them looking for a typo
            raise UnknownComponentError(kind, name, f"'{name}' is {_a(other)} {other}, not {_a(kind)} {kind}", hints)
        mean = did_you_mean(name, available)
        message = f"unknown {kind} '{name}'" + (f"; {mean}" if mean else "")
        if not NAME_RE.match(name):
            hints.insert(0, "component names look like '<plugin>.<name>', e.g. 'core.cosine'")
        raise UnknownComponentError(kind, name, message, hints)


def _a(word: str) -> str:
    """The indefinite article of ``word`` (component kinds: "an encoder", "a sampler")."""
    return "an" if word[:1] in "aeiou" else "a"
