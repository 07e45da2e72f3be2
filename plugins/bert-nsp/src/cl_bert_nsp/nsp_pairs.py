"""``bert-nsp.pairs``: next-sentence-prediction pairs from ordered documents (Devlin et al., 2019, §3.1).

For a sentence A that has a successor in its document, B is that successor ("is next", label 0) or, with
probability ``random_next_probability`` (BERT: 0.5), a sentence drawn uniformly from the **other**
documents of the split ("random", label 1). Labels follow BERT / transformers: 0 = B continues A,
1 = B is random.

Handling of awkward documents (cases 8 of the project's field cases):

* a random B never comes from A's own document: it is drawn uniformly over the sentences of all other
  documents (exactly, by skipping A's document's range, not by rejection), and a split with fewer than
  two documents that have sentences raises :class:`~cl_core.errors.DataError` instead of falling back to
  same-document negatives;
* a document with one sentence yields no "is next" pair (nothing follows its sentence) but its sentence
  can be a random B for others;
* a split where no document has two sentences raises DataError (there is no "is next" pair at all);
* empty lines never become sentences (the documents dataset drops them).

Any :class:`~cl_core.components.DataSource` with a ``sentences`` field (a sequence of strings per
example = per document, in order) works, e.g. ``datasets.documents``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from cl_core.api import Batch, DataError, DataSource, Sampler

from .nsp_tokens import SentencePair
from .params import NSPPairsParams

IS_NEXT, RANDOM = 0, 1


class SentenceIndex:
    """The sentences of a list of documents, flattened in order.

    Attributes:
        sentences: every sentence, documents one after another.
        doc_of: ``[S]`` int64 document of each sentence.
        doc_start / doc_end: ``[D]`` int64 range ``[start, end)`` of each document in ``sentences``.
        anchors: ``[P]`` int64 sentences that have a successor in their document (A of "is next" pairs).
    """

    def __init__(self, documents: Sequence[Sequence[str]]) -> None:
        sentences: list[str] = []
        starts, ends = [], []
        for doc in documents:
            if isinstance(doc, str):
                raise TypeError("each document must be a sequence of sentences, got a string")
            kept = [s for s in doc if isinstance(s, str) and s.strip()]
            starts.append(len(sentences))
            sentences.extend(kept)
            ends.append(len(sentences))
        self.sentences = sentences
        self.doc_start = np.asarray(starts, dtype=np.int64)
        self.doc_end = np.asarray(ends, dtype=np.int64)
        lengths = self.doc_end - self.doc_start
        self.doc_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        last = self.doc_end[self.doc_of] - 1 if len(sentences) else np.zeros(0, dtype=np.int64)
        self.anchors = np.flatnonzero(np.arange(len(sentences)) < last).astype(np.int64)

    @classmethod
    def from_source(cls, source: DataSource) -> SentenceIndex:
        """Index of a data source with a ``sentences`` field. Raises DataError when it has none."""
        if "sentences" not in tuple(getattr(source, "fields", ())):
            raise DataError(f"next-sentence pairs need documents with a 'sentences' field (e.g. datasets.documents); "
                            f"this data source has fields {tuple(source.fields)}")
        return cls(source.get(range(len(source)))["sentences"]) if len(source) else cls([])

    @property
    def num_documents_with_sentences(self) -> int:
        return int(np.count_nonzero(self.doc_end > self.doc_start))

    def check(self, where: str) -> None:
        """Raise DataError unless "is next" pairs exist and random negatives can come from another document."""
        docs = self.num_documents_with_sentences
        if docs < 2:
            raise DataError(
                f"{where} has {docs} document(s) with sentences: next-sentence prediction draws its 'random next' "
                "sentences from *another* document, so at least 2 are needed (same-document negatives are never used)"
            )
        if len(self.anchors) == 0:
            raise DataError(f"{where}: no document has two sentences, so there is no 'is next' pair "
                            "(put one sentence per line, blank lines between documents)")

    def draw(self, generator: torch.Generator, random_next_probability: float,
             limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One epoch: ``(a, b, labels, seeds)`` ``[P]`` int64 arrays (sentence indices, NSP labels, noise seeds).

        Every anchor appears once, in an order drawn from ``generator``; everything is drawn up front, so
        the result is a function of the generator's state alone. ``limit`` keeps the first pairs.
        """
        n = len(self.anchors)
        order = torch.randperm(n, generator=generator).numpy()
        coin = torch.rand(n, generator=generator, dtype=torch.float64).numpy() < random_next_probability
        uniform = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        seeds = torch.randint(0, 2**62, (n,), generator=generator, dtype=torch.int64).numpy()
        a = self.anchors[order]
        doc = self.doc_of[a]
        start, end = self.doc_start[doc], self.doc_end[doc]
        others = len(self.sentences) - (end - start)
        r = np.minimum((uniform * others).astype(np.int64), others - 1)
        negative = r + np.where(r >= start, end - start, 0)  # skip A's own document
        b = np.where(coin, negative, a + 1)
        labels = np.where(coin, RANDOM, IS_NEXT).astype(np.int64)
        if limit is not None:
            a, b, labels, seeds = a[:limit], b[:limit], labels[:limit], seeds[:limit]
        return a, b, labels, seeds

    def pairs(self, a: np.ndarray, b: np.ndarray, seeds: np.ndarray) -> list[SentencePair]:
        return [SentencePair(self.sentences[i], self.sentences[j], int(s)) for i, j, s in zip(a, b, seeds, strict=True)]


