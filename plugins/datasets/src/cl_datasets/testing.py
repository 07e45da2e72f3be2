"""Helpers for tests (this plugin's and the core's): the tiny committed emoji slice.

The slice has 40 concepts (36 with both styles, 4 OpenMoji-only), so it builds in well under a second
with no npm and no network::

    from cl_datasets.testing import emoji_fixture_params, emoji_fixture_table
    params = emoji_fixture_params(holdout=0.25)          # EmojiParams
    table = emoji_fixture_table(image_size=32)           # {"type": "datasets.emoji", ...} for a [data] table

It is read from the source checkout (``plugins/datasets/tests/fixtures/emoji``) or, from an installed
wheel, from ``cl_datasets/_fixtures/emoji``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .params import EmojiParams

#: Concepts in the fixture: total, with both styles, OpenMoji-only.
FIXTURE_CONCEPTS = 40
FIXTURE_BOTH_STYLES = 36


def emoji_fixture_dir() -> Path:
    """Folder holding ``openmoji.json`` and ``noto/``.

    Raises:
        FileNotFoundError: neither the source checkout nor the wheel copy is present.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "_fixtures" / "emoji", here.parents[1] / "tests" / "fixtures" / "emoji"):
        if (candidate / "openmoji.json").is_file() and (candidate / "noto").is_dir():
            return candidate
    raise FileNotFoundError("the cl-datasets emoji test fixture is not installed (looked in "
                            f"{here / '_fixtures' / 'emoji'} and {here.parents[1] / 'tests' / 'fixtures' / 'emoji'})")


def emoji_fixture_paths() -> dict[str, str]:
    """``{"openmoji_json": ..., "noto_dir": ...}`` (absolute paths as strings)."""
    root = emoji_fixture_dir()
    return {"openmoji_json": str(root / "openmoji.json"), "noto_dir": str(root / "noto")}


def emoji_fixture_params(**overrides: Any) -> EmojiParams:
    """:class:`EmojiParams` reading the fixture; ``overrides`` set any other field."""
    return EmojiParams(**{**emoji_fixture_paths(), **overrides})


def emoji_fixture_table(**overrides: Any) -> dict[str, Any]:
    """A spec ``[data]`` table (plain TOML values, lists for tuples) using the fixture."""
    table: dict[str, Any] = {"type": "datasets.emoji", **emoji_fixture_paths()}
    for key, value in overrides.items():
        table[key] = list(value) if isinstance(value, tuple) else value
    return table
