"""Frozen parts and feature caches: core services for any encoder with a locked (frozen) part.

A locked part (Zhai et al., 2022, "LiT: Zero-Shot Transfer with Locked-image text Tuning") keeps its
pretrained weights: its parameters stop requiring gradients and it stays in eval mode even while the
pipeline trains (BatchNorm statistics and dropout are part of what is frozen). A locked part in eval
mode is a fixed function of its input, so what it computes for an input seen before can be reused:

- :func:`freeze` and :class:`FrozenParts` lock sub-modules of a module;
- :func:`item_keys` (and :func:`item_digest` / :func:`digest_keys`) hash raw items (strings, images,
  arrays, bytes) to int64 keys, deterministic across processes;
- :class:`FeatureCache` is a thread-safe LRU of per-row feature tensors by key, computing only the
  missing rows of a batch, with a *claim* protocol for a data path that leaves out the inputs of rows
  the cache will serve (see below);
- :class:`FrozenEncoder` wraps any :class:`~cl_core.components.Encoder` into a fully locked one whose
  embeddings are cached by item key.

The claim protocol. Rows the cache will serve need no inputs, and for images those are the costly part
of the data path (decoding and resizing). An encoder whose ``prepare`` leaves them out first claims the
rows with :meth:`FeatureCache.claim`, from the data thread: a claimed row's entry is marked recently
used and its raw item is held until the batch is encoded, so a row the cache has lost in between
(evicted, or cleared by new weights) is prepared then instead. The prepared inputs then carry ``"key"``
(``[B]`` int64) and ``"ready"`` (``[B]`` bool, false for the rows left out); :meth:`FeatureCache.complete`
fills in the lost rows (from the held items) and releases the batch's claims.

This module imports torch; ``cl_core`` imports it only where it is needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .components import CandidateSet, Encoder

__all__ = ["DEFAULT_CACHE_SIZE", "MAX_CLAIMS", "FeatureCache", "FrozenEncoder", "FrozenParts", "digest_keys",
           "freeze", "item_digest", "item_keys"]

#: Default capacity of a feature cache in rows (1280 float32 each for EfficientNet: ~330 MB).
DEFAULT_CACHE_SIZE = 65_536
#: Most claimed rows a cache holds raw items for. Claims are released when their batch is encoded; this
#: only bounds what batches dropped unencoded (an interrupted prefetch) leave behind.
MAX_CLAIMS = 16_384

#: False in a process that prepares batches for another one (``trainer.data_processes``): the rows it could
#: leave out are cached in the training process, not here, so every row is prepared in full
_claims_enabled = True
#: True while a pipeline is pickled for such a process: caches travel empty (their rows serve only here)
_pickling_for_workers = False


def disable_claims() -> None:
    """Make every :meth:`FeatureCache.claim` of this process claim nothing (see ``_claims_enabled``)."""
    global _claims_enabled
    _claims_enabled = False


@contextlib.contextmanager
def pickled_empty() -> Iterator[None]:
    """Within it, pickled :class:`FeatureCache` objects carry no rows and no persistent store."""
    global _pickling_for_workers
    _pickling_for_workers = True
    try:
        yield
    finally:
        _pickling_for_workers = False


# -- freezing ------------------------------------------------------------------------------------------
def freeze(*modules: nn.Module) -> None:
    """Lock ``modules`` now: no parameter requires a gradient, and each is put in eval mode.

    A later ``.train()`` of a module that contains them would switch them back to training mode: an owner
    keeps them in eval mode with :class:`FrozenParts`.
    """
    for module in modules:
        module.requires_grad_(False)
        module.eval()


class FrozenParts:
    """Mixin for an :class:`~torch.nn.Module` with locked sub-modules (LiT's locked towers, Zhai et al., 2022).

    :meth:`freeze_parts` locks sub-modules (see :func:`freeze`); they then stay in eval mode whenever the
    owner's :meth:`train` is called, in either mode. List the mixin before the module base class
    (``class Tower(FrozenParts, Encoder)``) so its :meth:`train` runs.
    """

    def freeze_parts(self, *parts: nn.Module) -> None:
        """Lock ``parts`` (sub-modules of this module, already registered elsewhere) and keep them in eval mode."""
        freeze(*parts)
        known = self.__dict__.get("_frozen_parts", [])
        # A plain list, set through object.__setattr__: the parts are registered once, where they live.
        object.__setattr__(self, "_frozen_parts", known + [p for p in parts if all(p is not k for k in known)])

    @property
    def frozen_parts(self) -> tuple[nn.Module, ...]:
        """The sub-modules locked by :meth:`freeze_parts`."""
        return tuple(self.__dict__.get("_frozen_parts", ()))

    def train(self, mode: bool = True) -> Any:
        """Set the training mode (``nn.Module.train``); locked parts stay in eval mode."""
        super().train(mode)  # type: ignore[misc]
        for part in self.__dict__.get("_frozen_parts", ()):
            part.eval()
        return self


# -- item keys -----------------------------------------------------------------------------------------
#: What a cache key may be salted with: an int, a str, bytes, or a tuple of them (hashed one after another).
Salt = int | str | bytes | tuple


def _salt_bytes(salt: Salt) -> bytes:
    if isinstance(salt, tuple):
        return b"".join(_salt_bytes(part) for part in salt)
    if isinstance(salt, int):
        if 0 <= salt < 2**32:
            return salt.to_bytes(4, "little")
        if -(2**63) <= salt < 2**63:
            return salt.to_bytes(8, "little", signed=True)
        raise ValueError(f"an int salt must fit in int64, got {salt}")
    if isinstance(salt, memoryview):
        return salt.tobytes()
    if isinstance(salt, str):
        return salt.encode("utf-8")
    if isinstance(salt, (bytes, bytearray)):
        return bytes(salt)
    raise TypeError(f"salt must be an int, str, bytes or a tuple of them, got {type(salt).__name__}")


def _key(data: bytes, extra: bytes | None) -> int:
    """The signed 8-byte BLAKE2b of ``data`` then ``extra``."""
    h = hashlib.blake2b(data, digest_size=8)
    if extra is not None:
        h.update(extra)
    return int.from_bytes(h.digest(), "little", signed=True)


def item_digest(item: Any, index: int = 0) -> bytes:
    """16-byte BLAKE2b digest of one raw non-text item as given, before any preprocessing.

    - PIL image: its mode, width x height, palette (modes ``P`` / ``PA``) and pixel bytes;
    - numpy array: its dtype, shape and bytes (C order);
    - torch tensor: its dtype, shape and bytes (on CPU, C order);
    - ``bytes`` / ``bytearray`` / ``memoryview``: the bytes.

    Equal digests mean equal items, so a digest identifies an image without decoding or resizing it; an
    item is hashed once and keyed at several salts with :func:`digest_keys`.

    Raises:
        ValueError: ``item`` is of none of these types (strings are keyed directly by :func:`item_keys`);
            the message names ``items[index]``.
    """
    h = hashlib.blake2b(digest_size=16)
    pil = sys.modules.get("PIL.Image")  # an item cannot be a PIL image unless Pillow is imported
    np = sys.modules.get("numpy")
    if pil is not None and isinstance(item, pil.Image):
        h.update(f"pil:{item.mode}:{item.width}x{item.height}".encode())
        palette = item.getpalette() if item.mode in ("P", "PA") else None
        if palette:
            h.update(bytes(palette))
        h.update(item.tobytes())
    elif np is not None and isinstance(item, np.ndarray):
        h.update(f"array:{item.dtype.str}:{item.shape}".encode())
        h.update(np.ascontiguousarray(item).tobytes())
    elif isinstance(item, Tensor):
        flat = item.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor:{flat.dtype}:{tuple(item.shape)}".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.element_size() else b"")
    elif isinstance(item, (bytes, bytearray, memoryview)):
        h.update(b"bytes:")
        h.update(bytes(item))
    else:
        note = " (item_keys() keys strings)" if isinstance(item, str) else ""
        raise ValueError(f"items[{index}]: expected a PIL image, a numpy array, a tensor or bytes, got "
                         f"{type(item).__name__}{note}")
    return h.digest()


def digest_keys(digests: Iterable[bytes], salt: Salt | None = None) -> Tensor:
    """``[B]`` int64 keys of items given by their :func:`item_digest`: 8-byte BLAKE2b of the digest and the salt.

    Args:
        digests: one :func:`item_digest` per item.
        salt: what else the cached value depends on, e.g. the input size a tower resizes images to:
            an int in [0, 2**32) is hashed as 4 little-endian bytes (other int64 values as 8), a str as
            UTF-8, bytes as they are, and a tuple as its parts one after another.

    Raises:
        TypeError, ValueError: a salt of another type, or an int outside int64.
    """
    extra = None if salt is None else _salt_bytes(salt)
    return torch.tensor([_key(digest, extra) for digest in digests], dtype=torch.long)


def item_keys(items: Sequence[Any], salt: Salt | None = None) -> Tensor:
    """``[B]`` int64 cache keys of raw items; equal items (and salts) give equal keys, in every process.

    A string is keyed by the 8-byte BLAKE2b of its UTF-8 bytes (then the salt); any other item by
    :func:`digest_keys` of its :func:`item_digest` (images, arrays, tensors, bytes). Python's ``hash()``
    is not used: it is salted per process for strings.

    Args:
        items: raw items; a batch may mix types.
        salt: see :func:`digest_keys`; e.g. the input size of an image tower, so one image resized to two
            sizes has two keys.

    Raises:
        ValueError: an item of another type (the message names its index); TypeError / ValueError: a bad salt.
    """
    extra = None if salt is None else _salt_bytes(salt)
    keys = [_key(item.encode("utf-8") if isinstance(item, str) else item_digest(item, i), extra)
            for i, item in enumerate(items)]
    return torch.tensor(keys, dtype=torch.long)


# -- feature cache -------------------------------------------------------------------------------------
class FeatureCache:
    """Thread-safe LRU of per-row feature tensors ``[F]`` keyed by int64 item keys, with claims.

    The training thread reads and fills it with :meth:`get_or_compute`; the data thread claims rows with
    :meth:`claim` (see the module docstring for the protocol). Rows are stored detached, as float32, on
    the device they were computed on, and moved with the module when it moves. Copies and pickles keep
    the rows but not the claims (they belong to this cache's batches in flight).

    Args:
        capacity: most rows kept (least recently used evicted first); 0 keeps none between calls.
        max_claims: most claimed keys whose raw items are held (oldest claims dropped first).

    Raises:
        ValueError: a negative ``capacity`` or ``max_claims``.
    """

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE, *, max_claims: int = MAX_CLAIMS) -> None:
        if max_claims < 0:
            raise ValueError(f"max_claims must be >= 0, got {max_claims}")
        self.capacity = capacity
        self.max_claims = max_claims
        self._rows: OrderedDict[int, Tensor] = OrderedDict()
        # key -> [raw item, claims not yet encoded]: what a claimed row needs if the cache loses it.
        self._claims: OrderedDict[int, list] = OrderedDict()
        self._lock = threading.Lock()
        #: a persistent tier (:class:`~cl_core.feature_store.FeatureStore`): rows missing here are looked up
        #: there before they are computed, and computed rows are added to it; None keeps rows in memory only
        self.store: Any = None

    @property
    def capacity(self) -> int:
        """Most rows kept; lowering it evicts at the next :meth:`get_or_compute`."""
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"a feature cache's capacity must be >= 0, got {value}")
        self._capacity = int(value)

    def __getstate__(self) -> dict[str, Any]:
        # A lock cannot be copied or pickled, and claims belong to this cache's batches in flight.
        state = dict(self.__dict__)
        state["_lock"], state["_claims"] = None, OrderedDict()
        if _pickling_for_workers:
            state["_rows"], state["store"] = OrderedDict(), None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FeatureCache({len(self._rows)}/{self._capacity} rows, {len(self._claims)} claimed)"

    # -- rows --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: int) -> bool:
        return key in self._rows

    def keys(self) -> list[int]:
        """The cached keys, least recently used first."""
        with self._lock:
            return list(self._rows)

    def peek(self, key: int) -> Tensor | None:
        """The cached row ``[F]`` of ``key`` (None if absent), without marking it used."""
        with self._lock:
            return self._rows.get(key)

    def clear(self) -> None:
        """Drop every cached row (claims stay: their rows are prepared when encoded)."""
        with self._lock:
            self._rows.clear()

    def get_or_compute(self, keys: Sequence[int], compute: Callable[[Tensor], Tensor], *,
                       device: torch.device | str = "cpu") -> Tensor:
        """Rows ``[B, F]`` of ``keys`` in order, computing only those the cache lacks.

        ``compute(rows)`` gets the ``[M]`` int64 positions (on ``device``) of the first occurrence in
        ``keys`` of each missing key and returns their features ``[M, F]``; it runs under
        ``torch.no_grad()``, and its rows are stored (float32). Every row of the batch is marked recently
        used; the least recently used rows beyond :attr:`capacity` are evicted after the batch is served.
        Rows cached on another device are moved to ``device`` (and kept there).

        Raises:
            ValueError: ``keys`` is empty, or ``compute`` returned a number of rows other than M.
        """
        if len(keys) == 0:
            raise ValueError("a feature-cache lookup needs at least one key")
        device = torch.device(device)
        first: dict[int, int] = {}
        with self._lock:
            for i, key in enumerate(keys):
                if key not in self._rows and key not in first:
                    first[key] = i
        if first and self.store is not None:
            stored = self.store.get(list(first))
            with self._lock:
                for key, row in stored.items():
                    self._rows[key] = row.clone()
            first = {k: i for k, i in first.items() if k not in stored}
        if first:
            rows = torch.tensor(list(first.values()), dtype=torch.long, device=device)
            with torch.no_grad():
                fresh = compute(rows).float()
            if fresh.dim() < 1 or fresh.shape[0] != len(first):
                raise ValueError(f"compute() must return one row per missing key: {len(first)} expected, got "
                                 f"shape {list(fresh.shape)}")
            if self.store is not None:
                self.store.add(list(first), fresh)
        out = []
        with self._lock:
            for j, key in enumerate(first):
                self._rows[key] = fresh[j].clone()
            for key in keys:
                row = self._rows[key]
                self._rows.move_to_end(key)
                if row.device != device:  # the module moved since the row was cached
                    row = row.to(device)
                    self._rows[key] = row
                out.append(row)
            while len(self._rows) > self._capacity:
                self._rows.popitem(last=False)
        return torch.stack(out)

    # -- claims ------------------------------------------------------------------------------------
    @property
    def num_claimed(self) -> int:
        """How many keys are claimed and not yet released."""
        return len(self._claims)

    def claim(self, keys: Sequence[int], items: Sequence[Any]) -> list[bool]:
        """For a data path that leaves out the inputs of cached rows: which of ``keys`` the cache holds.

        Each such row is marked recently used and one claim on it is taken: its raw item (from ``items``,
        one per key) is held until the claim is released, normally by :meth:`complete` when the batch is
        encoded, so the row can still be prepared if the cache loses it first. Beyond :attr:`max_claims`
        keys the oldest claims are dropped. Thread-safe. In a process that prepares for another one
        (:func:`disable_claims`) it claims nothing.
        """
        if not _claims_enabled:
            return [False] * len(keys)
        cached = []
        stored = self.store.get([k for k in keys if k not in self._rows]) if self.store is not None else {}
        with self._lock:
            for key, item in zip(keys, items):
                if key not in self._rows and key in stored:
                    self._rows[key] = stored[key].clone()
                hit = key in self._rows
                if hit:
                    self._rows.move_to_end(key)
                    held = self._claims.setdefault(key, [item, 0])
                    held[1] += 1
                    self._claims.move_to_end(key)
                cached.append(hit)
            while len(self._claims) > self.max_claims:
                self._claims.popitem(last=False)
        return cached

    def release(self, keys: Iterable[int]) -> None:
        """Give back one claim on each of ``keys`` (rows whose batch is encoded, or prepared after all)."""
        with self._lock:
            self._release(keys)

    def _release(self, keys: Iterable[int]) -> None:
        for key in keys:
            held = self._claims.get(key)
            if held is not None:
                held[1] -= 1
                if held[1] <= 0:
                    del self._claims[key]

    def complete(self, inputs: Mapping[str, Tensor], prepare: Callable[[Sequence[Any]], Mapping[str, Tensor]], *,
                 usable: bool = True, owner: str = "encoder") -> dict[str, Tensor]:
        """Prepared inputs without ``"ready"``, whose left-out rows are filled in where the cache cannot serve them.

        Args:
            inputs: ``"key"`` ``[B]`` int64, ``"ready"`` ``[B]`` bool (false for rows left out of prepare,
                each claimed with :meth:`claim`), and per-row tensors ``[B, ...]``.
            prepare: the full inputs of raw items (no row left out): called with the held items of the
                rows to fill in, it returns a dict with an ``[M, ...]`` tensor for each per-row input.
            usable: whether the cache may serve this batch at all; if not, every left-out row is filled in.
            owner: the encoder's name, for the error message.

        The claims of the batch's left-out rows are released.

        Raises:
            RuntimeError: a left-out row to fill in has no claim (it was not claimed on this cache).
        """
        rest = {k: v for k, v in inputs.items() if k != "ready"}
        if bool(inputs["ready"].all()):
            return rest
        keys, ready = inputs["key"].tolist(), inputs["ready"].tolist()
        with self._lock:
            lost = [i for i, (k, r) in enumerate(zip(keys, ready)) if not r and (not usable or k not in self._rows)]
            try:
                items = [self._claims[keys[i]][0] for i in lost]
            except KeyError:
                raise RuntimeError(f"{owner}: a row was left out of prepare() without a claim (call claim() first, "
                                   "on the same cache)") from None
            self._release([key for key, r in zip(keys, ready) if not r])
        if lost:
            rows = torch.tensor(lost, dtype=torch.long)
            for name, value in prepare(items).items():
                target = rest[name]
                rest[name] = target.index_copy(0, rows.to(target.device), value.to(target.device, target.dtype))
        return rest


# -- frozen encoder ------------------------------------------------------------------------------------
class FrozenEncoder(FrozenParts, Encoder):
    """Any encoder, locked (LiT, Zhai et al., 2022), with its embeddings cached by item key.

    No parameter of the wrapped encoder requires a gradient, it stays in eval mode through ``.train()``,
    and it runs under ``torch.no_grad()``. ``prepare(items)`` is the wrapped encoder's ``prepare`` plus
    ``"key"`` (``[B]`` int64, :func:`item_keys`; a ``"key"`` of the wrapped encoder's own travels as
    ``"encoder.key"``); :meth:`_encode` serves the rows the cache holds and encodes only the missing ones
    with the wrapped encoder. Embeddings are ``[B, embed_dim]`` (float32 when cached; rows of one
    batch with equal keys are encoded once). Loading weights clears the cache.

    The wrapped encoder is the submodule ``encoder`` (state-dict keys ``encoder.*``); ``embed_dim`` and
    ``modality`` are its own. When it leaves cached rows out of its ``prepare`` (the claim protocol, see
    :class:`FeatureCache`), the claims of the rows this cache serves are given back to it. Only embeddings
    are cached: the wrapper gives no token states (``provides_tokens`` is False).

    Args:
        encoder: the encoder to lock (not a :class:`~cl_core.components.CandidateSet`).
        cache: cache embeddings by item key.
        cache_size: capacity of the cache in rows.

    Raises:
        TypeError: ``encoder`` is not an :class:`~cl_core.components.Encoder`, or is a CandidateSet (its
            candidates are parameters read without ``prepare``, nothing to cache).
        ValueError: a negative ``cache_size``.
    """

    INNER_KEY = "encoder.key"

    def __init__(self, encoder: Encoder, *, cache: bool = True, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if not isinstance(encoder, Encoder):
            raise TypeError(f"FrozenEncoder wraps an Encoder, got {type(encoder).__name__}")
        if isinstance(encoder, CandidateSet):
            raise TypeError(f"FrozenEncoder cannot wrap the CandidateSet {type(encoder).__name__}")
        super().__init__()
        self.encoder = encoder
        self.modality = encoder.modality
        self.cache = cache
        self.feature_cache = FeatureCache(cache_size)
        self.freeze_parts(encoder)

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @property
    def cache_len(self) -> int:
        """How many embeddings are cached."""
        return len(self.feature_cache)

    def clear_cache(self) -> None:
        """Drop every cached embedding."""
        self.feature_cache.clear()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.clear_cache()  # new weights make cached embeddings stale
        super()._load_from_state_dict(*args, **kwargs)

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """The wrapped encoder's inputs plus ``"key"`` ``[B]`` int64 (when caching).

        Raises:
            whatever the wrapped ``prepare`` raises; ValueError: an item :func:`item_keys` cannot hash.
        """
        out = dict(self.encoder.prepare(items))
        if self.cache:
            if "key" in out:
                out[self.INNER_KEY] = out.pop("key")
            out["key"] = item_keys(items)
        return out

    def _inner_inputs(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        inner = {k: v for k, v in inputs.items() if k != "key"}
        if self.INNER_KEY in inner:
            inner["key"] = inner.pop(self.INNER_KEY)
        return inner

    def _encode_inner(self, inputs: Mapping[str, Tensor]) -> Tensor:
        with torch.no_grad():
            return self.encoder.encode(inputs)

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        inner = self._inner_inputs(inputs)
        if not self.cache or "key" not in inputs:
            return self._encode_inner(inner)
        keys = inputs["key"].tolist()
        device = next(iter(inner.values()), inputs["key"]).device
        computed: list[int] = []

        def compute(rows: Tensor) -> Tensor:
            computed.extend(rows.tolist())
            return self._encode_inner({k: v.index_select(0, rows.to(v.device)) for k, v in inner.items()})

        out = self.feature_cache.get_or_compute(keys, compute, device=device)
        release = getattr(self.encoder, "release", None)
        if "ready" in inner and "key" in inner and callable(release):
            # Rows the wrapped encoder left out and never saw: give its claims on them back.
            seen, ready, inner_keys = set(computed), inner["ready"].tolist(), inner["key"].tolist()
            release([inner_keys[i] for i in range(len(keys)) if i not in seen and not ready[i]])
        return out
