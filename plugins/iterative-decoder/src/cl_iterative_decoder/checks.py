"""Validators of the decoders' settings and params (attrs ``validator=`` callables with located messages)."""

from __future__ import annotations

from typing import Any


def fraction(_: Any, attribute: Any, value: float) -> None:
    """A weight in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1], got {value!r}")


def at_least(low: float):
    """A number >= ``low``."""
    def check(_: Any, attribute: Any, value: float) -> None:
        if not value >= low:
            raise ValueError(f"{attribute.name} must be >= {low}, got {value!r}")

    return check


def positive(_: Any, attribute: Any, value: float) -> None:
    """A number > 0."""
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")
