"""Decoders reused across modalities: captions of an ImageBind run's speech and line art by decoders that were
trained for images (or for text), with no training, beside the same decoders on the images of the same concepts.

ImageBind (Girdhar et al., 2023) binds audio and line art to a frozen image-text space, so a decoder of that space
should caption them too ("cross-modal decoder reuse"). For each decoder given,

* a decoder run trained on the model the ImageBind run is bound to (a DeCap, CapDec or ClipCap run of the emoji CLIP
  main job: its frozen towers are the ImageBind run's image and text towers, which ``cl_core.captioning`` checks);
* ``iterative`` or a spec file with nothing to train (``specs/magic-emoji.toml``): that decoder table over the
  ImageBind run's own towers;

the script captions the ImageBind run's evaluation splits (``voices``: every training concept spoken by the voices
held out of training; ``heldout``: the held-out concepts), per modality (``audio``, ``lineart``, and ``image`` as
the reference row), with ``captions.metrics`` against the concept's name, and prints BLEU-4, CIDEr, CLIPScore and
the exact-name rate beside the run's emergent X -> text top-1 (``imagebind.bind``): ImageBind's promise is that a
decoder names the concept of a spoken word at least as often as the joint space retrieves its name.

    python benchmarks/crossmodal_captions.py runs/imagebind-emoji-... runs/decap-emoji-...=DeCap specs/magic-emoji.toml
    python benchmarks/crossmodal_captions.py RUN DECODER... --max-examples 200 --json crossmodal.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

#: the columns: (header, metric, digits)
COLUMNS = [("BLEU-4", "bleu4", 3), ("CIDEr", "cider_d", 3), ("CLIPScore", "clipscore", 3),
           ("names the concept", "exact_name", 3), ("s/100", "seconds_per_100", 1)]


def _bound_top1(run: str, modality: str, split: str) -> float | None:
    """The run's own retrieval figure X -> text top-1 on ``split`` (its last ``imagebind.bind`` evaluation)."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        return None
    found = None
    for line in path.read_text().splitlines():
        row = json.loads(line)
        value = row.get("eval", {}).get(f"bind/{split}/{modality}2text@1")
        found = value if value is not None else found
    return found


def _metrics(role: str, args: argparse.Namespace) -> Any:
    from cl_captions.metrics import CaptionMetrics
    from cl_captions.params import MetricsParams

    params = MetricsParams(name="x", role=role, text_role="text", splits=tuple(args.splits), references=("name",),
                           max_length=args.max_length, max_examples=args.max_examples, meteor=False, examples=0,
                           tokenizer="python")
    return CaptionMetrics(params, None)


def _arithmetic(bound: Any, args: argparse.Namespace, host: Any) -> None:
    """Embedding arithmetic into text (ZeroCap's visual arithmetic, ImageBind's image + audio): the image of concept
    a plus the text or the speech of concept b, each normalised, summed 0.5 + 0.5 and normalised again, captioned by
    each decoder; the rate at which the caption names the composed concept z = a ZWJ b (e.g. cat + black = black
    cat), beside the image alone. Rows: the run's ``arithmetic`` split, evenly spaced."""
    import numpy as np
    import torch.nn.functional as F

    from cl_captions.scores import names_concept
    from cl_core.captioning import with_decoder

    source = bound.dataset.splits().get("arithmetic")
    if source is None:
        print("(the run's data has no arithmetic split)")
        return
    rows = np.unique(np.linspace(0, len(source) - 1, min(args.arithmetic, len(source))).round().astype(int)).tolist()
    items = source.get(rows)
    z = [source.class_names[int(source.labels[r])] for r in rows]
    image = F.normalize(bound.embed("image", items["image"]), dim=-1)
    inputs = {"image": image,
              "image + text": F.normalize(image + F.normalize(bound.embed("text", items["text"]), dim=-1), dim=-1),
              "image + speech": F.normalize(image + F.normalize(bound.embed("audio", items["audio"]), dim=-1), dim=-1)}
    print(f"\nArithmetic into text ({len(rows)} composed concepts; fraction of captions naming the composed concept):")
    print("| decoder | image | image + text | image + speech |\n|---|---|---|---|")
    examples: list[str] = []
    for given in args.decoders:
        decoder, label = (given.split("=", 1) + [None])[:2] if "=" in given else (given, None)
        pipeline = with_decoder(bound, "image", decoder, [], args.run, "cpu", host)
        rates = []
        for name, query in inputs.items():
            captions = pipeline.decoder.decode(query, max_length=args.max_length)
            rates.append(sum(names_concept(c, t) for c, t in zip(captions, z)) / len(z))
            examples += [f"  {label or Path(decoder).name}, {name}: {c!r} (z = {t})" for c, t in
                         list(zip(captions, z))[:3]]
        print(f"| {label or Path(decoder).name} | " + " | ".join(f"{r:.3f}" for r in rates) + " |")
    print("\n".join(examples))


def main(argv: list[str] | None = None) -> int:
    with torch.no_grad():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the ImageBind run (folder or Hub id)")
    parser.add_argument("decoders", nargs="+", help="DECODER or DECODER=LABEL: a decoder run, a spec file, 'iterative'")
    parser.add_argument("--modalities", nargs="+", default=["image", "audio", "lineart"])
    parser.add_argument("--splits", nargs="+", default=["voices", "heldout"])
    parser.add_argument("--max-examples", type=int, default=200, help="items per split, evenly spaced")
    parser.add_argument("--max-length", type=int, default=16)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--arithmetic", type=int, default=0,
                        help="also caption image + text and image + speech sums of this many composed concepts")
    args = parser.parse_args(argv)

    from cl_core.api import ClError, EvalContext, from_pretrained
    from cl_core.captioning import with_decoder
    from cl_core.plugins import default_host

    host = default_host()
    try:
        bound = from_pretrained(args.run, with_data=True, host=host)
    except ClError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    roles = [m for m in args.modalities if m in bound.encoders]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for given in args.decoders:
        decoder, label = (given.split("=", 1) + [None])[:2] if "=" in given else (given, None)
        label = label or Path(decoder).name
        for role in roles:
            try:
                pipeline = with_decoder(bound, role, decoder, [], args.run, "cpu", host)
            except ClError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            start = time.perf_counter()
            scores = _metrics(role, args).evaluate(pipeline, bound.dataset, EvalContext(device=torch.device("cpu"),
                                                                                         batch_size=128))
            rows = results.setdefault(f"{label} | {role}", {})
            for key, value in scores.items():
                _, split, metric = key.split("/", 2)
                rows.setdefault(split, {})[metric] = value
            print(f"  {label} on {role}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.arithmetic:
        _arithmetic(bound, args, host)
    header = "| decoder | modality | split | " + " | ".join(h for h, _, _ in COLUMNS) + " | bound X -> text top-1 |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 4)]
    for name, splits in results.items():
        label, role = name.split(" | ")
        for split, row in splits.items():
            cells = [f"{row[k]:.{d}f}" if k in row else "—" for _, k, d in COLUMNS]
            top1 = _bound_top1(args.run, role, split)
            lines.append(f"| {label} | {role} | {split} | " + " | ".join(cells) + f" | "
                         f"{'—' if top1 is None else f'{top1:.3f}'} |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
