"""``coca.attention``: the captioning pooler's attention maps (see :class:`~cl_coca.params.AttentionMapsParams`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_core.api import Dataset, EvalContext, Evaluator, spec_problem, warn_evaluation

from .image import CoCaImage
from .params import AttentionMapsParams

#: images fetched per call to the data source
FETCH_CHUNK = 256


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """``[B, n, T]`` attention rows -> ``[B, n]`` entropy in nats (0: one token; log T: uniform)."""
    p = weights.clamp(min=1e-12)
    return -(weights * p.log()).sum(-1)


class AttentionMaps(Evaluator):
    """See :class:`~cl_coca.params.AttentionMapsParams`. Metrics: ``coca-attention/<split>/entropy`` (mean over
    images and queries, nats) and ``coca-attention/<split>/uniform`` (log T, the entropy of uniform attention)."""

    def __init__(self, params: AttentionMapsParams) -> None:
        self.params = params

    def evaluate(self, pipeline: Any, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        p = self.params
        encoder = pipeline.encoders[p.role]
        out: dict[str, float] = {}
        for split, source in dataset.splits().items():
            if (p.splits is None and split == "train") or (p.splits is not None and split not in p.splits):
                continue
            if len(source) == 0:
                warn_evaluation(f"coca.attention: split {split!r} is empty; skipped")
                continue
            indices = np.linspace(0, len(source) - 1, min(p.limit, len(source))).round().astype(int).tolist()
            indices = list(dict.fromkeys(indices))
            images = [image for at in range(0, len(indices), FETCH_CHUNK)
                      for image in source.get(indices[at : at + FETCH_CHUNK])[p.role]]
            weights = torch.cat([encoder.attention_maps(images[at : at + 64]).cpu()
                                 for at in range(0, len(images), 64)])
            out[f"coca-attention/{split}/entropy"] = float(attention_entropy(weights).mean())
            out[f"coca-attention/{split}/uniform"] = math.log(weights.shape[-1])
            if ctx.plots_dir is not None and p.examples > 0:
                shown = min(p.examples, len(images))
                plot_attention(ctx.plots_dir / f"coca-attention-{split}.png", images[:shown], weights[:shown],
                               encoder.grid.tokens, queries=p.queries, title=f"captioning pooler, split {split!r}")
        return out


def plot_attention(path: Path, images: Sequence[Any], weights: torch.Tensor, tokens: int, *, queries: int,
                   title: str = "") -> Path:
    """One row per image: the image, then the attention of its first ``queries`` captioning queries over the
    token grid (a square grid of ``tokens``; a leading class token, as the ViT's, is left out of the map).

    Args:
        path: PNG to write (parent folders are created).
        images: raw images, one per row of ``weights [B, n, T]``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cl_clip.preprocess import to_pil_rgb

    side = math.isqrt(tokens)
    skip = tokens - side * side  # a class token before the patch grid
    shown = min(queries, weights.shape[1])
    fig = Figure(figsize=(1.5 * (shown + 1), 1.5 * len(images) + 0.5))
    FigureCanvasAgg(fig)
    for r, image in enumerate(images):
        ax = fig.add_subplot(len(images), shown + 1, r * (shown + 1) + 1)
        ax.imshow(np.asarray(to_pil_rgb(image, r)))
        ax.set_axis_off()
        for q in range(shown):
            ax = fig.add_subplot(len(images), shown + 1, r * (shown + 1) + q + 2)
            ax.imshow(weights[r, q, skip:].reshape(side, side).numpy(), cmap="viridis")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(f"query {q}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def build_attention_maps(params: AttentionMapsParams, ctx: Any) -> AttentionMaps:
    """Factory of ``coca.attention``.

    Raises:
        SpecError: the role's encoder is not a ``coca.image`` tower.
    """
    encoders = dict(ctx.encoders or {})
    if encoders and not isinstance(encoders.get(params.role), CoCaImage):
        found = "no encoder" if params.role not in encoders else f"a {type(encoders[params.role]).__name__}"
        raise spec_problem(ctx, f"{ctx.path}.role", f"role {params.role!r} has {found}; coca.attention reads a "
                                                    "coca.image tower's captioning pooler")
    return AttentionMaps(params)
