"""Throughput of a frozen EfficientNet-Lite trunk without gradients: cl's folded path against the plain
eval-mode trunk, measured in the same run.

    python benchmarks/frozen_trunk.py                          # Lite0 160 px, Lite2 260 px, Lite1 240 px
    python benchmarks/frozen_trunk.py --trunks lite2:260 --images 128 --repeats 3 --threads 2

Rows per trunk (images/s, best of ``--repeats``, the two timed alternately; same chunks of 32 in channels-last
layout for both):

* ``eval trunk``: the network as loaded, BatchNorm layers in eval mode (running statistics);
* ``cl folded``: what ``clip.efficientnet`` runs under ``torch.no_grad()``, the copy with every BatchNorm
  folded into its convolution (:func:`cl_clip.efficientnet.fold_batchnorm`).

The ratio column is folded / eval; the max |difference| column checks that both compute the same features.
Needs the cl-clip plugin and the EfficientNet-Lite weight packages (random inputs; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import time

import torch

from cl_clip.efficientnet import FROZEN_CHUNK, EfficientNetLite
from cl_clip.params import EfficientNetParams


def images_per_second(tower: EfficientNetLite, pixels: torch.Tensor, repeats: int) -> dict[str, tuple[float, torch.Tensor]]:
    """Best images/s of the eval-mode trunk and of the folded copy, timed alternately so that both see the
    same machine load; the first pass of each warms the kernels up and is not counted."""
    nets = {"eval": tower.trunk, "folded": tower._inference_trunk()}
    times: dict[str, list[float]] = {name: [] for name in nets}
    outputs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for _ in range(repeats + 1):
            for name, net in nets.items():
                start = time.perf_counter()
                outputs[name] = torch.cat([tower._features(net, c.contiguous(memory_format=torch.channels_last))
                                           for c in pixels.split(FROZEN_CHUNK)])
                times[name].append(time.perf_counter() - start)
    return {name: (len(pixels) / min(times[name][1:]), outputs[name]) for name in nets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trunks", default="lite0:160,lite2:260,lite1:240", help="variant:size,...")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{'trunk':12s} {'eval trunk img/s':>17s} {'cl folded img/s':>16s} {'ratio':>6s} {'max |diff|':>11s}")
    for spec in args.trunks.split(","):
        variant, size = spec.split(":")
        tower = EfficientNetLite(EfficientNetParams(variant=variant, image_size=int(size))).eval()
        pixels = torch.randn(args.images, 3, int(size), int(size))
        result = images_per_second(tower, pixels, args.repeats)
        (plain, reference), (fast, folded) = result["eval"], result["folded"]
        diff = (folded - reference).abs().max().item()
        print(f"{spec:12s} {plain:17.1f} {fast:16.1f} {fast / plain:6.2f} {diff:11.2e}")


if __name__ == "__main__":
    main()
