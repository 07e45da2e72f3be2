"""Error hierarchy of cl.

User errors (bad specs, missing plugins, bad data) derive from :class:`ClError`; the CLI prints them
without a traceback. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence

from attrs import field, frozen


def suggest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` close matches of ``word`` among ``choices`` (difflib ratio >= 0.6)."""
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)


def did_you_mean(word: str, choices: Iterable[str], show: Callable[[str], str] = repr) -> str | None:
    """A "did you mean 'x'?" phrase, or None when nothing is close; ``show`` spells each match (``repr`` by
    default; spec messages spell them as TOML)."""
    close = suggest(word, choices)
    if not close:
        return None
    return "did you mean " + " or ".join(show(c) for c in close) + "?"


def indented_list(lines: Sequence[str], limit: int = 20) -> str:
    """``lines`` one per row, indented by two spaces, for an error message about many items (bad files,
    malformed records): at most ``limit`` rows, then "... and N more"."""
    shown = "\n  ".join(lines[:limit])
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"  {shown}{more}"


@frozen
class Problem:
    """One located problem in a spec: ``path`` is a dotted TOML path (``encoders.text.width``)."""

    path: str
    message: str
    hints: tuple[str, ...] = field(default=(), converter=lambda hints: tuple(hints))

    def render(self, indent: str = "  ") -> str:
        head = f"{indent}{self.path}: {self.message}" if self.path else f"{indent}{self.message}"
        return "\n".join([head, *(f"{indent}    {h}" for h in self.hints)])


class ClError(Exception):
    """Base class of every error cl raises on purpose (user errors and plugin errors)."""


class SpecError(ClError):
    """A spec file (or an override) has one or more problems; all are collected in one pass.

    Attributes:
        source: the file (or ``"<string>"``) the spec came from.
        problems: every problem found, each located by TOML path.
    """

    def __init__(self, source: str, problems: Sequence[Problem]):
        self.source = source
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"{self.source}: {n} problem{'s' if n != 1 else ''}"
        return "\n".join([head, *(p.render() for p in self.problems)])


class UnknownComponentError(ClError, LookupError):
    """A component name is not registered. A ``LookupError`` but deliberately not a ``KeyError``."""

    def __init__(self, kind: str, name: str, message: str, hints: Sequence[str] = ()):
        self.kind = kind
        self.name = name
        self.hints = tuple(hints)
        super().__init__(message)


class PluginError(ClError):
    """A plugin could not be loaded or conflicts with another."""


class PluginLoadError(PluginError):
    """A plugin's entry point failed to import or register (strict mode)."""


class PluginConflictError(PluginError):
    """Two providers claim the same entry-point or component name."""


class BuildError(ClError):
    """A component factory failed while building a pipeline; names the spec path and the provider."""


class DataError(ClError):
    """Training or evaluation data is missing, unreadable or malformed (reported with paths)."""


class WeightsError(ClError):
    """A weights file does not match the pipeline, is missing, or is in an unsafe format."""


class HubError(ClError):
    """A Hugging Face Hub operation failed (offline, unreachable, refused credentials, unknown repository or
    revision); the message names the repository, the endpoint and what to do."""


class CheckpointError(ClError):
    """A run directory cannot be resumed (missing or inconsistent checkpoint)."""


class TrainingDivergedError(ClError, FloatingPointError):
    """Training produced a non-finite loss, embedding or weight (a learning rate too high, no gradient
    clipping, too low a precision); the message names the step and what to change. Still a
    ``FloatingPointError``, which the component checks raise, for code that catches that."""


class ClWarning(UserWarning):
    """Base class of every warning cl gives a user on purpose; the CLI prints it as one ``warning: ...`` line
    (no source location), and Python's default filter shows each message once."""


class PluginLoadWarning(ClWarning):
    """A plugin failed to load and was skipped (lenient mode)."""


class EvaluationWarning(ClWarning):
    """An evaluator skipped a split or left a metric out because it would say nothing (an empty split, one
    class only, a K no smaller than the number of candidates)."""
