"""Build time, single-query latency and recall of the indexes ``cl index build`` makes, on synthetic embeddings.

    python benchmarks/index_search.py                          # N = 10,000 and 1,000,000, d = 256
    python benchmarks/index_search.py --sizes 10000,100000 --queries 500
    python benchmarks/index_search.py --sizes 1000000 --kinds ivf         # 1M without HNSW's long build

The vectors are clustered like real embeddings (``--centres`` random unit centres, each point a centre plus
gaussian noise of norm about ``--noise``, L2-normalised), so that approximate search has structure to exploit; the
queries are fresh points from the same clusters. Every index is built by :func:`cl_core.index.new_index` with the
parameters ``cl index build`` would use (:func:`cl_core.index.index_params`): ``flat`` (exact), ``ivf`` (nlist
about 4 sqrt(N), nprobe 16) and ``hnsw`` (M 32, efSearch 64, efConstruction 40).

Per index: build seconds (IVF: k-means training included), the p50 / p99 latency of ``--queries`` single-query
searches (k = 10, one query per call, as a search box issues them, on ``--search-threads`` 1 thread; the flat index: ``--flat-queries`` of them), and
recall@10 against the exact top 10 of the flat index (one batched search over all queries). The approximate indexes are then searched again with other
search settings (``--nprobe-sweep``, ``--ef-search-sweep``; same index, no rebuild). Ratios are against flat measured in the same run: build x (its build time over flat's) and speed-up
(flat's p50 over its p50).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time

import numpy as np

from cl_core.index import faiss_module, index_params, new_index, set_search_params


def clustered(n: int, dim: int, centres: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n, dim]`` unit vectors around ``centres`` unit centres, built in blocks (1M x 256 is 1 GB), and the
    centres."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    sigma = noise / np.sqrt(dim)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = c[rng.integers(0, centres, stop - start)] + sigma * rng.standard_normal((stop - start, dim),
                                                                                         dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out, c


def latency(index, queries: np.ndarray, k: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [q, k], seconds [q])`` of one search call per query, FAISS limited to ``threads`` OpenMP threads."""
    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(threads)
    ids = np.empty((len(queries), k), dtype=np.int64)
    seconds = np.empty(len(queries))
    try:
        index.search(queries[:10], k)  # warm-up
        for i in range(len(queries)):
            t0 = time.perf_counter()
            _, found = index.search(queries[i : i + 1], k)
            seconds[i] = time.perf_counter() - t0
            ids[i] = found[0]
    finally:
        faiss.omp_set_num_threads(before)
    return ids, seconds


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a, b)) / truth.shape[1] for a, b in zip(found, truth)]))


def run_size(n: int, args: argparse.Namespace) -> list[dict]:
    x, centres = clustered(n + args.queries, args.dim, args.centres, args.noise, args.seed)
    data, queries = x[:n], np.ascontiguousarray(x[n:])
    del x
    rows: list[dict] = []
    truth = None
    for kind in ["flat", *(k for k in _names(args.kinds) if k != "flat")]:  # flat first: the exact answers
        params = index_params(kind, n)
        gc.collect()
        t0 = time.perf_counter()
        index = new_index(data, kind, params, seed=args.seed)
        build = time.perf_counter() - t0
        if truth is None:  # the flat index: exact; one batched call for all queries, singles timed on a subset
            _, truth = index.search(queries, args.k)
            _, seconds = latency(index, queries[: args.flat_queries], args.k, args.search_threads)
            found = truth
        else:
            found, seconds = latency(index, queries, args.k, args.search_threads)
        rows.append(_row(n, kind, params, build, seconds, recall(found, truth)))
        sweep = {"ivf": ("nprobe", args.nprobe_sweep), "hnsw": ("ef_search", args.ef_search_sweep)}.get(kind)
        for value in _ints(sweep[1]) if sweep else []:  # search settings only: the same index
            set_search_params(index, kind, **{sweep[0]: value})
            found, seconds = latency(index, queries, args.k, args.search_threads)
            rows.append(_row(n, kind, {**params, sweep[0]: value}, None, seconds, recall(found, truth)))
        del index
    return rows


def _row(n: int, kind: str, params: dict, build: float | None, seconds: np.ndarray, found: float) -> dict:
    row = {"n": n, "kind": kind, "params": params, "build": build, "p50": float(np.percentile(seconds, 50)),
           "p99": float(np.percentile(seconds, 99)), "recall": found, "timed": len(seconds)}
    built = f"build {build:8.2f} s" if build is not None else "(same index)  "
    print(f"  {n:>9,} {kind:<5} {built}  p50 {row['p50'] * 1e3:8.3f} ms  p99 {row['p99'] * 1e3:8.3f} ms  "
          f"recall {found:.3f}  {params}", flush=True)
    return row


def _ints(text: str) -> list[int]:
    return [int(v) for v in _names(text)]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def table(rows: list[dict], k: int) -> str:
    lines = [f"| N | index | parameters | build s | build x flat | p50 ms | p99 ms | speed-up (p50) | recall@{k} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        flat = next(r for r in rows if r["n"] == row["n"] and r["kind"] == "flat")
        params = ", ".join(f"{key} {value}" for key, value in row["params"].items()) or "exact"
        build = (f"{row['build']:.2f} | {row['build'] / flat['build']:.0f}" if row["build"] is not None
                 else "(same index) | ")
        lines.append(f"| {row['n']:,} | {row['kind']} | {params} | {build} | {row['p50'] * 1e3:.3f} | {row['p99'] * 1e3:.3f} | "
                     f"{flat['p50'] / row['p50']:.1f}x | {row['recall']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated corpus sizes")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000, help="single-query searches timed per index")
    parser.add_argument("--flat-queries", type=int, default=200,
                        help="single-query searches timed on the flat index (its exact top k comes from one batched "
                             "call over all queries; a 1M flat scan costs about 0.3 s per query on 2 cores)")
    parser.add_argument("--kinds", default="flat,ivf,hnsw",
                        help="indexes to measure (flat always: it gives the exact answers); HNSW's build is most of "
                             "a 1M run (400-500 s on 2 busy cores): --kinds flat,ivf keeps it near 3 minutes")
    parser.add_argument("--nprobe-sweep", default="32", help="further IVF nprobe values searched (same index)")
    parser.add_argument("--ef-search-sweep", default="128,256", help="further HNSW efSearch values (same index)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=1.0, help="norm of each point's noise (centres have norm 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads to build (0: its default)")
    parser.add_argument("--search-threads", type=int, default=1,
                        help="FAISS OpenMP threads for the timed single queries (0: as many as to build). One query "
                             "gains nothing from a thread team, and on a busy machine its barriers cost milliseconds")
    args = parser.parse_args()
    faiss = faiss_module()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {faiss.omp_get_max_threads()} FAISS threads to build, {args.search_threads or 'as many'} to search; d = {args.dim}, "
          f"{args.centres} centres, noise {args.noise}, {args.queries} single queries, k = {args.k}", flush=True)
    rows: list[dict] = []
    start = time.perf_counter()
    for n in (int(s) for s in args.sizes.split(",")):
        rows += run_size(n, args)
    print(f"\n{table(rows, args.k)}\n\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
