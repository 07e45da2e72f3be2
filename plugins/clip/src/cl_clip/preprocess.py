"""Image preprocessing (CLIP's ``_transform``): raw images -> uint8 tensors on the CPU data path, then
normalised floats on the device.

CLIP resizes the shorter side to the input size with bicubic interpolation, centre-crops a square,
scales pixels to [0, 1] and normalises each channel with a fixed mean and std. Transparent images
(emoji PNGs are RGBA) are composited onto white first: dropping the alpha channel instead would
expose whatever colour the transparent pixels happen to store (often black).

How a non-square image becomes a square is the image towers' ``resize_mode``, open_clip's three
(:func:`resize_square`): ``"shortest"`` (CLIP's resize and centre crop, the default: it cuts the ends off a
tall or wide image), ``"squash"`` (both sides resized to the input size: every pixel kept, the aspect
ratio not) and ``"longest"`` (the longer side resized to the input size and the image padded to a square
with ``fill_color``: every pixel and the aspect ratio kept). open_clip pads with black (``fill_color =
0``); here the default fill is white (255), the colour transparent images are composited onto, so a padded
emoji or drawing gets no frame its square versions never had. A square image comes out the same in every
mode.

The data path stops at uint8 (:func:`prepare_images`); :func:`normalize_pixels` runs in the tower, on
the device. A uint8 batch is a quarter of the float one to build and to move to a GPU, and rows that the
frozen-trunk feature cache serves are never converted at all. On the emoji main job (three trunks up to
260 px, 256 images per step, 2 CPU cores) the steps served from the cache ran at 1.0 step/s with float
pixels built on the data path and at 1.9 step/s with uint8, and the whole job took 9 min 31 s instead of
13 min 47 s with bit-identical results.

Rows the cache serves need no pixels at all: a frozen tower's ``prepare`` leaves them out (``skip``), so
the data path only hashes each raw image (:func:`image_digest`, once for every input size). On the
three-trunk main job that took a batch of 256 from 634 ms (resized to 160 and 240 px, hashed at three
sizes) to about 90 ms; the steps served from the cache ran at 4.2 step/s instead of 1.9 and the training
loop took 7 min 23 s instead of 10 min 43 s, with the same scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cl_core.api import digest_keys, item_digest

from .params import ResizeMode

#: OpenAI CLIP's normalisation (mean / std of its training images, RGB in [0, 1]).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: ImageNet normalisation, used by the pretrained EfficientNet-Lite0 tower.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The ``resize_mode`` values of :func:`resize_square` (open_clip's), from the torch-free params module.
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)
#: Grey level of the padding of ``resize_mode = "longest"``: white, like the composited transparency.
DEFAULT_FILL = 255


def to_pil_rgb(item: Any, index: int = 0) -> Image.Image:
    """One raw image as an RGB PIL image; alpha is composited onto white.

    Args:
        item: a PIL image (any mode), or a uint8 numpy array ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``.
        index: position of the item in its batch (for the error message).

    Raises:
        ValueError: the item is neither (wrong type, dtype or shape).
    """
    if isinstance(item, Image.Image):
        image = item
    elif isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise ValueError(f"items[{index}]: image arrays must be uint8 in [0, 255], got dtype {item.dtype}")
        if item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (3, 4)):
            image = Image.fromarray(item)
        else:
            raise ValueError(
                f"items[{index}]: image arrays must have shape [H, W], [H, W, 3] or [H, W, 4], got {list(item.shape)}"
            )
    else:
        raise ValueError(f"items[{index}]: expected a PIL image or a uint8 [H, W, 3] array, got {type(item).__name__}")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"items[{index}]: empty image ({image.width}x{image.height})")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic), then centre-crop ``size x size`` (CLIP's transform)."""
    w, h = image.size
    if (w, h) == (size, size):
        return image
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def resize_square(image: Image.Image, size: int, mode: str = "shortest", fill: int = DEFAULT_FILL) -> Image.Image:
    """``image`` as a ``size x size`` RGB image (bicubic), made square by ``mode``:

    - ``"shortest"``: :func:`resize_center_crop` (the shorter side to ``size``, then a centre crop).
    - ``"squash"``: both sides to ``size``; the aspect ratio is not kept.
    - ``"longest"``: the longer side to ``size`` (the shorter one scaled alike, rounded, at least 1 pixel),
      then centred on a ``size x size`` canvas of grey level ``fill`` (0-255); an odd margin puts the extra
      pixel on the right or bottom, as open_clip's ``CenterCropOrPad`` does.

    Raises:
        ValueError: unknown ``mode``, or ``fill`` outside 0-255.
    """
    if mode == "shortest":
        return resize_center_crop(image, size)
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {', '.join(map(repr, RESIZE_MODES))}, got {mode!r}")
    if not 0 <= fill <= 255:
        raise ValueError(f"fill_color must be a grey level in 0-255, got {fill}")
    w, h = image.size
    if (w, h) == (size, size):
        return image
    if mode == "squash":
        return image.resize((size, size), Image.Resampling.BICUBIC)
    scale = size / max(w, h)
    new_w, new_h = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    if (new_w, new_h) == (size, size):
        return image
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def image_digest(item: Any, index: int = 0) -> bytes:
    """16-byte digest of one raw image as given (:func:`cl_core.frozen.item_digest`: its mode or dtype,
    dimensions, palette and pixel bytes), so the digest identifies an image without resizing it.

    Raises:
        ValueError: the item is not an image (nor another array, tensor or bytes).
    """
    return item_digest(item, index)


