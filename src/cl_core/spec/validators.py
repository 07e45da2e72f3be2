"""attrs validators for ``Params`` fields that specs commonly need (located errors, torch-free)."""

from __future__ import annotations

import os
from typing import Any, Literal


def existing_path(kind: Literal["file", "dir", "any"] = "any"):
    """Validator: a string (or None) naming a path that exists; relative paths are from the CWD."""

    def check(_: Any, __: Any, value: str | None) -> None:
        if value is None:
            return
        path = os.path.abspath(os.path.expanduser(value))
        if not os.path.exists(path):
            raise ValueError(f"path does not exist: {path}")
        if kind == "file" and not os.path.isfile(path):
            raise ValueError(f"expected a file, found a directory: {path}")
        if kind == "dir" and not os.path.isdir(path):
            raise ValueError(f"expected a directory, found a file: {path}")

    return check
