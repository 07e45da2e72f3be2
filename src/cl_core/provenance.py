"""Provenance of a run: versions of cl-core, plugins, Python and torch, the git commit, the time."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from typing import Any

from .plugins import PluginHost


def git_sha(cwd: str | None = None) -> str | None:
    """The commit of the working tree the command runs in (``+dirty`` if modified), or None."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def collect(host: PluginHost) -> dict[str, Any]:
    import torch

    active = [s for s in host.statuses() if s.state in ("builtin", "loaded")]
    plugins = {s.distribution or s.entry_point: s.version or "unknown" for s in active}
    entry_points = {s.entry_point: s.distribution or s.entry_point for s in active}
    info: dict[str, Any] = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cl_core": plugins.get("cl-core", "unknown"),
        "plugins": plugins,
        "entry_points": entry_points,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
    }
    sha = git_sha()
    if sha:
        info["git_sha"] = sha
    return info
