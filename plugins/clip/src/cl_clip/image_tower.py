"""Image towers' common part: CPU preprocessing to normalised pixels and on-device augmentation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import ImageAugment
from .preprocess import DEFAULT_FILL, RESIZE_MODES, image_digest, image_keys, normalize_pixels, prepare_images
from .tower import Tower


class ImageTower(Tower):
    """A :class:`Tower` whose inputs are images.

    ``prepare`` gives ``{"pixels": [B, 3, S, S] uint8}`` (plus ``"key"`` when the frozen trunk's feature
    cache is on); :meth:`pixels` normalises them on the device (float pixels are taken as normalised
    already) and, in training mode with ``augment``, augments them (see :mod:`cl_clip.augment`).

    With the cache on and no random views (neither ``augment`` nor ``flip``), ``prepare`` leaves out the
    pixels of the rows the cache already serves (zero, with ``"ready"`` false; see :class:`Tower`): after
    the first epoch nothing is resized on the data path, and the embeddings are the same.

    Args:
        trunk, feature_dim, embed_dim, freeze, cache_features, proj_bias: see :class:`Tower`.
        image_size: side S of the prepared images in pixels.
        mean, std: per-channel normalisation (RGB, pixels in [0, 1]).
        augment: enable training-time augmentation.
        flip: mirror a random half of the images in training, and average the normalised embeddings of
            each image and its mirror at evaluation. Unlike ``augment`` it keeps the feature cache:
            a mirrored image is cached under its own key.
        resize_mode: how a non-square image is made square: ``"shortest"``, ``"squash"`` or ``"longest"``
            (see :func:`~cl_clip.preprocess.resize_square`). An attribute like ``image_size``: setting it on a
            built tower changes the preprocessing from the next ``prepare`` on (the feature cache keys
            include it).
        fill_color: grey level (0-255) of the padding of ``resize_mode = "longest"``.
    """

    modality: ClassVar[str] = "image"

    def __init__(
        self,
        trunk: nn.Module,
        feature_dim: int,
        embed_dim: int,
        *,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        flip: bool = False,
        resize_mode: str = "shortest",
        fill_color: int = DEFAULT_FILL,
        **kwargs: Any,
    ) -> None:
        super().__init__(trunk, feature_dim, embed_dim, **kwargs)
        self.flip = flip
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(map(repr, RESIZE_MODES))}, got {resize_mode!r}")
        if not 0 <= fill_color <= 255:
            raise ValueError(f"fill_color must be a grey level in 0-255, got {fill_color}")
        self.resize_mode = resize_mode
        self.fill_color = fill_color
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values each (std > 0), got {tuple(mean)} and {tuple(std)}")
        self.image_size = image_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        self.augmenter = ImageAugment(self.mean, self.std) if augment else None

    @property
    def augmenting(self) -> bool:
        return self.augment and self.training

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        if not self.flip:
            return super()._encode(inputs)
        if self.training:
            # The global RNG draws which rows to mirror: seeded, and saved in checkpoints.
            mirror = torch.rand(inputs["pixels"].shape[0]) < 0.5
            return super()._encode(_mirrored(inputs, mirror.to(inputs["pixels"].device)))
        everything = torch.ones(inputs["pixels"].shape[0], dtype=torch.bool, device=inputs["pixels"].device)
        return F.normalize(super()._encode(inputs), dim=-1) + F.normalize(
            super()._encode(_mirrored(inputs, everything)), dim=-1)

    @property
    def leaves_out_cached_rows(self) -> bool:
        """Whether :meth:`prepare` leaves out the pixels of rows the feature cache serves."""
        return self.wants_keys and not self.augment and not self.flip

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """PIL images or uint8 ``[H, W, 3]`` arrays -> ``{"pixels": [B, 3, S, S] uint8}`` (see :mod:`.preprocess`)."""
        return prepare_shared([self], items)

    def prepare_claimed(self, items: Sequence[Any]) -> dict[str, Tensor]:
        return prepare_images(items, self.image_size, resize_mode=self.resize_mode, fill=self.fill_color)

    @property
    def preprocessing(self) -> tuple[int, str, int]:
        """What makes two towers' prepared pixels equal: input size, resize mode and fill."""
        return self.image_size, self.resize_mode, self.fill_color

    def pixels(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The normalised (and, in training, augmented) float pixel batch; raises ValueError on a wrong shape."""
        x = inputs["pixels"]
        expected = (3, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            s = self.image_size
            raise ValueError(f"pixels must have shape [B, 3, {s}, {s}], got {list(x.shape)}")
        x = normalize_pixels(x, self.mean, self.std)
        if self.augmenting and self.augmenter is not None:
            x = self.augmenter(x)
        return x


def prepare_shared(towers: Sequence[ImageTower], items: Sequence[Any],
                   digests: Sequence[bytes] | None = None) -> dict[str, Tensor]:
    """One ``prepare`` for image towers with the same :attr:`~ImageTower.preprocessing` and cache settings (an
    ensemble's members):
    ``"key"`` when they cache features, and pixels for every row, or, when they all leave out cached rows,
    for the rows that not every tower's cache serves.

    Args:
        digests: :func:`~cl_clip.preprocess.image_digest` of each item, when the caller has them already.
    """
    size, mode, fill = towers[0].preprocessing
    if not towers[0].wants_keys:
        return prepare_images(items, size, resize_mode=mode, fill=fill)
    if digests is None:
        digests = [image_digest(item, i) for i, item in enumerate(items)]
    keys = image_keys(digests, size, mode, fill)
    if not all(tower.leaves_out_cached_rows for tower in towers):
        return prepare_images(items, size, keys=keys, resize_mode=mode, fill=fill)
    key_list = keys.tolist()
    claims = [tower.claim(key_list, items) for tower in towers]
    skip = [all(row) for row in zip(*claims)]
    for tower, claimed in zip(towers, claims):  # rows some other tower must compute are prepared after all
        tower.release([k for k, c, s in zip(key_list, claimed, skip) if c and not s])
    return prepare_images(items, size, keys=keys, skip=skip if any(skip) else None, resize_mode=mode, fill=fill)


#: Mixed into the cache key of a mirrored image (any fixed odd 63-bit constant works).
MIRROR_KEY = 0x5DEECE66D2B7E151


def _mirrored(inputs: Mapping[str, Tensor], rows: Tensor) -> dict[str, Tensor]:
    """Inputs with the images of ``rows`` (bool ``[B]``) mirrored left-right, and their cache keys changed."""
    out = dict(inputs)
    out["pixels"] = torch.where(rows[:, None, None, None], inputs["pixels"].flip(-1), inputs["pixels"])
    if "key" in inputs:
        out["key"] = torch.where(rows.to(inputs["key"].device), inputs["key"] ^ MIRROR_KEY, inputs["key"])
    return out
