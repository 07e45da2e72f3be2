"""cl: contrastive representation learning from plugins.

``import cl_core`` is instant and imports no torch; the public API is :mod:`cl_core.api` (its names are
also reachable here: ``cl_core.Encoder``, ``cl_core.from_pretrained``).
"""

from __future__ import annotations

from typing import Any

try:
    from importlib.metadata import version as _version

    __version__ = _version("cl-core")
except Exception:  # pragma: no cover - running from a source tree without an install
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    import importlib
    import importlib.util

    # Submodules not imported yet (and dunder probes) are not API names: importing the API to look them up would
    # recurse while the import machinery asks this package whether it has them.
    if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    api = importlib.import_module(f"{__name__}.api")
    try:
        return getattr(api, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
