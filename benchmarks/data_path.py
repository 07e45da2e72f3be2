"""The data path of a spec's training split: the indexable source (``core.in-batch`` over the spec's ``[data]``),
its ``prepare`` in 1 or 2 threads (``trainer.data_workers``) or in 2 worker processes (``trainer.data_processes``),
against the same examples streamed from WebDataset shards (``datasets.shards`` + ``datasets.stream``) with 0, 1
and 2 decoding worker processes, measured in the same run.

    python benchmarks/data_path.py benchmarks/specs/clip-data-path.toml --shards /tmp/emoji-shards --batches 12
    python benchmarks/data_path.py benchmarks/specs/clip-data-path.toml --shards /tmp/emoji-shards --train-steps 15

Two figures per row, examples per second:

* ``data path``: drawing ``--batches`` batches and running the pipeline's ``prepare`` on each (decoding, resizing,
  tokenising) as the trainer does, in the background (prepare threads or processes), nothing else;
* ``training`` (with ``--train-steps``): ``cl train`` for that many steps with the spec's model (the data path in
  its background thread beside the model's work), evaluation off; the trainer's own pairs/s.

The shards are written from the spec's ``[data]`` into ``--shards`` once (``cl data shard --spec``) and reused. The
first batch of each row is not counted (worker start-up, first decode). Rows are timed one after another, so run it
on a quiet machine; the ratio column is against the indexable source of the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import torch


def _pipeline(spec: Path, overrides: list[str]):
    from cl_core.build import build_pipeline
    from cl_core.plugins import default_host
    from cl_core.spec import load_spec, parse_overrides

    registry = default_host().registry()
    return build_pipeline(load_spec(spec, registry, overrides=parse_overrides(tuple(overrides))), registry)


def _rate(pipeline, batches: int, threads: int, processes: int = 0) -> float:
    """Examples/s of the trainer's data path: the sampler in a background thread, ``prepare`` in ``threads``, or
    in ``processes`` worker processes when that is not 0."""
    from cl_core.prepare_processes import data_path_payload, prepare_in_worker, start_workers
    from cl_core.trainer import _prefetch, epoch_generator

    source = pipeline.dataset.splits()["train"]
    drawn = pipeline.sampler.batches(source, generator=epoch_generator(0, 0))
    pool = start_workers(data_path_payload(pipeline), processes) if processes else None
    stream = _prefetch(drawn, prepare_in_worker if pool else pipeline.prepare, workers=processes or threads,
                       executor=pool)
    for _ in range(1 + processes):  # every worker has started and prepared once
        next(stream)
    count, start = 0, time.perf_counter()
    for _, (batch, _prepared) in zip(range(batches), stream):
        count += len(batch)
    seconds = time.perf_counter() - start
    stream.close()
    if pool is not None:
        pool.shutdown(cancel_futures=True)
    return count / seconds


def _train_rate(spec: Path, overrides: list[str], steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        args = [sys.executable, "-m", "cl_core", "train", str(spec), "--set", f"run.output_dir='{out}'",
                "--set", f"trainer.max_steps={steps}", "--set", "evaluate=[]", "--set", "trainer.plots=false",
                "--set", "trainer.progress=false", *[x for o in overrides for x in ("--set", o)]]
        done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              check=True)
        line = next(x for x in done.stdout.splitlines() if x.startswith("trained "))
        return float(line.split("(")[1].split()[0])  # "trained N steps in S s (R pairs/s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--shards", type=Path, required=True, help="shard folder (written from the spec if missing)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--shuffle", type=int, default=1000)
    parser.add_argument("--train-steps", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if not (args.shards / "shards.json").exists():
        subprocess.run([sys.executable, "-m", "cl_core", "data", "shard", "--spec", str(args.spec), "--out",
                        str(args.shards), "--shard-size", str(args.shard_size)], check=True)
    batch = tomllib.loads(args.spec.read_text())["sampler"]["batch_size"]
    rows = [("indexable source (core.in-batch)", [], 1, 0), ("indexable source, 2 prepare threads", [], 2, 0),
            ("indexable source, 2 prepare processes", [], 1, 2)]
    for w in (int(x) for x in args.workers.split(",")):
        rows.append((f"shards, {w} worker(s)", [
            f"data={{ type = \"datasets.shards\", root = \"{args.shards.resolve()}\" }}",
            f"sampler={{ type = \"datasets.stream\", batch_size = {batch}, shuffle = {args.shuffle}, "
            f"streams = 2, workers = {w} }}"], 1, 0))
    results = []
    for label, overrides, threads, processes in rows:
        rate = _rate(_pipeline(args.spec, overrides), args.batches, threads, processes)
        if args.train_steps:
            overrides = [*overrides, f"trainer.data_workers={threads}", f"trainer.data_processes={processes}"]
        train = _train_rate(args.spec, overrides, args.train_steps) if args.train_steps else None
        results.append((label, rate, train))
        print(f"  {label}: done", file=sys.stderr)
    base, base_train = results[0][1], results[0][2]
    print("| data | data path, examples/s | ratio | training, pairs/s | ratio |")
    print("|---|---|---|---|---|")
    for label, rate, train in results:
        t = f"{train:.1f} | {train / base_train:.2f}" if train is not None and base_train else "— | —"
        print(f"| {label} | {rate:.1f} | {rate / base:.2f} | {t} |")


if __name__ == "__main__":
    main()
