"""``datasets.shards`` and ``datasets.stream``: training from WebDataset shards, streamed.

The **dataset** reads a shard folder or URL prefix written by ``cl data shard`` (:mod:`cl_datasets.shards`): its
training split is a :class:`StreamSource` (known length from the index, no random access); every other split is
read into memory (a :class:`ShardSplit`), for the evaluators.

The **sampler** streams the training split, as WebDataset pipelines do, and keeps the core's contract that an
epoch's batches are a function of the epoch's generator alone (so ``cl train --resume`` continues exactly):

* the shards are dealt to ``streams`` sub-streams (shard i to stream i mod S, fixed, so each stream's length is
  known); each epoch draws one seed from the generator, and stream s orders its shards and runs its shuffle buffer
  (``shuffle`` examples: once full, each new example replaces a random one, which is emitted) from (seed, s);
* global batch k is the concatenation of each stream's k-th sub-batch of ``batch_size / streams`` examples;
* under ``torchrun`` rank r reads only streams s = r mod W (``streams`` must be a multiple of the world size) and
  yields its share of the batch itself (:attr:`StreamSampler.rank_local`): no rank reads another's shards, and the
  global batch is the one a single process reads (the gather-with-gradient losses see the same rows, in another
  order, which they do not depend on);
* a resumed epoch skips its first ``start`` batches by reading the raw samples through the same shard orders and
  buffers without decoding them (exact, except that under ``on_error = "skip"`` an example that does not decode
  among the skipped ones is counted as if it had: the resumed epoch then starts one example early);
* with ``workers > 0``, separate processes read and decode the streams (stream s in worker s mod workers), so
  decoding runs beside training; the batches are the same for every number of workers.

Errors (``on_error`` of the dataset): a shard that cannot be opened, is corrupt or truncated, or an example that
lacks a field or does not decode is named by shard and key, and either stops the run (``"stop"``, a
:class:`~cl_core.api.DataError`) or is skipped and counted (``"skip"``: the examples before the break are kept; the
dataset's :attr:`StreamSource.skipped` lists what was skipped, a warning names the first of each pass and says when
the epoch ended early, and a pass left without any batch is a :class:`~cl_core.api.DataError`).
"""

from __future__ import annotations

import multiprocessing as mp
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cl_core.api import Batch, ClWarning, DataError, Dataset, DataSource, Sampler, spec_problem, world

from .params import ShardsParams, StreamParams
from .shards import ShardProblem, decode_sample, pick_fields, raw_samples, read_index, shard_url


class ShardWarning(ClWarning):
    """Examples or shards skipped while streaming (``on_error = "skip"``)."""


def _fields(index: Mapping[str, Any]) -> dict[str, str]:
    return {f: ext for f, ext in index["fields"].items() if f != "label"}


class StreamSource(DataSource):
    """The streamed training split: what the sampler reads. ``len()`` is the index's example count.

    Attributes:
        shards: ``[(url, examples)]`` in index order.
        extensions: field -> stored extension (``"png"``, ``"txt"``, ...), the label excluded.
        has_labels: the examples carry a ``cls`` label.
        on_error: ``"stop"`` or ``"skip"``.
        read_timeout: seconds an HTTP shard may send nothing (None: aiohttp's default).
        skipped: ``(url, key, what)`` of everything skipped so far (``on_error = "skip"``).
    """

    def __init__(self, root: str, index: Mapping[str, Any], split: str, on_error: str,
                 read_timeout: float | None = None) -> None:
        entry = index["splits"][split]
        self.shards = [(shard_url(root, s["name"]), int(s["count"])) for s in entry["shards"]]
        self.extensions = _fields(index)
        self.has_labels = "label" in index["fields"]
        self.fields = tuple(self.extensions)
        self.class_names = entry.get("class_names")
        self.on_error = on_error
        self.read_timeout = read_timeout
        self.split = split
        self.skipped: list[tuple[str, str | None, str]] = []

    def __len__(self) -> int:
        return sum(n for _, n in self.shards)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        raise DataError(f"split {self.split!r} of datasets.shards is streamed: it has no random access (train it with "
                        "the datasets.stream sampler)")