def image_keys(digests: Sequence[bytes], size: int, mode: str = "shortest", fill: int = DEFAULT_FILL) -> Tensor:
    """``[B]`` int64 feature-cache keys of images (see :func:`image_digest`) prepared at side ``size`` by
    ``resize_mode`` ``mode`` (and ``fill``, for ``"longest"``); the default mode's keys are the keys of
    ``size`` alone."""
    extra = b"" if mode == "shortest" else f"{mode}:{fill if mode == 'longest' else ''}".encode()
    return digest_keys(digests, salt=(size, extra))  # the size as 4 little-endian bytes, then extra


def prepare_images(items: Sequence[Any], size: int, *, keys: Tensor | None = None,
                   skip: Sequence[bool] | None = None, resize_mode: str = "shortest",
                   fill: int = DEFAULT_FILL) -> dict[str, Tensor]:
    """Raw images -> ``{"pixels": [B, 3, size, size] uint8}`` (alpha composited onto white, made square by
    ``resize_mode``; not yet normalised: see :func:`normalize_pixels`).

    Args:
        items: PIL images or uint8 arrays (see :func:`to_pil_rgb`).
        size: side of the prepared images in pixels.
        resize_mode, fill: how each image is made square (see :func:`resize_square`).
        keys: ``[B]`` feature-cache keys (:func:`image_keys`), passed through as ``"key"``.
        skip: rows whose pixels are not needed because their trunk features are cached. Their pixels are
            left zero, nothing is decoded or resized for them, and ``"ready"`` (``[B]`` bool) marks the
            rows that hold real pixels.

    Raises:
        ValueError: ``items`` is empty, an item is not an image (see :func:`to_pil_rgb`), or ``keys`` /
            ``skip`` do not have one entry per item.
    """
    if len(items) == 0:
        raise ValueError("prepare() needs at least one image")
    for name, given in (("keys", keys), ("skip", skip)):
        if given is not None and len(given) != len(items):
            raise ValueError(f"{name} needs one entry per item: {len(given)} for {len(items)} items")
    skipped = skip if skip is not None else [False] * len(items)
    # Left-out rows stay zero; every other row is written, so its memory need not be cleared first.
    allocate = torch.zeros if any(skipped) else torch.empty
    out: dict[str, Tensor] = {"pixels": allocate((len(items), 3, size, size), dtype=torch.uint8)}
    pixels = out["pixels"].numpy()  # the same memory
    for i, (item, left_out) in enumerate(zip(items, skipped)):
        if not left_out:
            square = resize_square(to_pil_rgb(item, i), size, resize_mode, fill)
            pixels[i] = np.asarray(square, dtype=np.uint8).transpose(2, 0, 1)
    if skip is not None:
        out["ready"] = torch.tensor([not s for s in skip], dtype=torch.bool)
    if keys is not None:
        out["key"] = keys
    return out


def normalize_pixels(pixels: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 pixels ``[B, 3, H, W]`` in [0, 255] -> float32 ``(x / 255 - mean) / std`` per channel, on
    ``pixels``' device. Floating input is taken as already normalised and returned unchanged."""
    if pixels.is_floating_point():
        return pixels
    m = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return pixels.float().div_(255.0).sub_(m).div_(s)
