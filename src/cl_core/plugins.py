"""Plugin discovery: our own entry-point loop over pluggy (group ``cl_core``).

A plugin that fails to import is recorded with its cause and skipped with a
:class:`~cl_core.errors.PluginLoadWarning`; in strict mode (``CL_STRICT_PLUGINS=1``, CI,
``cl plugins check``) it raises :class:`~cl_core.errors.PluginLoadError`. Nothing is loaded when
``cl_core`` is imported, and nothing here imports torch.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import os
import warnings
from collections.abc import Iterable
from typing import Literal

import pluggy
from attrs import frozen

from . import hookspecs
from .errors import PluginConflictError, PluginError, PluginLoadError, PluginLoadWarning, did_you_mean
from .registry import KIND_HOOKS, ComponentInfo, MissingPlugin, Registered, Registry

hookimpl = hookspecs.hookimpl
ENTRY_POINT_GROUP = hookspecs.PROJECT

#: First-party plugins: entry-point name -> distribution (kept equal to registry.toml by a test), so
#: a spec naming ``clip.vit`` without cl-clip installed can say what to install.
FIRST_PARTY = {
    "clip": "cl-clip",
    "datasets": "cl-datasets",
    "word2vec": "cl-word2vec",
    "bert-nsp": "cl-bert-nsp",
    "lm": "cl-lm",
    "captions": "cl-captions",
    "imagebind": "cl-imagebind",
    "coca": "cl-coca",
    "decap": "cl-decap",
    "capdec": "cl-capdec",
    "iterative": "cl-iterative-decoder",
}


@frozen(kw_only=True)
class PluginStatus:
    """What the host knows about one plugin."""

    entry_point: str
    distribution: str | None
    version: str | None
    state: Literal["builtin", "loaded", "failed", "blocked"]
    error: str | None = None
    hooks: tuple[str, ...] = ()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


class PluginHost:
    """Owns one ``pluggy.PluginManager``, loads plugins one at a time, and builds the :class:`Registry`.

    Args:
        autoload: load installed plugins from the ``cl_core`` entry-point group.
        only: if given, load only these entry-point names (others are ``blocked``).
        block: entry-point names never to load.
        strict: raise :class:`PluginLoadError` instead of warning when a plugin fails.
    """

    def __init__(
        self,
        *,
        autoload: bool = True,
        only: Iterable[str] | None = None,
        block: Iterable[str] = (),
        strict: bool = False,
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._only = set(only) if only is not None else None
        self._block = set(block)
        self._strict = strict
        self._statuses: dict[str, PluginStatus] = {}
        self._registry: Registry | None = None
        from ._builtin import plugin as builtin_plugin

        self._pm.register(builtin_plugin, name="core")
        self._statuses["core"] = PluginStatus(
            entry_point="core", distribution="cl-core", version=_version("cl-core"), state="builtin",
            hooks=self._hooks_of(builtin_plugin),
        )
        if autoload:
            self._load_entry_points()

    # -- loading ---------------------------------------------------------------------------------
    def _wanted(self, name: str) -> bool:
        if name in self._block:
            return False
        return self._only is None or name in self._only

    def _load_entry_points(self) -> None:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if not self._wanted(ep.name):
                self._statuses[ep.name] = PluginStatus(
                    entry_point=ep.name, distribution=dist, version=version, state="blocked"
                )
                continue
            if ep.name in self._statuses and self._statuses[ep.name].state != "blocked":
                other = self._statuses[ep.name]
                raise PluginConflictError(
                    f"entry point '{ep.name}' is provided by two distributions: {other.distribution} "
                    f"and {dist}; uninstall one of them (component names are prefixed by entry-point name)"
                )
            self._load_one(ep.name, dist, version, ep.load, origin=f"{ep.group}:{ep.name} -> {ep.value}")

    def _load_one(self, name: str, dist: str | None, version: str | None, load, origin: str) -> None:
        module = None
        try:
            module = load()
            self._pm.register(module, name=name)
            self._pm.check_pending()
            # Calling the hooks now validates the records, so a broken plugin fails here, not in a run.
            self._collect(module, name, dist)
        except Exception as exc:
            if module is not None and self._pm.get_plugin(name) is module:
                self._pm.unregister(name=name)
            if self._strict:
                raise PluginLoadError(
                    f"plugin '{name}' ({dist}) failed to load: {_one_line(exc)}"
                ) from exc
            self._statuses[name] = PluginStatus(
                entry_point=name, distribution=dist, version=version, state="failed", error=_one_line(exc)
            )
            warnings.warn(
                PluginLoadWarning(
                    f"plugin '{name}' ({dist} {version}; entry point {origin}) failed to load and was "
                    f"skipped: {_one_line(exc)}\n  set CL_STRICT_PLUGINS=1 to make this an error, or "
                    f"CL_DISABLE_PLUGINS={name} to stop loading it"
                ),
                stacklevel=3,
            )
        else:
            self._statuses[name] = PluginStatus(
                entry_point=name, distribution=dist, version=version, state="loaded",
                hooks=self._hooks_of(module),
            )
        self._registry = None

    def register(self, plugin: object, *, name: str, distribution: str | None = None) -> None:
        """Register an in-process plugin object (tests, notebooks) under an entry-point name."""
        if name in self._statuses and self._statuses[name].state in ("builtin", "loaded"):
            raise PluginConflictError(f"a plugin named '{name}' is already registered")
        self._load_one(name, distribution, None, lambda: plugin, origin=f"<in-process {name}>")

    @staticmethod
    def _hooks_of(module: object) -> tuple[str, ...]:
        return tuple(h for h in KIND_HOOKS.values() if hasattr(module, h))

    def _collect(self, module: object, plugin: str, dist: str | None) -> list[Registered]:
        out: list[Registered] = []
        for kind, hook in KIND_HOOKS.items():
            impl = getattr(module, hook, None)
            if impl is None:
                continue
            for info in impl() or ():
                if not isinstance(info, ComponentInfo):
                    raise TypeError(f"{hook}() yielded {type(info).__name__}, expected ComponentInfo")
                if not info.name.startswith(plugin + "."):
                    raise ValueError(
                        f"component '{info.name}' must be named '{plugin}.<name>' (entry-point prefix)"
                    )
                out.append(Registered(kind=kind, info=info, plugin=plugin, distribution=dist))
        return out

    # -- queries ---------------------------------------------------------------------------------
    def plugin_module(self, entry_point: str) -> str | None:
        """Import name of the module registered as ``entry_point`` (None if none is loaded)."""
        plugin = self._pm.get_plugin(entry_point)
        if plugin is None:
            return None
        return getattr(plugin, "__name__", None) or type(plugin).__module__

    def statuses(self) -> tuple[PluginStatus, ...]:
        return tuple(self._statuses.values())

    def check_known(self, names: Iterable[str]) -> None:
        """Check that each of ``names`` is the entry-point or distribution name of a plugin this host knows
        (loaded, failed or blocked), so a typo in ``cl plugins check NAME`` is not a silent pass.

        Raises:
            PluginError: for the unknown names, each with a did-you-mean, and the installed choices.
        """
        choices = {s.entry_point: s.distribution for s in self._statuses.values()}
        known = set(choices) | {d for d in choices.values() if d}
        unknown = [name for name in names if name not in known]
        if unknown:
            installed = ", ".join(f"{ep} ({dist})" if dist else ep for ep, dist in sorted(choices.items()))
            raise PluginError("\n".join([*(_unknown_plugin(name, known) for name in unknown),
                                         f"  installed: {installed}"]))

    def registry(self) -> Registry:
        """The registry of all loaded plugins (cached until another plugin is registered)."""
        if self._registry is None:
            entries: list[Registered] = []
            for status in self._statuses.values():
                if status.state in ("builtin", "loaded"):
                    module = self._pm.get_plugin(status.entry_point)
                    entries.extend(self._collect(module, status.entry_point, status.distribution))
            missing = {
                name: MissingPlugin(name, dist) for name, dist in FIRST_PARTY.items()
                if name not in self._statuses or self._statuses[name].state == "blocked"
            }
            for status in self._statuses.values():
                if status.state == "failed":
                    missing[status.entry_point] = MissingPlugin(
                        status.entry_point, status.distribution or f"cl-{status.entry_point}", status.error
                    )
            self._registry = Registry(entries, missing)
        return self._registry


def _unknown_plugin(name: str, known: Iterable[str]) -> str:
    """One line about a name no installed plugin has: a did-you-mean, or how to install a first-party one."""
    line = f"no installed plugin or distribution {name!r}"
    first_party = {**FIRST_PARTY, **{dist: dist for dist in FIRST_PARTY.values()}}
    if name in first_party:
        return f"{line}; install it with: pip install {first_party[name]}"
    mean = did_you_mean(name, known)
    return f"{line}; {mean}" if mean else line


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


@functools.cache
def default_host() -> PluginHost:
    """The process-wide host, configured from the environment on first use.

    ``CL_LOAD_PLUGINS=a,b`` loads only those plugins; ``CL_DISABLE_PLUGINS=a,b`` blocks them;
    ``CL_STRICT_PLUGINS=1`` makes a failing plugin an error.
    """
    strict = os.environ.get("CL_STRICT_PLUGINS", "").lower() in ("1", "true", "yes")
    return PluginHost(
        only=_env_names("CL_LOAD_PLUGINS"), block=_env_names("CL_DISABLE_PLUGINS") or (), strict=strict
    )
