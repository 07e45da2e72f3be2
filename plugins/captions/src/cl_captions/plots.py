"""The example figure of ``captions.metrics``: images with their generated and reference captions (matplotlib's
Agg canvas directly: no global backend switch, no display)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def as_image(item: Any) -> np.ndarray | None:
    """``item`` as an ``[H, W, 3]`` (or ``[H, W]``) array when it is an image (PIL or an array), else None."""
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        return np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray) and (item.ndim == 2 or (item.ndim == 3 and item.shape[-1] in (1, 3, 4))):
        return item
    return None


def plot_captions(path: Path, images: Sequence[np.ndarray], generated: Sequence[str],
                  references: Sequence[Sequence[str]], *, title: str = "") -> Path:
    """One panel per example: the image, its generated caption (bold) and up to three references.

    Args:
        path: PNG to write (parent folders are created).
        images: ``[H, W, 3]`` arrays (see :func:`as_image`).
        generated: the caption of each image.
        references: the references of each image.
        title: figure title.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not len(images) == len(generated) == len(references):
        raise ValueError(f"{len(images)} images, {len(generated)} captions, {len(references)} reference lists")
    n = max(1, len(images))
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.4 * cols, 3.3 * rows + 0.4))
    FigureCanvasAgg(fig)
    for i, (image, caption, refs) in enumerate(zip(images, generated, references)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image)
        ax.set_axis_off()
        shown = [textwrap.shorten(r, 48, placeholder="...") for r in list(refs)[:3]]
        text = "\n".join(textwrap.wrap(caption or "(empty)", 40)[:2])
        ax.set_title(text, fontsize=8, fontweight="bold")
        ax.text(0.5, -0.04, "\n".join(shown), transform=ax.transAxes, ha="center", va="top", fontsize=6.5,
                color="dimgray")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
