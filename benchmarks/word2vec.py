"""cl's word2vec against gensim on the same corpus and hyper-parameters, in one run.

    python benchmarks/word2vec.py                              # wiki leads (0.8 M tokens), 5 epochs, 2 workers
    python benchmarks/word2vec.py --sources gcide,wordnet,wiki-leads --sample 1e-4   # the 7 M main-job mix
    python benchmarks/word2vec.py --backends numba,torch --device cuda              # add the GPU row

Both train skip-gram with negative sampling (sg=1, negative=5, dim 100, window 5, min_count 5, the given
sample, epochs and workers) on the same tokenised sentences (``datasets.text-corpus``). Words/s = raw
corpus words x epochs / training seconds (vocabulary building excluded for both). Scores: WS353 and
SimLex-999 Spearman, 3CosAdd analogy accuracy over the top 30k and 100k words, all computed by
``cl_word2vec.evaluation`` on both models' input vectors (gensim's own ``evaluate_word_pairs`` /
``evaluate_word_analogies`` on gensim's vectors are printed too, as a check of the evaluators).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def cl_run(args: argparse.Namespace, backend: str, seed: int, corpus_cache: dict) -> dict:
    import torch

    from cl_core.build import build_pipeline
    from cl_core.components import TrainContext
    from cl_core.plugins import default_host
    from cl_core.spec import load_spec
    from cl_word2vec.evaluation import vectors_of
    from cl_word2vec.sgd import Word2VecSGD

    registry = default_host().registry()
    spec_path = Path(__file__).resolve().parent.parent / "specs" / "word2vec-english.toml"
    device = args.device if backend == "torch" else "cpu"
    overrides = [("data.sources", list(args.sources.split(","))), ("sampler.sample", args.sample),
                 ("trainer.epochs", args.epochs), ("trainer.workers", args.workers), ("trainer.backend", backend),
                 ("trainer.checkpoint", False), ("run.seed", seed), ("run.device", device),
                 ("trainer.batch_size", args.batch_size)]
    spec = load_spec(spec_path, registry, overrides=overrides)
    pipeline = build_pipeline(spec, registry, device=device)
    corpus_cache["corpus"] = pipeline.dataset.splits()["train"]
    with tempfile.TemporaryDirectory() as tmp:
        ctx = TrainContext(pipeline=pipeline, run_dir=Path(tmp), seed=seed, device=torch.device(device),
                           log=lambda m: None)
        loop = Word2VecSGD(spec.trainer.params, ctx)
        if backend == "torch" and device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            while loop.epoch < loop.epochs:
                loop._numba_epoch() if loop.backend == "numba" else loop._torch_epoch()
                loop.epoch += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    raw = loop.data.raw_words * args.epochs
    return {"name": f"cl {backend}" + (f" ({device})" if backend == "torch" else ""), "seed": seed,
            "seconds": seconds, "words_per_s": raw / seconds, "vectors": vectors_of(pipeline), "vocab": len(loop.word.vocabulary)}


def gensim_run(args: argparse.Namespace, seed: int, corpus) -> dict:
    from gensim.models import Word2Vec

    from cl_word2vec.vectors import WordVectors

    words = corpus.words
    ids, offsets = corpus.ids, corpus.offsets
    sentences = [[words[i] for i in ids[offsets[s]:offsets[s + 1]]] for s in range(len(offsets) - 1)]
    model = Word2Vec(sg=1, negative=5, vector_size=100, window=5, min_count=5, sample=args.sample,
                     workers=args.workers, seed=seed)
    model.build_vocab(sentences)
    t0 = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=args.epochs)
    seconds = time.perf_counter() - t0
    raw = corpus.num_tokens * args.epochs
    kv = model.wv
    vectors = WordVectors(list(kv.index_to_key), kv.vectors)
    check = {}
    if args.gensim_check:
        from gensim.test.utils import datapath

        check["ws353"] = kv.evaluate_word_pairs(datapath("wordsim353.tsv"))[1][0]
        check["simlex999"] = kv.evaluate_word_pairs(datapath("simlex999.txt"))[1][0]
        check["analogy/100k"] = kv.evaluate_word_analogies(datapath("questions-words.txt"), restrict_vocab=100000)[0]
    return {"name": "gensim", "seed": seed, "seconds": seconds, "words_per_s": raw / seconds, "vectors": vectors,
            "vocab": len(kv), "gensim_check": check}


def scores(vectors) -> dict[str, float]:
    from cl_word2vec.evaluation import analogies, eval_file, read_analogies, read_pairs, word_pairs

    q = read_analogies(eval_file("questions-words.txt"))
    return {
        "ws353": word_pairs(vectors, read_pairs(eval_file("wordsim353.tsv")))["spearman"],
        "simlex999": word_pairs(vectors, read_pairs(eval_file("simlex999.txt")))["spearman"],
        "analogy/30k": analogies(vectors, q, restrict_vocab=30000)["accuracy"],
        "analogy/100k": analogies(vectors, q, restrict_vocab=100000)["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default="wiki-leads", help="comma-separated datasets.text-corpus sources")
    parser.add_argument("--sample", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; each seed trains every row once")
    parser.add_argument("--backends", default="numba", help="cl backends: numba, torch")
    parser.add_argument("--device", default="cpu", help="device of the torch backend")
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--no-gensim", action="store_true")
    parser.add_argument("--gensim-check", action="store_true", help="also print gensim's own evaluation")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.workers)
    rows, cache = [], {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for backend in args.backends.split(","):
            rows.append(cl_run(args, backend, seed, cache))
        if not args.no_gensim:
            rows.append(gensim_run(args, seed, cache["corpus"]))
    gensim_speed = [r["words_per_s"] for r in rows if r["name"] == "gensim"]
    ref = sum(gensim_speed) / len(gensim_speed) if gensim_speed else None
    corpus = cache["corpus"]
    print(f"corpus {args.sources}: {corpus.num_tokens:,} tokens, {len(corpus):,} sentences; sg=1 negative=5 dim=100 "
          f"window=5 min_count=5 sample={args.sample} epochs={args.epochs} workers={args.workers}")
    header = f"{'row':<18}{'seed':>5}{'vocab':>8}{'train s':>9}{'words/s':>11}{'x gensim':>9}" \
             f"{'WS353':>8}{'SimLex':>8}{'an@30k':>8}{'an@100k':>8}"
    print(header)
    out = []
    for r in rows:
        s = scores(r["vectors"])
        ratio = f"{r['words_per_s'] / ref:.2f}" if ref else "-"
        print(f"{r['name']:<18}{r['seed']:>5}{r['vocab']:>8}{r['seconds']:>9.1f}{r['words_per_s']:>11,.0f}{ratio:>9}"
              f"{s['ws353']:>8.3f}{s['simlex999']:>8.3f}{s['analogy/30k']:>8.3f}{s['analogy/100k']:>8.3f}")
        if r.get("gensim_check"):
            print("    gensim's own evaluation: " + ", ".join(f"{k} {v:.3f}" for k, v in r["gensim_check"].items()))
        out.append({k: v for k, v in r.items() if k != "vectors"} | {"scores": s})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
