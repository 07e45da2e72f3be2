"""cl-datasets: data sources for cl.

Components (see ``cl components``):

- ``datasets.emoji``: OpenMoji + Google Noto emoji image-text pairs with concept-level held-out splits
  (:mod:`cl_datasets.emoji`).
- ``datasets.image-caption``: your own image folder plus a JSONL/CSV captions file
  (:mod:`cl_datasets.image_caption`).

Importing this package imports neither torch nor Pillow.
"""

from __future__ import annotations

__version__ = "0.1.0"
