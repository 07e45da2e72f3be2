"""Plots written into a run directory (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .pipeline import Pipeline


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve(metrics_path: Path, out: Path) -> Path | None:
    """Training loss (and logit scale, when logged) against optimizer step."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    if any("logit_scale" in r for r in rows):
        twin = ax.twinx()
        twin.plot([r["step"] for r in rows], [r.get("logit_scale", float("nan")) for r in rows], color="tab:orange",
                  label="logit scale")
        twin.set_ylabel("logit scale", color="tab:orange")
    ax.set_title("training loss")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


@torch.no_grad()
def similarity_matrix(pipeline: Pipeline, out: Path, n: int = 12) -> Path | None:
    """Scores of the first ``n`` pairs of the first evaluation split (or train): the diagonal is positives. None
    when there is nothing to score (no data, or no encoders: a pipeline that trains only a decoder)."""
    if pipeline.dataset is None or not pipeline.encoders:
        return None
    splits = pipeline.dataset.splits()
    name = next((s for s in splits if s != "train"), "train")
    source = splits[name]
    q_role, k_role = pipeline.pair_roles
    scorer = pipeline.scorer_for(q_role, k_role)
    if scorer is None or q_role not in source.fields or k_role not in source.fields or len(source) == 0:
        return None
    indices = list(range(min(n, len(source))))
    items = source.get(indices)
    pipeline.eval()
    q = pipeline.embed(q_role, items[q_role])
    k = pipeline.embed(k_role, items[k_role])
    scores = scorer.score(q, k).float().cpu()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(indices), 1.0 + 0.5 * len(indices)))
    im = ax.imshow(scores.numpy(), cmap="viridis")
    labels = [str(t)[:28] for t in items[k_role]] if isinstance(items[k_role][0], str) else [str(i) for i in indices]
    ax.set_xticks(range(len(indices)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(indices)), [f"{q_role} {i}" for i in indices], fontsize=7)
    ax.set_title(f"scores ({name}): {q_role} rows x {k_role} columns")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