class ShardSplit(DataSource):
    """An evaluation split read into memory from its shards (indexable, with labels when stored)."""

    def __init__(self, root: str, index: Mapping[str, Any], split: str, on_error: str, limit: int | None,
                 read_timeout: float | None = None) -> None:
        extensions = _fields(index)
        entry = index["splits"][split]
        self.fields = tuple(extensions)
        self.class_names = entry.get("class_names")
        self.class_descriptions = entry.get("class_descriptions")
        wanted = dict(extensions, **({"label": "cls"} if "label" in index["fields"] else {}))
        rows: list[dict[str, Any]] = []
        skipped: list = []
        for shard in entry["shards"]:
            url = shard_url(root, shard["name"])
            seen, key = 0, None
            try:
                for raw in raw_samples(url, read_timeout):
                    if limit is not None and len(rows) >= limit:
                        break
                    seen, key = seen + 1, raw.get("__key__")
                    try:
                        rows.append(decode_sample(pick_fields(raw, wanted, url), wanted, url))
                    except ShardProblem as problem:
                        _handle(problem, on_error, skipped)
                else:  # read to its end: as many examples as the index counts, or it was cut
                    if seen < int(shard["count"]):
                        raise ShardProblem(url, key, f"truncated: {seen} of the {shard['count']} examples the "
                                                     "index counts")
            except ShardProblem as problem:
                _handle(problem, on_error, skipped)
            if limit is not None and len(rows) >= limit:
                break
        if skipped:
            url, key, what = skipped[0]
            warnings.warn(ShardWarning(f"datasets.shards: split {split!r} skipped {len(skipped)} shard(s) or "
                                       f"example(s) and keeps {len(rows)} (first: {url}"
                                       f"{f' (example {key})' if key else ''}: {what})"), stacklevel=2)
        self.skipped = skipped
        self._rows = rows
        self.labels = np.asarray([r["label"] for r in rows], dtype=np.int64) if "label" in wanted else None

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        return {f: [self._rows[i][f] for i in indices] for f in self.fields}


def _handle(problem: ShardProblem, on_error: str, skipped: list | None) -> None:
    if on_error == "stop":
        raise DataError(f"{problem} (set data.on_error = \"skip\" to skip and count such examples)")
    if skipped is not None:
        skipped.append((problem.url, problem.key, problem.what))


class ShardsDataset(Dataset):
    """``datasets.shards`` (see the module docstring)."""

    def __init__(self, params: ShardsParams) -> None:
        self.params = params
        self.index = read_index(params.root, params.read_timeout)
        splits = self.index["splits"]
        if params.train_split not in splits:
            raise DataError(f"{params.root}: the shard index has no split {params.train_split!r} (it has "
                            f"{', '.join(splits) or 'none'})")
        self._splits: dict[str, DataSource] = {"train": StreamSource(params.root, self.index, params.train_split,
                                                                     params.on_error, params.read_timeout)}
        for name in splits:
            if name != params.train_split:
                self._splits[name] = ShardSplit(params.root, self.index, name, params.on_error, params.max_eval,
                                                params.read_timeout)

    def splits(self) -> Mapping[str, DataSource]:
        return self._splits

    def describe(self) -> str:
        train = self._splits["train"]
        assert isinstance(train, StreamSource)
        rest = "; ".join(f"{n}: {len(s)} examples" for n, s in self._splits.items() if n != "train")
        return f"train: {len(train)} examples streamed from {len(train.shards)} shards" + (f"; {rest}" if rest else "")


def build_shards(params: ShardsParams, ctx: Any = None) -> ShardsDataset:
    """Factory of ``datasets.shards``.

    Raises:
        DataError: the index cannot be read, has no training split, or an evaluation shard is bad (``"stop"``).
    """
    return ShardsDataset(params)


# -- the stream of one sub-stream -----------------------------------------------------------------------------------


