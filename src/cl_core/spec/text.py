"""Values as a spec file spells them (``true``, ``[0.9, 0.98]``, ``"auto"``), for every message and listing
that shows one to a user: spec errors, ``cl components``, the spec reference. A user writes TOML, so a
Python spelling (``True``, ``(0.9, 0.98)``, ``'auto'``, ``None``) would send them looking for syntax their
file cannot have. Torch-free.
"""

from __future__ import annotations

import tomllib
from typing import Any

import cattrs
import tomli_w

#: How a parameter without a value (``None``: TOML has no null) is shown.
NOT_SET = "(not set)"

_CONVERTER = cattrs.Converter()


def toml_value(value: Any) -> str:
    """``value`` as inline TOML: ``true``, ``[0.9, 0.98]``, ``"auto"``, ``{ a = 1 }``; attrs instances as
    tables; ``None`` (on its own or in an array) as :data:`NOT_SET`; ``None`` entries of a table left out,
    as a spec file leaves them out."""
    if value is None:
        return NOT_SET
    plain = _CONVERTER.unstructure(value)
    if isinstance(plain, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in plain) + "]"
    if isinstance(plain, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in plain.items() if v is not None) + " }"
    try:
        return tomli_w.dumps({"v": plain}).strip().removeprefix("v = ")
    except (TypeError, ValueError):
        return repr(plain)


def override_value(value: Any) -> str:
    """``value`` as a user would have typed it after ``--set key=``: a string that is not valid TOML on its
    own (``abc``) bare, as ``--set`` accepts it; anything else as TOML (``"1"`` stays quoted: bare, it
    would be the integer 1)."""
    if isinstance(value, str):
        try:
            tomllib.loads(f"v = {value}")
        except tomllib.TOMLDecodeError:
            return value
    return toml_value(value)
