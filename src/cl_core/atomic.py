"""Atomic file writes (torch-free): a temporary file in the target's folder, fsynced, given the mode ``open`` would
give, then renamed over the target, so a reader sees the old file or the new one, never half of one. Checkpoints,
weights, run files, embedding shards, indexes and data shards are all written through it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def default_mode(directory: bool = False) -> int:
    """The permission bits ``open()`` / ``mkdir()`` would give under the process umask. Temporary files and
    folders are created owner-only (0600 / 0700) whatever the umask, so what is renamed into place gets
    these bits first: a run or an export is as readable as any other file its user writes."""
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then atomically rename the temporary file to ``path`` (mode as by ``open``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
