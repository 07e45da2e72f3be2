"""attrs validators for ``Params`` fields that specs commonly need (located errors, torch-free).

Path validators mark themselves (``path_field``), so a run can save its spec with absolute paths
(:func:`absolute_paths`) and be evaluated or resumed from any working directory.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import attrs


def _check_path(value: str, kind: str) -> str | None:
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.exists(path):
        return f"path does not exist: {path}"
    if kind == "file" and not os.path.isfile(path):
        return f"expected a file, found a directory: {path}"
    if kind == "dir" and not os.path.isdir(path):
        return f"expected a directory, found a file: {path}"
    return None


def existing_path(kind: Literal["file", "dir", "any"] = "any"):
    """Validator: a string (or None) naming a path that exists; relative paths are from the working
    directory when the spec is loaded, and saved absolute in a run's ``spec.toml``."""

    def check(_: Any, __: Any, value: str | None) -> None:
        problem = None if value is None else _check_path(value, kind)
        if problem:
            raise ValueError(problem)

    check.path_field = True  # type: ignore[attr-defined]
    return check


def existing_paths(kind: Literal["file", "dir", "any"] = "any"):
    """Validator: a tuple of strings, each naming a path that exists (see :func:`existing_path`)."""

    def check(_: Any, __: Any, value: tuple[str, ...]) -> None:
        problems = [p for p in (_check_path(v, kind) for v in value) if p]
        if problems:
            raise ValueError("; ".join(problems))

    check.path_field = True  # type: ignore[attr-defined]
    return check


def absolute_paths(params: Any) -> Any:
    """A copy of an attrs ``Params`` instance with every path field (validated by :func:`existing_path` or
    :func:`existing_paths`) made absolute; other fields unchanged."""
    changes: dict[str, Any] = {}
    for f in attrs.fields(type(params)):
        if not getattr(f.validator, "path_field", False) or not f.init:
            continue
        value = getattr(params, f.name)
        if isinstance(value, str):
            changes[f.name] = os.path.abspath(os.path.expanduser(value))
        elif isinstance(value, tuple):
            changes[f.name] = tuple(os.path.abspath(os.path.expanduser(v)) for v in value)
    return attrs.evolve(params, **changes) if changes else params
