"""A persistent tier under :class:`~cl_core.frozen.FeatureCache`: features of a frozen function kept on disk.

A frozen pretrained trunk is a fixed function of its input, so its features of an image are the same in every run
that uses the same weights, preprocessing and pooling. The CLIP main job computes the EfficientNet features of
every emoji image once; a later job over the same images (a decoder on the CLIP run's frozen tower, ImageBind's
image anchor, a re-run) reads them back instead of running three trunks again (16.5 s per 100 images on 2 CPU
cores). Rows are stored exactly as computed (float32), so a job gives the same numbers from a warm store as from a
cold one.

One store file per *namespace*: a digest of everything that decides the function (the module's class, a
signature of its settings, and every parameter and buffer: :func:`module_digest`), so weights that change,
another pooling or another normalisation never read stale rows. Keys are the cache's int64 item keys (a hash of
the raw item salted with its preprocessing). Files live under ``$CL_FEATURE_STORE`` if set (``off`` disables the
store), else the user cache folder ``<cache>/features``; delete the folder to reclaim the space.

Writes are atomic (a temporary file renamed over the old one, merged with what another process wrote meanwhile);
new rows are written every :data:`FLUSH_ROWS` rows and when the process exits, so a killed job keeps what it
flushed and never leaves a half-written file.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .cache import cache_dir

log = logging.getLogger(__name__)

#: environment variable: the store folder, or "off" / "0" / "none" to keep features in memory only
ENV = "CL_FEATURE_STORE"
#: new rows written to disk once this many are pending (and at exit)
FLUSH_ROWS = 1024


def store_root() -> Path | None:
    """The folder of the store files (``$CL_FEATURE_STORE``, else ``<cache>/features``), or None when off."""
    value = os.environ.get(ENV)
    if value is not None and value.strip().lower() in ("off", "0", "none", "false", ""):
        return None
    return Path(value) if value else cache_dir("features")


def module_digest(module: nn.Module, signature: str) -> str:
    """Hex SHA-256 of ``module``'s class, ``signature`` (its settings that change its output) and every
    parameter and buffer (name, dtype, shape, bytes): the namespace of its features."""
    h = hashlib.sha256()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}\0{signature}\0".encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d tensors (BatchNorm counters) too
        h.update(f"{name}\0{t.dtype}\0{tuple(tensor.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class FeatureStore:
    """Rows ``[F]`` by int64 key, read from and appended to one safetensors file (``keys`` ``[n]`` int64,
    ``rows`` ``[n, F]`` float32). Thread-safe.

    Args:
        path: the store file (created on the first flush).
        flush_rows: pending rows that trigger a write.
    """

    def __init__(self, path: Path, *, flush_rows: int = FLUSH_ROWS) -> None:
        self.path = Path(path)
        self.flush_rows = flush_rows
        self._index: dict[int, int] | None = None  # key -> row of self._rows, loaded on first use
        self._rows: Tensor | None = None
        self._pending: dict[int, Tensor] = {}
        self._lock = threading.Lock()
        _OPEN.add(self)

    def __getstate__(self) -> dict:
        # Copies share the file, not the memory: they load it again when used.
        return {"path": self.path, "flush_rows": self.flush_rows}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], flush_rows=state["flush_rows"])

    def __repr__(self) -> str:
        return f"FeatureStore({self.path})"

    def _load(self) -> None:
        if self._index is not None:
            return
        self._index, self._rows = {}, None
        if not self.path.is_file():
            return
        try:
            from safetensors.torch import load_file

            data = load_file(str(self.path))
            keys, rows = data["keys"], data["rows"]
            if keys.dim() != 1 or rows.dim() != 2 or len(keys) != len(rows):
                raise ValueError(f"keys {list(keys.shape)} and rows {list(rows.shape)} do not match")
        except Exception as exc:  # a damaged file is a cache miss, rebuilt by the next flush
            log.warning("feature store %s is unreadable (%s); recomputing its rows", self.path, exc)
            return
        self._index = {int(k): i for i, k in enumerate(keys.tolist())}
        self._rows = rows

    def __len__(self) -> int:
        with self._lock:
            self._load()
            return len(self._index) + sum(k not in self._index for k in self._pending)

    def __contains__(self, key: int) -> bool:
        with self._lock:
            self._load()
            return key in self._index or key in self._pending

    def get(self, keys: Sequence[int]) -> dict[int, Tensor]:
        """The stored rows ``[F]`` (float32, CPU) of those ``keys`` the store has."""
        found = {}
        with self._lock:
            self._load()
            for key in keys:
                if key in self._pending:
                    found[key] = self._pending[key]
                elif key in self._index:
                    found[key] = self._rows[self._index[key]]
        return found

    def add(self, keys: Sequence[int], rows: Tensor) -> None:
        """Queue ``rows`` ``[M, F]`` under ``keys`` (M of them); written once :attr:`flush_rows` are pending."""
        rows = rows.detach().float().cpu()
        with self._lock:
            self._load()
            for key, row in zip(keys, rows):
                if key not in self._index:
                    self._pending[key] = row.clone()
            due = len(self._pending) >= self.flush_rows
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the pending rows (merged with the file as it is now on disk), atomically."""
        from safetensors.torch import save_file

        with self._lock:
            if not self._pending:
                return
            self._index = None  # re-read: another process may have added rows since
            self._load()
            fresh = {k: v for k, v in self._pending.items() if k not in self._index}
            self._pending = {}
            if not fresh:
                return
            width = next(iter(fresh.values())).shape[0]
            if self._rows is not None and self._rows.shape[1] != width:
                log.warning("feature store %s holds %d-d rows, not %d-d: starting it again", self.path,
                            self._rows.shape[1], width)
                self._index, self._rows = {}, None
            new_keys = torch.tensor(list(fresh), dtype=torch.int64)
            new_rows = torch.stack(list(fresh.values()))
            if self._rows is not None:
                old_keys = torch.tensor(list(self._index), dtype=torch.int64)
                new_keys, new_rows = torch.cat([old_keys, new_keys]), torch.cat([self._rows, new_rows])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                save_file({"keys": new_keys, "rows": new_rows.contiguous()}, str(tmp))
                os.replace(tmp, self.path)
            except OSError as exc:  # a full or read-only disk costs speed, never the run
                log.warning("could not write the feature store %s: %s", self.path, exc)
                tmp.unlink(missing_ok=True)
                return
            self._index = {int(k): i for i, k in enumerate(new_keys.tolist())}
            self._rows = new_rows


_OPEN: weakref.WeakSet[FeatureStore] = weakref.WeakSet()


@atexit.register
def _flush_open_stores() -> None:
    for store in list(_OPEN):
        try:
            store.flush()
        except Exception as exc:  # exiting: report, never raise
            log.warning("feature store %s not flushed at exit: %s", store.path, exc)
