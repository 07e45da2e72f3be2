"""Parameter counts and forward+backward time of the clip towers (batch 256; images at 64 px).

Run: ``python plugins/clip/benchmarks/bench_towers.py [--device cuda] [--repeats 3]``. For frozen towers the
"cached" row repeats the same batch, so the trunk features come from the feature cache.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from cl_clip import params as P
from cl_clip.efficientnet import EfficientNetLite
from cl_clip.minilm import MiniLM
from cl_clip.resnet import ModifiedResNet
from cl_clip.text import TextTransformer
from cl_clip.vit import ViT

WORDS = "a the dog cat red blue heart face smiling with tears of joy running in field grass car flag".split()


def images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_time(tower, prepared, device, repeats: int) -> float:
    """Seconds per forward + backward (sum of the embeddings as the loss) after one warm-up step."""
    tower.train()
    prepared = {k: v.to(device) for k, v in prepared.items()}
    times = []
    for i in range(repeats + 1):
        tower.zero_grad(set_to_none=True)
        sync(device)
        t = time.perf_counter()
        tower.encode(prepared).square().mean().backward()
        sync(device)
        if i:
            times.append(time.perf_counter() - t)
    return float(np.mean(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    b = args.batch
    towers = [
        ("clip.vit width 192, 6 layers, patch 8",
         lambda: ViT(P.ViTParams(image_size=64, width=192, layers=6, patch=8)), "image"),
        ("clip.vit ... with augment = true",
         lambda: ViT(P.ViTParams(image_size=64, width=192, layers=6, patch=8, augment=True)), "image"),
        ("clip.resnet (1,1,1,1) width 32", lambda: ModifiedResNet(P.ResNetParams(image_size=64)), "image"),
        ("clip.efficientnet frozen", lambda: EfficientNetLite(P.EfficientNetParams(image_size=64)), "image"),
        ("clip.text-transformer 256 x 4", lambda: TextTransformer(P.TextTransformerParams()), "text"),
        ("clip.minilm frozen", lambda: MiniLM(P.MiniLMParams()), "text"),
        ("clip.minilm top 2 layers trainable", lambda: MiniLM(P.MiniLMParams(trainable_layers=2)), "text"),
    ]
    print(f"device {device}, threads {torch.get_num_threads()}, batch {b}")
    print(f"{'tower':40s} {'params':>10s} {'trainable':>10s} {'prep s':>8s} {'fwd+bwd s':>10s} {'cached s':>9s}")
    for name, make, kind in towers:
        tower = make().to(device)
        items = images(b, 64) if kind == "image" else captions(b)
        t = time.perf_counter()
        prepared = tower.prepare(items)
        prep = time.perf_counter() - t
        total = sum(p.numel() for p in tower.parameters())
        trainable = sum(p.numel() for p in tower.parameters() if p.requires_grad)
        first = step_time(tower, {k: v for k, v in prepared.items() if k != "key"}, device, args.repeats)
        cached = step_time(tower, prepared, device, args.repeats) if "key" in prepared else float("nan")
        print(f"{name:40s} {total:10,d} {trainable:10,d} {prep:8.3f} {first:10.3f} {cached:9.3f}")


if __name__ == "__main__":
    main()
