"""attrs validators for ``Params`` fields that specs commonly need (located errors, torch-free).

Path validators carry the function that makes their value absolute (``absolute``), so a run can save its
spec with absolute paths (:func:`absolute_paths`) and be evaluated or resumed from any working directory.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any, Literal

import attrs


def _absolute(value: str) -> str:
    """``value`` with ``~`` expanded, relative to the working directory."""
    return os.path.abspath(os.path.expanduser(value))


def _check_path(value: str, kind: str) -> str | None:
    path = _absolute(value)
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

    check.absolute = lambda value: None if value is None else _absolute(value)  # type: ignore[attr-defined]
    return check


def existing_paths(kind: Literal["file", "dir", "any"] = "any"):
    """Validator: a tuple of strings, each naming a path that exists (see :func:`existing_path`)."""

    def check(_: Any, __: Any, value: tuple[str, ...]) -> None:
        problems = [p for p in (_check_path(v, kind) for v in value) if p]
        if problems:
            raise ValueError("; ".join(problems))

    check.absolute = lambda value: tuple(_absolute(v) for v in value)  # type: ignore[attr-defined]
    return check


#: A Hugging Face Hub model id: ``"name"`` (the legacy canonical models) or ``"org/name"``.
HUB_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def could_be_hub_id(value: str) -> bool:
    """Whether ``value`` is shaped like a Hub model id; anything else can only be a local path."""
    return bool(HUB_MODEL_ID.match(value))


#: The file that marks a finished run (or a ``save_pretrained`` folder); written last, atomically.
FINISHED_MARKER = "model.safetensors"
_GLOB_CHARS = re.compile(r"[*?\[]")


def is_run_pattern(value: str) -> bool:
    """Whether ``value`` is a glob (``runs/clip-emoji-*``) standing for the newest finished run it matches."""
    return bool(_GLOB_CHARS.search(value))


def newest_run(pattern: str) -> str:
    """The newest finished run folder matching the glob ``pattern`` (absolute path).

    A folder is finished when it holds ``model.safetensors`` (runs that crashed or are still training do
    not); the newest is the one whose weights were written last. This lets a spec say "the CLIP run of this
    machine" (``source = "runs/clip-emoji-*"``) and record the concrete folder in the run's saved spec.

    Raises:
        ValueError: nothing finished matches; says which folders matched but are unfinished.
    """
    matches = sorted(p for p in glob.glob(_absolute(pattern)) if os.path.isdir(p))
    finished = [p for p in matches if os.path.isfile(os.path.join(p, FINISHED_MARKER))]
    if finished:
        return max(finished, key=lambda p: (os.path.getmtime(os.path.join(p, FINISHED_MARKER)), p))
    where = os.path.abspath(os.path.dirname(_absolute(pattern)) or ".")
    unfinished = f" ({len(matches)} unfinished: no {FINISHED_MARKER} in {', '.join(matches[:3])})" if matches else ""
    raise ValueError(f"no finished run matches {pattern!r} in {where}{unfinished}; train one first")


def folder_or_hub_id(*aliases: str):
    """Validator: a string (or None) that is one of ``aliases`` (e.g. ``"minilm"``), an existing folder, a glob
    such as ``runs/clip-emoji-*`` (the newest finished run it matches, see :func:`newest_run`), or shaped like a
    Hub model id (fetched when the component is built). A value that can only be a path (``./x``, ``/x``,
    ``a/b/c``, ``~/x``) and names no folder is reported when the spec is validated, before anything is built.
    Existing folders and globs are saved absolute (the concrete folder) in a run's ``spec.toml``, aliases and
    ids as given.
    """

    def names_folder(value: str | None) -> bool:
        return value is not None and value not in aliases and os.path.isdir(_absolute(value))

    def check(_: Any, __: Any, value: str | None) -> None:
        if value is None or value in aliases or names_folder(value):
            return
        if is_run_pattern(value):
            newest_run(value)
            return
        path = _absolute(value)
        if os.path.exists(path):
            raise ValueError(f"expected a folder, found a file: {path}")
        if not could_be_hub_id(value):
            raise ValueError(f"folder does not exist: {path}")

    def absolute(value: str | None) -> str | None:
        if names_folder(value):
            return _absolute(value)  # type: ignore[arg-type]
        if value is not None and value not in aliases and is_run_pattern(value):
            return newest_run(value)
        return value

    check.absolute = absolute  # type: ignore[attr-defined]
    return check


def absolute_paths(params: Any) -> Any:
    """A copy of an attrs ``Params`` instance with every path field (validated by :func:`existing_path`,
    :func:`existing_paths` or, when it names an existing folder, :func:`folder_or_hub_id`) made absolute;
    other fields unchanged."""
    changes: dict[str, Any] = {}
    for f in attrs.fields(type(params)):
        absolute = getattr(f.validator, "absolute", None)
        if absolute is not None and f.init:
            changes[f.name] = absolute(getattr(params, f.name))
    return attrs.evolve(params, **changes) if changes else params


def subset_of(allowed: tuple[str, ...], *, empty: bool = False):
    """Validator: a tuple of distinct strings, each one of ``allowed``; non-empty unless ``empty``."""

    def check(_: Any, __: Any, value: tuple[str, ...]) -> None:
        if not isinstance(value, tuple) or (not value and not empty):
            raise ValueError(f"must be a non-empty list of {', '.join(map(repr, allowed))}")
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"unknown value(s) {', '.join(map(repr, bad))}; allowed: {', '.join(map(repr, allowed))}")
        if len(set(value)) != len(value):
            raise ValueError(f"values must be distinct, got {list(value)!r}")

    return check


def templates(*, distinct: bool = True):
    """Validator: a non-empty tuple of text templates, each with exactly one ``{}`` and no other braces (distinct
    ones unless ``distinct`` is False), e.g. ``["{}", "an emoji of {}"]``."""

    def check(_: Any, __: Any, value: tuple[str, ...]) -> None:
        if not value:
            raise ValueError("needs at least one template, e.g. [\"{}\"]")
        bad = [t for t in value
               if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}")]
        if bad:
            raise ValueError(f"each template needs exactly one '{{}}' and no other braces, got {bad!r}")
        if distinct and len(set(value)) != len(value):
            raise ValueError(f"templates must be distinct, got {list(value)!r}")

    return check
