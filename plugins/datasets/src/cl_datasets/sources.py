"""An in-memory image-text data source: uint8 image store + per-example (image index, text, label)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from cl_core.api import DataSource


class ImageTextSource(DataSource):
    """Examples ``{"image": PIL RGB image, "text": str}`` backed by one shared uint8 image array.

    Args:
        images: ``[M, H, W, 3]`` uint8 store (shared between splits; made read-only here).
        image_index: ``[N]`` row of ``images`` for each example.
        texts: ``N`` caption strings.
        labels: ``[N]`` int64 labels indexing ``class_names`` (or group ids when class_names is None).
        class_names: label -> name, or None.
        meta: optional per-example ``[N]`` arrays (e.g. ``style``, ``concept``) for inspection and tests.
        class_descriptions: per class name, further texts describing the class (see
            :class:`cl_core.components.DataSource`), or None.

    ``get`` returns fresh PIL images (copies), so callers may modify them freely.
    """

    fields = ("image", "text")

    def __init__(
        self,
        images: np.ndarray,
        image_index: np.ndarray,
        texts: Sequence[str],
        labels: np.ndarray,
        class_names: Sequence[str] | None,
        meta: Mapping[str, np.ndarray] | None = None,
        class_descriptions: Sequence[Sequence[str]] | None = None,
    ) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be a uint8 [M, H, W, 3] array, got {images.dtype} {images.shape}")
        n = len(texts)
        image_index = np.asarray(image_index, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if image_index.shape != (n,) or labels.shape != (n,):
            raise ValueError(f"image_index {image_index.shape} and labels {labels.shape} must both be ({n},)")
        if n and (image_index.min() < 0 or image_index.max() >= len(images)):
            raise ValueError("image_index out of range of images")
        if class_names is not None and n and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError("labels out of range of class_names")
        images.flags.writeable = False
        self._images = images
        self.image_index = image_index
        self.texts = list(texts)
        self.labels = labels
        self.class_names = None if class_names is None else list(class_names)
        if class_descriptions is not None and (class_names is None or len(class_descriptions) != len(class_names)):
            raise ValueError("class_descriptions needs one entry per class name")
        self.class_descriptions = None if class_descriptions is None else [tuple(d) for d in class_descriptions]
        self.meta = {k: np.asarray(v) for k, v in (meta or {}).items()}
        for key, value in self.meta.items():
            if len(value) != n:
                raise ValueError(f"meta[{key!r}] has {len(value)} entries, expected {n}")

    def __len__(self) -> int:
        return len(self.texts)

    def image_array(self, index: int) -> np.ndarray:
        """The ``[H, W, 3]`` uint8 pixels of example ``index`` (read-only view, no copy)."""
        return self._images[self.image_index[index]]

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        """``{"image": [PIL.Image RGB], "text": [str]}`` for ``indices`` (raises IndexError when out of range)."""
        n = len(self)
        out_images, out_texts = [], []
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"example index {i} out of range for a split of {n}")
            out_images.append(Image.fromarray(self._images[self.image_index[i]]))
            out_texts.append(self.texts[i])
        return {"image": out_images, "text": out_texts}
