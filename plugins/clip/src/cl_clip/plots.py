"""Figures of the evaluators (matplotlib's Agg canvas directly: no global backend switch, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .preprocess import to_pil_rgb


def plot_zero_shot(
    path: Path,
    images: Sequence[Any],
    rows: Sequence[tuple[list[str], list[float], str]],
    *,
    title: str = "",
) -> Path:
    """One row per example: the image, then a bar chart of its top classes; the true class is green.

    Args:
        path: PNG to write (parent folders are created).
        images: raw images (PIL or uint8 arrays), one per row.
        rows: per example, (top class names, their probabilities, the true class name).
        title: figure title.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(images) != len(rows):
        raise ValueError(f"got {len(images)} images for {len(rows)} rows")
    n = max(1, len(rows))
    fig = Figure(figsize=(8.0, 1.6 * n + 0.6))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(n, 2, width_ratios=(1, 3.5))
    for r, (image, (names, probs, truth)) in enumerate(zip(images, rows, strict=True)):
        ax_img = fig.add_subplot(grid[r, 0])
        ax_img.imshow(np.asarray(to_pil_rgb(image, r)))
        ax_img.set_axis_off()
        ax_img.set_title(_short(truth, 22), fontsize=7)
        ax = fig.add_subplot(grid[r, 1])
        y = np.arange(len(names))[::-1]
        colors = ["tab:green" if name == truth else "tab:gray" for name in names]
        ax.barh(y, probs, color=colors)
        ax.set_yticks(y, [_short(name) + (" (true)" if name == truth else "") for name in names], fontsize=7)
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
