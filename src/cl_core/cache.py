"""The user cache folder where plugins keep downloaded or rendered data (torch-free)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$CL_CACHE_DIR`` (or the platform's user cache folder for "cl") joined with ``parts``."""
    from platformdirs import user_cache_dir

    root = Path(os.environ.get("CL_CACHE_DIR") or user_cache_dir("cl"))
    return root.joinpath(*parts)