def stream_raw(shards: Sequence[tuple[str, int]], shuffle: int, rng: np.random.Generator, on_error: str,
               skipped: list, read_timeout: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(url, raw sample)`` of shards ``(url, examples the index counts)`` in the given order through a shuffle
    buffer of ``shuffle`` examples. A shard that ends early without a tar error (cut at a member boundary) is a
    problem too: its count is the index's."""
    buffer: list[tuple[str, dict[str, Any]]] = []
    for url, count in shards:
        try:
            seen, key = 0, None
            for sample in raw_samples(url, read_timeout):
                seen, key = seen + 1, sample.get("__key__")
                if shuffle <= 1:
                    yield url, sample
                elif len(buffer) < shuffle:
                    buffer.append((url, sample))
                else:
                    j = int(rng.integers(len(buffer)))
                    yield buffer[j]
                    buffer[j] = (url, sample)
            if seen < count:
                raise ShardProblem(url, key, f"truncated: {seen} of the {count} examples the index counts")
        except ShardProblem as problem:
            _handle(problem, on_error, skipped)
    order = rng.permutation(len(buffer))
    for j in order:
        yield buffer[j]


def sub_batches(spec: Mapping[str, Any], skipped: list) -> Iterator[list[dict[str, Any]]]:
    """One stream's decoded sub-batches (``spec``: shards, seed, stream, shuffle, size, skip, extensions, labels,
    on_error, read_timeout), skipping the first ``skip`` sub-batches without decoding them."""
    rng = np.random.default_rng([spec["seed"], spec["stream"]])
    order = [tuple(spec["shards"][i]) for i in rng.permutation(len(spec["shards"]))]
    wanted = dict(spec["extensions"], **({"label": "cls"} if spec["labels"] else {}))
    size, to_skip = spec["size"], spec["skip"] * spec["size"]
    rows: list[dict[str, Any]] = []
    for url, raw in stream_raw(order, spec["shuffle"], rng, spec["on_error"], skipped, spec.get("read_timeout")):
        try:
            picked = pick_fields(raw, wanted, url)
            if to_skip:
                to_skip -= 1
                continue
            row = decode_sample(picked, wanted, url)
        except ShardProblem as problem:
            _handle(problem, spec["on_error"], skipped)
            continue
        rows.append(row)
        if len(rows) == size:
            yield rows
            rows = []


def _worker(specs: list[dict[str, Any]], out: Any) -> None:
    """A worker process: the sub-batches of its streams, in turn, onto ``out``; then ``None``."""
    try:
        skipped: list = []
        streams = [sub_batches(spec, skipped) for spec in specs]
        while True:
            for stream in streams:
                part = next(stream, None)
                if skipped:
                    out.put(("skipped", skipped[:]))
                    skipped.clear()
                if part is None:
                    out.put(None)
                    return
                out.put(("rows", part))
    except BaseException as exc:  # re-raised in the trainer's process
        out.put(("error", exc))


class StreamSampler(Sampler):
    """``datasets.stream`` (see the module docstring): batches of ``batch_size`` examples of a streamed split.

    Attributes:
        rank_local: True: under ``torchrun`` the batches it yields are this rank's share already.
    """

    rank_local = True

    def __init__(self, params: StreamParams) -> None:
        self.params = params

    def _source(self, source: DataSource) -> StreamSource:
        if not isinstance(source, StreamSource):
            raise DataError("sampler datasets.stream streams the training split of datasets.shards; this data "
                            f"({type(source).__name__}) is indexable: use core.in-batch")
        return source

    def _streams(self, source: StreamSource) -> list[list[tuple[str, int]]]:
        s = self.params.streams
        if len(source.shards) < s:
            raise DataError(f"sampler.streams = {s} needs at least {s} shards; the split has {len(source.shards)}")
        return [source.shards[i::s] for i in range(s)]

    def num_batches(self, source: DataSource) -> int:
        src = self._source(source)
        size = self.params.batch_size // self.params.streams
        count = min(sum(n for _, n in stream) for stream in self._streams(src)) // size
        if count == 0:
            raise DataError(f"a stream of the training split has fewer than {size} examples (batch_size / streams): "
                            "lower sampler.batch_size or sampler.streams")
        return count

    def batches(self, source: DataSource, *, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        src = self._source(source)
        p = self.params
        rank, size = world()
        if size > 1 and src.on_error == "skip":
            # A rank that skips ends its epoch early while the others go on: the ranks' collectives fall out of step.
            raise DataError(f"data.on_error = \"skip\" cannot be used by {size} ranks (torchrun): a rank that skips "
                            "runs out of batches before the others and the ranks fall out of step; stop on a bad "
                            "shard (on_error = \"stop\", the default) and fix or remove it")
        if p.streams % size:
            raise DataError(f"sampler.streams = {p.streams} cannot be dealt to {size} ranks: make it a multiple of "
                            "the world size")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        streams = self._streams(src)
        total = self.num_batches(src)
        mine = [s for s in range(p.streams) if s % size == rank]
        size = p.batch_size // p.streams
        specs = [{"shards": streams[s], "seed": seed, "stream": s, "shuffle": p.shuffle,
                  "size": size, "skip": start, "extensions": src.extensions, "labels": src.has_labels,
                  "on_error": src.on_error, "read_timeout": src.read_timeout} for s in mine]
        parts = self._parts(specs, src)
        reported = len(src.skipped)
        yielded = 0
        try:
            for k in range(start, total):
                rows = next(parts, [])
                if len(rows) < size * len(specs):
                    break
                yielded += 1
                yield self._batch(rows, src, k)
        finally:
            parts.close()
        self._report(src, reported, start, yielded, total)

    @staticmethod
    def _report(src: StreamSource, reported: int, start: int, yielded: int, total: int) -> None:
        """One warning for what this pass skipped; an error when skipping left the epoch without a batch."""
        new = src.skipped[reported:]
        if not new:
            return
        url, key, what = new[0]
        first = f"{url}{f' (example {key})' if key else ''}: {what}"
        if start == 0 and yielded == 0:
            raise DataError(f"datasets.stream: no batch could be drawn: {len(new)} shard(s) or example(s) were skipped "
                            f"and a stream ran out (first: {first}); fix or remove the shard, or lower "
                            "sampler.streams / sampler.batch_size")
        short = f"; the epoch ended after {start + yielded} of {total} batches" if start + yielded < total else ""
        warnings.warn(ShardWarning(f"datasets.stream skipped {len(new)} shard(s) or example(s){short} (first: "
                                   f"{first})"), stacklevel=3)

    def _parts(self, specs: list[dict[str, Any]], src: StreamSource) -> Iterator[list[dict[str, Any]]]:
        """The rows of each global batch that this rank reads (its streams' sub-batches, concatenated)."""
        if self.params.workers == 0:
            streams = [sub_batches(spec, src.skipped) for spec in specs]
            while True:
                rows = []
                for stream in streams:
                    part = next(stream, None)
                    if part is None:
                        return
                    rows += part
                yield rows
        yield from self._worker_parts(specs, src)

    def _worker_parts(self, specs: list[dict[str, Any]], src: StreamSource) -> Iterator[list[dict[str, Any]]]:
        n = min(self.params.workers, len(specs))
        ctx = mp.get_context("spawn")  # the trainer has threads: fork is not safe
        queues = [ctx.Queue(maxsize=self.params.prefetch * 2) for _ in range(n)]
        procs = [ctx.Process(target=_worker, args=(specs[w::n], queues[w]), daemon=True) for w in range(n)]
        for proc in procs:
            proc.start()
        try:
            while True:
                rows: list[dict[str, Any]] = []
                for s in range(len(specs)):
                    got = self._next_part(queues[s % n], src)
                    if got is None:
                        return
                    rows += got
                yield rows
        finally:
            for proc in procs:
                proc.terminate()
                proc.join(timeout=5)

    @staticmethod
    def _next_part(q: Any, src: StreamSource) -> list[dict[str, Any]] | None:
        while True:
            item = q.get()
            if item is None:
                return None
            kind, value = item
            if kind == "error":
                raise value
            if kind == "skipped":
                src.skipped += value
                continue
            return value

    @staticmethod
    def _batch(rows: list[dict[str, Any]], src: StreamSource, k: int) -> Batch:
        inputs = {f: [r[f] for r in rows] for f in src.fields}
        labels = torch.tensor([r["label"] for r in rows], dtype=torch.long) if src.has_labels else None
        start = k * len(rows)
        return Batch(inputs=inputs, labels=labels, indices=torch.arange(start, start + len(rows)))


def build_stream(params: StreamParams, ctx: Any = None) -> StreamSampler:
    """Factory of ``datasets.stream``.

    Raises:
        SpecError: with the spec's ``datasets.shards`` data, more streams than training shards, or a stream with
            fewer examples than its share of a batch (``batch_size / streams``).
    """
    sampler = StreamSampler(params)
    dataset = getattr(ctx, "dataset", None)
    train = dataset.splits().get("train") if dataset is not None else None
    if isinstance(train, StreamSource):
        path = getattr(ctx, "path", "") or "sampler"
        try:
            sampler.num_batches(train)
        except DataError as exc:
            key = "streams" if "shards" in str(exc) else "batch_size"
            raise spec_problem(ctx, f"{path}.{key}", str(exc)) from None
    return sampler
