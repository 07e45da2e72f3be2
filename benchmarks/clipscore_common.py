"""CLIPScore of several caption decoders on one scale: every run's held-out captions embedded by one reference run's
towers (Hessel et al., 2021: mean of 2.5 * max(cos(image, caption), 0)), so that a decoder with towers of its own
(CoCa) and decoders over the reference model (ClipCap, DeCap) are compared by the same judge.

    python benchmarks/clipscore_common.py runs/clip-emoji-20261203-031707 \\
        runs/coca-emoji-20261203-174816 runs/clipcap-emoji-20261203-074001

The first run is the judge (its image and text towers); the images are the held-out splits of the first decoder run
that has data (``datasets.emoji``'s held-out concepts, both styles). Prints one row per decoder run and split.
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("judge", help="the run whose towers score every caption")
    parser.add_argument("runs", nargs="+", help="decoder runs to caption the held-out images with")
    parser.add_argument("--template", default="{}", help="how a caption is embedded (captions.metrics' default)")
    parser.add_argument("--max-length", type=int, default=32)
    args = parser.parse_args()

    from cl_captions.scores import clip_score
    from cl_core.weights import from_pretrained

    judge = from_pretrained(args.judge)
    decoders = [from_pretrained(run, with_data=True) for run in args.runs]
    splits = {name: source for name, source in decoders[0].dataset.splits().items() if name != "train"}
    print("| decoder run | split | CLIPScore (judge: " + args.judge.rstrip("/").split("/")[-1] + ") |")
    print("|---|---|---|")
    for split, source in splits.items():
        images = source.get(range(len(source)))["image"]
        with torch.no_grad():
            embedded = judge.embed("image", images)
            for run, pipeline in zip(args.runs, decoders):
                captions = pipeline.caption("image", images, max_length=args.max_length)
                texts = judge.embed("text", [args.template.format(c) for c in captions])
                print(f"| {run} | {split} | {clip_score(embedded, texts):.3f} |")


if __name__ == "__main__":
    main()
