"""The shared shape of every CLIP tower: a trunk to features ``[B, F]``, then a linear projection
``[B, embed_dim]`` into the joint space (CLIP's W_I / W_T), with freezing and a feature cache.

Freezing (``freeze``, with :class:`cl_core.frozen.FrozenParts`): the trunk's parameters stop requiring
gradients and the frozen modules stay in eval mode even while the pipeline trains (BatchNorm statistics
and dropout are part of what is frozen); the trunk then runs under ``torch.no_grad()``. Only the
projection (and any trunk part a tower keeps trainable, e.g. MiniLM's top layers) trains: LiT-style
locked towers (Zhai et al., 2022).

Feature cache (``cache_features``, a :class:`cl_core.frozen.FeatureCache`): a frozen trunk in eval mode
is a fixed function, so the trunk features of an input seen before can be reused. ``prepare`` adds an
int64 ``key`` per item (:func:`cl_core.frozen.item_keys`: a hash of the text, or of the raw image salted
with the tower's input size); :meth:`Tower._encode` runs the trunk only on the rows the cache lacks. The
cache is off while any trunk parameter requires grad, while training-time augmentation runs, and it is
cleared whenever weights are loaded.

Rows the cache will serve need no trunk inputs, and for images those are the costly part of the data
path (decoding and resizing). A tower whose ``prepare`` leaves them out (see
:class:`~cl_clip.image_tower.ImageTower`) first claims the rows with :meth:`Tower.claim`, from the data
thread, and the inputs then carry ``"ready"``, ``[B]`` bool, false for the rows left out: the claim
protocol of :mod:`cl_core.frozen`.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cl_core.api import DEFAULT_CACHE_SIZE, Encoder, FeatureCache, FrozenParts

#: one tower at a time computes its store namespace (a digest of the trunk's weights)
_STORE_LOCK = threading.Lock()


def projection_head(kind: str, feature_dim: int, embed_dim: int, *, bias: bool = False, hidden: int = 2048,
                    dropout: float = 0.0) -> nn.Module:
    """The features -> joint-space map of a tower (see :class:`Tower`'s ``head``).

    Raises:
        ValueError: unknown ``kind``, or ``"none"`` with ``embed_dim != feature_dim``.
    """
    if kind == "linear":
        proj = nn.Linear(feature_dim, embed_dim, bias=bias)
        # CLIP initialises its projections with std = in_features ** -0.5.
        nn.init.normal_(proj.weight, std=feature_dim**-0.5)
        if bias:
            nn.init.zeros_(proj.bias)
        return proj
    if kind == "mlp":
        if hidden <= 0 or not 0 <= dropout < 1:
            raise ValueError(f"an mlp head needs head_hidden > 0 and 0 <= head_dropout < 1, got {hidden}, {dropout}")
        return nn.Sequential(nn.BatchNorm1d(feature_dim, affine=False), nn.Linear(feature_dim, hidden), nn.GELU(),
                             nn.Dropout(dropout), nn.Linear(hidden, embed_dim))
    if kind == "none":
        if embed_dim != feature_dim:
            raise ValueError(f"head = 'none' keeps the trunk's {feature_dim}-d space: set embed_dim = {feature_dim}")
        return nn.Identity()
    raise ValueError(f"head must be 'linear', 'mlp' or 'none', got {kind!r}")


class Tower(FrozenParts, Encoder):
    """Trunk -> features ``[B, feature_dim]`` -> ``proj`` -> ``[B, embed_dim]`` (un-normalised).

    Subclasses implement :meth:`prepare` and :meth:`features` (the trunk's forward pass, pooling
    included, on prepared inputs).

    Args:
        trunk: the module holding every trunk parameter (registered as ``self.trunk``).
        feature_dim: width F of :meth:`features`.
        embed_dim: width N of the joint space.
        freeze: freeze ``frozen_parts`` (default: the whole trunk).
        cache_features: allow the frozen-trunk feature cache.
        proj_bias: give the projection a bias (CLIP's ResNet ``c_proj`` has one; W_I / W_T do not).
        frozen_parts: the trunk sub-modules to freeze when ``freeze`` (default ``[trunk]``).
        cache_size: LRU capacity in rows.
        head: the map from features to the joint space: ``"linear"`` (CLIP's W_I / W_T), ``"mlp"``
            (per-feature standardisation with BatchNorm, Linear, GELU, dropout, Linear: a better fit on
            frozen multi-layer features), or ``"none"`` (identity; needs ``embed_dim == feature_dim``,
            e.g. keeping a frozen text tower's own space).
        head_hidden: hidden width of the ``"mlp"`` head.
        head_dropout: dropout before the last layer of the ``"mlp"`` head.
    """

    def __init__(
        self,
        trunk: nn.Module,
        feature_dim: int,
        embed_dim: int,
        *,
        freeze: bool = False,
        cache_features: bool = True,
        proj_bias: bool = False,
        frozen_parts: Sequence[nn.Module] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        head: str = "linear",
        head_hidden: int = 2048,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if feature_dim <= 0 or embed_dim <= 0:
            raise ValueError(f"feature_dim and embed_dim must be > 0, got {feature_dim} and {embed_dim}")
        self.trunk = trunk
        self.proj = projection_head(head, feature_dim, embed_dim, bias=proj_bias, hidden=head_hidden,
                                    dropout=head_dropout)
        self._embed_dim = embed_dim
        self.feature_dim = feature_dim
        self.freeze = freeze
        self.cache_features = cache_features
        # The data thread claims rows (claim) while the training thread reads and fills the cache.
        self.feature_cache = FeatureCache(cache_size)
        if freeze:
            self.freeze_parts(*(frozen_parts if frozen_parts is not None else [trunk]))
        self.train(True)

    # -- contract --------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @abc.abstractmethod
    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Trunk features ``[B, feature_dim]`` of prepared inputs (before the projection)."""

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        feats = self._trunk_features(inputs)
        dtype = next((p.dtype for p in self.proj.parameters()), feats.dtype)
        return self.proj(feats.to(dtype))

    # -- freezing (train() keeps the frozen parts in eval mode: FrozenParts) ----------------------------
    def trunk_parameters(self) -> Iterator[nn.Parameter]:
        return self.trunk.parameters()

    @property
    def trunk_trains(self) -> bool:
        """True when any trunk parameter requires a gradient."""
        return any(p.requires_grad for p in self.trunk_parameters())

    @property
    def augmenting(self) -> bool:
        """True when this forward pass applies random training augmentation (image towers)."""
        return False

    # -- feature cache ---------------------------------------------------------------------------
    @property
    def wants_keys(self) -> bool:
        """Whether :meth:`prepare` should add cache keys (the trunk is fully frozen)."""
        return self.cache_features and self.freeze and not self.trunk_trains

    def _cache_usable(self) -> bool:
        return self.cache_features and not self.trunk_trains and not self.trunk.training and not self.augmenting

    def clear_cache(self) -> None:
        """Drop every cached feature row (the on-disk store, if any, is detached: new weights name another)."""
        self.feature_cache.clear()
        self.feature_cache.store = None
        self._store_checked = False

    #: keep the frozen trunk's features on disk across runs (:mod:`cl_core.feature_store`); towers whose trunk
    #: is a fixed pretrained function set it
    persist_features: bool = False

    def store_signature(self) -> str:
        """What besides the trunk's weights and the cache key's salt decides :meth:`features` (pooling,
        normalisation): part of the on-disk store's namespace. Towers that persist features override it."""
        return ""

    def _attach_store(self) -> None:
        """Give the feature cache its on-disk tier, once per set of weights (towers with ``persist_features``,
        unless ``$CL_FEATURE_STORE`` is off). Thread-safe: the data thread may get here first."""
        if self.__dict__.get("_store_checked") or not self.persist_features:
            return
        with _STORE_LOCK:
            if self.__dict__.get("_store_checked"):
                return
            from cl_core.api import FeatureStore, module_digest, store_root

            root = store_root()
            if root is not None:
                namespace = module_digest(self.trunk, f"{self.feature_dim}\0{self.store_signature()}")
                self.feature_cache.store = FeatureStore(root / f"{type(self).__name__}-{namespace[:32]}.safetensors")
            self._store_checked = True

    @property
    def cache_len(self) -> int:
        return len(self.feature_cache)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.clear_cache()  # new trunk weights make cached features stale
        super()._load_from_state_dict(*args, **kwargs)

    def claim(self, keys: Sequence[int], items: Sequence[Any]) -> list[bool]:
        """For a data path that leaves out the inputs of cached rows: which of ``keys`` the cache holds
        (see :meth:`cl_core.frozen.FeatureCache.claim`; none while the trunk trains or without the cache).
        Thread-safe."""
        if not self.cache_features or self.trunk_trains:
            return [False] * len(keys)
        self._attach_store()
        return self.feature_cache.claim(keys, items)

    def release(self, keys: Sequence[int]) -> None:
        """Give back one claim on each of ``keys`` (rows whose batch is encoded, or prepared after all)."""
        self.feature_cache.release(keys)

    def prepare_claimed(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """Trunk inputs of raw items in full (no row left out): what a claimed row needs when the cache lost
        it. Towers whose ``prepare`` leaves rows out implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not leave rows out of prepare()")

    def _trunk_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        trains = self.trunk_trains
        if trains and len(self.feature_cache):
            self.clear_cache()  # someone unfroze the trunk: what we cached may go stale
        if "ready" in inputs:  # rows left out of prepare: filled in where the cache lost them
            inputs = self.feature_cache.complete(inputs, self.prepare_claimed, usable=self._cache_usable(),
                                                 owner=type(self).__name__)
        rest = {k: v for k, v in inputs.items() if k != "key"}
        if "key" in inputs and self._cache_usable():
            self._attach_store()

            def compute(rows: Tensor) -> Tensor:  # the trunk on the rows the cache lacks
                return self.features({k: v.index_select(0, rows) for k, v in rest.items()})

            return self.feature_cache.get_or_compute(inputs["key"].tolist(), compute,
                                                     device=next(iter(rest.values())).device)
        if trains:
            return self.features(rest)
        with torch.no_grad():
            return self.features(rest)

    # -- convenience -----------------------------------------------------------------------------
    def embed_features(self, items: Sequence[Any], *, batch_size: int = 256) -> Tensor:
        """Trunk features ``[len(items), feature_dim]`` (before the projection) in eval mode, on CPU."""
        return self.map_batches(self._trunk_features, items, batch_size=batch_size, what="embed_features()")
