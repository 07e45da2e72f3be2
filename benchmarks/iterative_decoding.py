"""The iterative decoders' speed-ups, measured against a straightforward version of the same search, in the same run.

MAGIC's magic search (``cl_iterative_decoder.magic``) on the embeddings of N held-out emoji images of a CLIP run,

* **straightforward**: no KV cache (the LM runs the whole sequence again at every step) and every candidate text of
  every row embedded by the text tower at every step, one row at a time (``TextSimilarity(reuse=False)``);
* **cl**: the KV cache, and each distinct candidate text embedded once, all rows' candidates in one batched pass,
  kept across steps and rows (what ``iterative.magic`` does);

each from cold (the text tower's own caches emptied first; the straightforward version empties them before every
call, so nothing is kept anywhere),
and the script prints seconds per 100 captions of each, the ratio, the texts each embedded, and checks that both
give the same captions. With ``--zerocap`` it also times ZeroCap (``cl_iterative_decoder.zerocap``) on a few
images at ``top`` = 64 and 512 candidates per step (the text tower is its cost).

    python benchmarks/iterative_decoding.py --clip runs/clip-emoji-... --lm runs/lm-emoji-captions-...
    python benchmarks/iterative_decoding.py --clip RUN --lm LM --images 50 --zerocap 4
"""

from __future__ import annotations

import argparse
import time

import torch


def _queries(clip: str, n: int) -> tuple[object, torch.Tensor, list[str]]:
    import numpy as np

    from cl_captions.references import fetch
    from cl_core.api import from_pretrained

    pipeline = from_pretrained(clip, with_data=True)
    source = pipeline.dataset.splits()["heldout-noto"]
    rows = np.unique(np.linspace(0, len(source) - 1, n).round().astype(int)).tolist()
    items = fetch(source, ["image", "text"], rows)
    return pipeline, pipeline.embed("image", items["image"]), items["text"]


def _time(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", required=True, help="the CLIP run whose image embeddings are decoded")
    parser.add_argument("--lm", required=True, help="the lm.gpt2 run (the adapted one: specs/lm-emoji-captions.toml)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--k", type=int, default=45)
    parser.add_argument("--max-length", type=int, default=16)
    parser.add_argument("--zerocap", type=int, default=0, help="also time ZeroCap on this many images")
    args = parser.parse_args(argv)

    import cl_lm
    from cl_iterative_decoder import MagicSettings, TextSimilarity, ZeroCapSettings, magic_search, zerocap_search

    torch.set_grad_enabled(False)
    pipeline, queries, references = _queries(args.clip, args.images)
    lm = cl_lm.load_lm(args.lm, freeze=True)
    text = pipeline.encoder("text")
    n = queries.shape[0]

    def clear_tower_caches() -> None:
        for module in text.modules():  # the text tower's own embedding and feature caches
            if callable(getattr(module, "clear_cache", None)):
                module.clear_cache()

    class Straightforward(TextSimilarity):
        """Nothing kept anywhere: the tower's own caches are emptied before every call too."""

        def _encode(self, texts: list[str]) -> torch.Tensor:
            clear_tower_caches()
            return super()._encode(texts)

    def magic(kv_cache: bool, reuse: bool) -> tuple[float, list[str], int]:
        clear_tower_caches()  # both versions start cold
        sim = TextSimilarity(text) if reuse else Straightforward(text, reuse=False)
        seconds, ids = _time(lambda: magic_search(lm, sim, queries, max_length=args.max_length,
                                                  settings=MagicSettings(k=args.k, kv_cache=kv_cache)))
        return seconds, lm.tokenizer.decode_batch(ids), sim.embedded

    fast_s, fast, fast_texts = magic(True, True)
    slow_s, slow, slow_texts = magic(False, False)
    assert slow == fast, "the speed-ups changed the captions"
    print(f"MAGIC (k = {args.k}, {n} images, {args.max_length} tokens at most), seconds per 100 captions:")
    print(f"  straightforward  {100 * slow_s / n:8.1f}   texts embedded {slow_texts:,}")
    print(f"  cl               {100 * fast_s / n:8.1f}   texts embedded {fast_texts:,}")
    print(f"  speed-up         {slow_s / fast_s:8.1f}x  (same captions: yes)")
    for caption, reference in list(zip(fast, references))[:5]:
        print(f"    {caption.strip()!r:50} reference: {reference}")
    if args.zerocap:
        few = queries[: args.zerocap]
        for top in (64, 512):
            clear_tower_caches()
            sim = TextSimilarity(text)
            seconds, ids = _time(lambda: zerocap_search(lm, sim, few, max_length=15,
                                                        settings=ZeroCapSettings(top=top)))
            print(f"ZeroCap (top = {top}, {len(few)} images): {seconds / len(few):.1f} s per caption, "
                  f"{sim.embedded:,} texts embedded")
            for caption, reference in zip(lm.tokenizer.decode_batch(ids), references):
                print(f"    {caption.strip()!r:50} reference: {reference}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
