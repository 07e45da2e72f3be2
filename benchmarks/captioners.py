"""Every caption decoder and the baselines on the same held-out images, in one table.

For each decoder run given on the command line (a ``decap.decap`` run, a ClipCap / CapDec run, any run whose
``[decoder]`` generates, or a spec file with nothing to train such as ``specs/magic-emoji.toml``, the iterative
decoder), plus two baselines that every figure needs beside it,

* **CLIPRe** (``captions.clipre``): the nearest caption of a memory embedded by the first run's text tower (the
  training captions of its data), nothing generated; with ``--clipre-names`` also CLIPRe whose memory adds the class
  names of every split (held-out ones included: what a zero-shot classifier and DeCap's entity prompts are given);
* **the unconditioned LM**: the LM's own greedy output from ``<bos>`` with no prefix (one and the same caption for
  every image: the floor of a decoder that ignores the image),

the script captions the held-out splits of the runs' data (``datasets.emoji``: the held-out concepts in both art
styles, images that no decoder or tower saw in training) with ``captions.metrics`` and prints one table: BLEU-4,
METEOR, ROUGE-L, CIDEr(-D), CLIPScore, exact-name rate and seconds per 100 captions, per decoder and split, then the
mean over the splits. All scores are fractions, as pycocoevalcap gives them (CIDEr-D on its 0-10 scale).

The data is built once, from the first run's ``[data]`` table; every other run must name the same held-out split
(same dataset type, styles, holdout, split seed), or the script stops before captioning anything. Runs whose image
and text towers have the same weights (decoders of one CLIP run) share one set of towers, so the held-out images are
embedded once; ``s/100`` is the decoder's own time per 100 captions on those embeddings (batched, in this process),
and the time the image tower takes to embed 100 images from cold is printed under the table (the same for every
decoder of that tower).

    python benchmarks/captioners.py runs/decap-emoji-20261202-190000 runs/decap-emoji-20261202-191500=DeCap+entities
    python benchmarks/captioners.py RUN... --lm runs/lm-english-20261202-182858 --max-examples 100   # a quick look
    python benchmarks/captioners.py RUN... --json results.json

``RUN=LABEL`` names a row; without a label the row is named after the decoder type and the run folder.
Adding a decoder kind needs nothing here: any run whose pipeline has a generating ``[decoder]`` is captioned as it
is. A label function per decoder type (:data:`DESCRIBE`) may add what distinguishes its runs (DeCap's entities).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

#: the columns of the table: (header, metric suffix, digits)
COLUMNS = [("BLEU-4", "bleu4", 3), ("METEOR", "meteor", 3), ("ROUGE-L", "rouge_l", 3), ("CIDEr", "cider_d", 3),
           ("CLIPScore", "clipscore", 3), ("exact name", "exact_name", 3), ("s/100", "decode_seconds_per_100", 3)]
#: the plugin host that loads the runs (None: the installed plugins; tests set one with their toy plugin)
HOST: Any = None
#: the [data] params that decide which images are held out; runs compared in one table must agree on them
SPLIT_KEYS = ("styles", "holdout", "split_seed", "max_concepts", "descriptions", "openmoji_json", "noto_dir")
#: dataset types that hold out the images of another type's split: CapDec's text-only training data is
#: datasets.emoji's split with the text of every concept as its training split, so the held-out images agree
SAME_SPLIT_AS = {"capdec.emoji-text": "datasets.emoji"}


def _describe_decap(spec: Any) -> str:
    p = spec.decoder.params
    start = "scratch LM" if p.scratch is not None else "LM init"
    extra = f", {p.entities} entit{'y' if p.entities == 1 else 'ies'}" if p.entities else ""
    proj = "" if p.projection == "memory" else ", no projection"
    return f"DeCap ({start}{extra}{proj})"


def _describe_magic(spec: Any) -> str:
    p = spec.decoder.params
    return f"MAGIC (k = {p.k}, alpha = {p.alpha}, beta = {p.beta})"


#: decoder type -> a short label of a run's decoder (others: the type)
DESCRIBE: dict[str, Callable[[Any], str]] = {"decap.decap": _describe_decap, "iterative.magic": _describe_magic}


def _label(run: str, given: str | None, spec: Any) -> str:
    if given:
        return given
    kind = spec.decoder.type if spec.decoder is not None else "no decoder"
    head = DESCRIBE.get(kind, lambda s: kind)(spec)
    return f"{head} [{Path(run).name}]"


def _split_identity(spec: Any) -> tuple:
    data = spec.data
    if data is None:
        return (None,)
    return (SAME_SPLIT_AS.get(data.type, data.type), *(repr(getattr(data.params, k, None)) for k in SPLIT_KEYS))


def _share_towers(pipelines: list[tuple[str, str | None, Any]], roles: tuple[str, ...]) -> None:
    """Give every pipeline the first pipeline's encoder object of each role whose weights are the same, so its
    embedding cache serves all of them (the held-out images are embedded once)."""
    from cl_core.captioning import tower_digest

    seen: dict[tuple[str, str], Any] = {}
    for _, _, pipeline in pipelines:
        for role in roles:
            if role not in pipeline.encoders:
                continue
            key = (role, tower_digest(pipeline.encoders[role]))
            if key in seen:
                pipeline.encoders[role] = seen[key]
            else:
                seen[key] = pipeline.encoders[role]


def _encode_seconds(pipeline: Any, dataset: Any, args: argparse.Namespace) -> float:
    """Seconds per 100 images of the image tower from cold (its caches filled for the captioning that follows)."""
    from cl_captions.references import fetch

    items = []
    for split, source in dataset.splits().items():
        if split != "train":
            items += fetch(source, [args.role], _indices(source, args))[args.role]
    start = time.perf_counter()
    pipeline.embed(args.role, items, batch_size=args.batch_size)
    return 100.0 * (time.perf_counter() - start) / max(1, len(items))


def _indices(source: Any, args: argparse.Namespace) -> list[int]:
    import numpy as np

    if args.max_examples is not None and args.max_examples < len(source):
        return np.unique(np.linspace(0, len(source) - 1, args.max_examples).round().astype(int)).tolist()
    return list(range(len(source)))


class Unconditioned:
    """The LM's own output: ``n`` greedy continuations of ``<bos>`` alone, whatever the embeddings (built lazily as a
    :class:`cl_core.api.Decoder` subclass so importing this script needs no torch model)."""

    @staticmethod
    def make(lm: Any) -> Any:
        from cl_core.api import Decoder

        class UnconditionedLM(Decoder):
            trainable = False

            def __init__(self) -> None:
                super().__init__()
                self.lm = lm

            @torch.no_grad()
            def _decode(self, embeddings: torch.Tensor, *, max_length: int) -> list[str]:
                one = self.lm.generate(n=1, method="greedy", max_new_tokens=max_length, stop=()).texts[0].strip()
                return [one] * embeddings.shape[0]

        return UnconditionedLM()


def _metrics(args: argparse.Namespace, name: str, decoder: Any = None) -> Any:
    from cl_captions.metrics import CaptionMetrics
    from cl_captions.params import MetricsParams

    params = MetricsParams(name=name, role=args.role, text_role=args.text_role, max_length=args.max_length,
                           max_examples=args.max_examples, tokenizer=args.tokenizer, meteor=not args.no_meteor,
                           examples=0, timing=False)
    return CaptionMetrics(params, decoder)


def _conditions(pipeline: Any, decoder: Any, items: list, args: argparse.Namespace) -> list:
    """What the decoder decodes, batch by batch: the items' embeddings, or their encoder outputs with token states
    for a decoder that reads them (CoCa's captioner)."""
    if not getattr(decoder, "reads_tokens", False):
        embeddings = pipeline.embed(args.role, items, batch_size=args.batch_size)
        return [embeddings[at : at + args.batch_size] for at in range(0, len(items), args.batch_size)]
    encoder = pipeline.encoders[args.role]
    encoder.eval()
    with torch.no_grad():
        return [encoder.encode_states(encoder.prepare(items[at : at + args.batch_size]))
                for at in range(0, len(items), args.batch_size)]


def _decode_seconds(pipeline: Any, decoder: Any, dataset: Any, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per 100 captions of ``decoder.decode`` alone, on the image embeddings of each split."""
    from cl_captions.references import fetch

    out = {}
    for split, source in dataset.splits().items():
        if split == "train" or len(source) == 0:
            continue
        items = fetch(source, [args.role], _indices(source, args))[args.role]
        conditions = _conditions(pipeline, decoder, items, args)
        decoder.eval()
        getattr(decoder, "clear_cache", lambda: None)()  # a decoder that keeps caches across calls starts cold
        start = time.perf_counter()
        for condition in conditions:
            decoder.decode(condition, max_length=args.max_length)
        out[split] = 100.0 * (time.perf_counter() - start) / len(items)
    return out


def _evaluate(label: str, pipeline: Any, dataset: Any, decoder: Any, args: argparse.Namespace) -> dict[str, dict]:
    from cl_core.api import EvalContext

    name = "m"
    evaluator = _metrics(args, name, decoder)
    scores = evaluator.evaluate(pipeline, dataset, EvalContext(device=torch.device("cpu"), batch_size=args.batch_size))
    decode = _decode_seconds(pipeline, decoder if decoder is not None else pipeline.decoder, dataset, args)
    rows: dict[str, dict] = {}
    for key, value in scores.items():
        _, split, metric = key.split("/", 2)
        rows.setdefault(split, {})[metric] = value
    for split, seconds in decode.items():
        rows.setdefault(split, {})["decode_seconds_per_100"] = seconds
    print(f"  {label}: done", file=sys.stderr)
    return rows


def _table(results: dict[str, dict[str, dict]]) -> str:
    header = "| decoder | split | " + " | ".join(h for h, _, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for label, splits in results.items():
        names = sorted(splits)
        for split in names + (["mean"] if len(names) > 1 else []):
            row = splits[split] if split != "mean" else {
                key: sum(splits[s][key] for s in names if key in splits[s]) / len(names)
                for _, key, _ in COLUMNS if all(key in splits[s] for s in names)}
            cells = [f"{row[key]:.{digits}f}" if key in row else "—" for _, key, digits in COLUMNS]
            lines.append(f"| {label} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # no_grad as a context, not torch.set_grad_enabled(False): callers (tests, notebooks) keep their autograd state
    with torch.no_grad():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="decoder runs, each RUN or RUN=LABEL")
    parser.add_argument("--lm", help="the LM run of the unconditioned baseline (default: the `lm` of the first run "
                                     "whose decoder names one); 'none' leaves the baseline out")
    parser.add_argument("--no-clipre", action="store_true", help="leave the CLIPRe baseline out")
    parser.add_argument("--clipre-names", action="store_true",
                        help="also CLIPRe whose memory adds the class names of every split (the vocabulary a zero-shot "
                             "classifier, and DeCap's entities, are given)")
    parser.add_argument("--role", default="image", help="the role captioned (default image)")
    parser.add_argument("--text-role", default="text", help="the text role (CLIPScore, CLIPRe's memory)")
    parser.add_argument("--max-length", type=int, default=30, help="tokens per caption (words for CLIPRe)")
    parser.add_argument("--max-examples", type=int, default=None, help="at most N images per split, evenly spaced")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--tokenizer", default="auto", choices=["auto", "ptb-java", "python"])
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (its Java process takes ~10 s)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    from cl_core.api import BuildContext, ClError, from_pretrained

    given = [(r.split("=", 1)[0], r.split("=", 1)[1] if "=" in r else None) for r in args.runs]
    pipelines = []
    try:
        for run, label in given:
            if run.endswith(".toml"):  # a spec with nothing to train (an iterative decoder), built with its data
                from cl_core.captioning import caption_pipeline
                from cl_core.plugins import default_host

                pipeline = caption_pipeline(run, "cpu", HOST or default_host())
            else:
                pipeline = from_pretrained(run, with_data=not pipelines, host=HOST)
            if pipeline.decoder is None:
                raise ClError(f"{run} has no [decoder] to caption with")
            pipelines.append((run, label, pipeline))
        first = pipelines[0][2]
        dataset = first.dataset
        identity = _split_identity(first.spec)
        for run, _, pipeline in pipelines[1:]:
            if _split_identity(pipeline.spec) != identity:
                raise ClError(f"{run} holds out other images than {given[0][0]} (its [data] differs in "
                              f"{', '.join(SPLIT_KEYS)}): the table compares decoders on the same held-out images")
    except ClError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    _share_towers(pipelines, (args.role, args.text_role))
    encode: dict[int, float] = {}
    for _, _, pipeline in pipelines:
        tower = pipeline.encoders[args.role]
        if id(tower) not in encode:
            encode[id(tower)] = _encode_seconds(pipeline, dataset, args)
    results: dict[str, dict[str, dict]] = {}
    for run, label, pipeline in pipelines:
        name = _label(run, label, pipeline.spec)
        results[name] = _evaluate(name, pipeline, dataset, None, args)

    if not args.no_clipre:
        from cl_captions.clipre import build_clipre
        from cl_captions.params import CLIPReParams

        clipre = build_clipre(CLIPReParams(text_role=args.text_role), BuildContext(encoders=dict(first.encoders),
                                                                                  dataset=dataset))
        results[f"CLIPRe (memory: {len(clipre)} training captions)"] = _evaluate("CLIPRe", first, dataset, clipre, args)
        if args.clipre_names:
            import tempfile

            names = list(dict.fromkeys(str(n) for source in dataset.splits().values()
                                       for n in (getattr(source, "class_names", None) or [])))
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "names.txt"
                path.write_text("\n".join(names) + "\n", encoding="utf-8")
                with_names = build_clipre(CLIPReParams(text_role=args.text_role, files=(str(path),)),
                                          BuildContext(encoders=dict(first.encoders), dataset=dataset))
            label = f"CLIPRe (memory: training captions + {len(names)} class names of every split)"
            results[label] = _evaluate("CLIPRe+names", first, dataset, with_names, args)

    lm_run = args.lm
    if lm_run is None:
        lm_run = next((getattr(p.spec.decoder.params, "lm", None) for _, _, p in pipelines
                       if getattr(p.spec.decoder.params, "lm", None)), None)
    if lm_run and lm_run != "none":
        import cl_lm

        lm = cl_lm.load_lm(lm_run, host=HOST)
        results[f"unconditioned LM [{Path(lm_run).name}]"] = _evaluate("LM", first, dataset, Unconditioned.make(lm),
                                                                       args)

    print(_table(results))
    for seconds in encode.values():
        print(f"\nimage tower: {seconds:.2f} s per 100 images from cold (not in s/100, which is the decoder's own time)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