class NSPPairSampler(Sampler):
    """Batches of NSP pairs: ``inputs = {"pair": [SentencePair, ...]}``, ``labels`` = NSP labels ``[B]``,
    ``indices`` = the A sentences' indices in the split's flattened sentence list. See the module docstring.

    Args:
        batch_size: pairs per batch.
        random_next_probability: chance that B is a random sentence from another document.
        drop_last: drop the last incomplete batch.
        role: the input role the pairs go to (the first encoder's role in the spec).
    """

    def __init__(self, batch_size: int, random_next_probability: float = 0.5, drop_last: bool = True,
                 role: str = "pair") -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if not 0 < random_next_probability < 1:
            raise ValueError(f"random_next_probability must be in (0, 1), got {random_next_probability}")
        self.batch_size = batch_size
        self.random_next_probability = random_next_probability
        self.drop_last = drop_last
        self.role = role
        self._cached: tuple[DataSource, SentenceIndex] | None = None

    def index(self, source: DataSource) -> SentenceIndex:
        """The (cached) sentence index of ``source``, checked for NSP (raises DataError)."""
        if self._cached is None or self._cached[0] is not source:
            index = SentenceIndex.from_source(source)
            index.check("the training split")
            self._cached = (source, index)
        return self._cached[1]

    def num_batches(self, source: DataSource) -> int:
        n = len(self.index(source).anchors)
        if self.drop_last and n < self.batch_size:
            raise DataError(f"the training split has {n} 'is next' anchor sentences, fewer than batch_size = "
                            f"{self.batch_size}; lower sampler.batch_size or set sampler.drop_last = false")
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def input_roles(self, source: DataSource) -> tuple[str, ...]:
        return (self.role,)

    def batches(self, source: DataSource, *, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        index = self.index(source)
        total = self.num_batches(source)
        a, b, labels, seeds = index.draw(generator, self.random_next_probability)
        for k in range(start, total):
            sl = slice(k * self.batch_size, (k + 1) * self.batch_size)
            yield Batch(inputs={self.role: index.pairs(a[sl], b[sl], seeds[sl])},
                        labels=torch.as_tensor(labels[sl], dtype=torch.long),
                        indices=torch.as_tensor(a[sl], dtype=torch.long))


def build_pairs(params: NSPPairsParams, ctx) -> NSPPairSampler:
    spec = getattr(ctx, "spec", None)
    role = next(iter(spec.encoders)) if spec is not None and spec.encoders else "pair"
    sampler = NSPPairSampler(params.batch_size, params.random_next_probability, params.drop_last, role=role)
    dataset = getattr(ctx, "dataset", None)
    if dataset is not None:  # fail before training: case 8 (single document), no pairs, too few pairs
        splits = dataset.splits()
        if "train" not in splits:
            raise DataError("the dataset has no 'train' split")
        sampler.num_batches(splits["train"])
    return sampler
