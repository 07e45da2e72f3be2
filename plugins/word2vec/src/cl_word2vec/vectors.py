"""Trained word vectors: queries (like gensim's ``KeyedVectors``) and the word2vec text/binary formats.

Formats (Mikolov's word2vec C tool; gensim ``KeyedVectors.save_word2vec_format`` /
``load_word2vec_format``): a header line ``"<V> <dim>\\n"``, then one entry per word, most frequent first:

* text: ``word v1 v2 ... vdim\\n`` (decimal floats);
* binary: ``word `` (UTF-8, then one space), ``dim`` little-endian float32, then ``\\n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cl_core.api import DataError

from .vocab import UnknownWordError, Vocabulary


class WordVectors:
    """Words and their vectors ``[V, dim]`` float32 (rows in vocabulary order, most frequent first).

    ``vectors["king"]`` is a ``[dim]`` array; an unknown word raises :class:`UnknownWordError` (a
    ``KeyError``) whose message lists close matches.
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray, counts: np.ndarray | None = None) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"vectors must be [{len(words)}, dim], got {list(vectors.shape)}")
        if counts is None:
            counts = np.zeros(len(words), dtype=np.int64)
        self.vocabulary = Vocabulary(words, counts)
        self.vectors = vectors
        self._unit: np.ndarray | None = None

    # -- lookups -----------------------------------------------------------------------------------------
    @property
    def words(self) -> list[str]:
        return self.vocabulary.words

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.vocabulary)

    def __contains__(self, word: object) -> bool:
        return word in self.vocabulary

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.vocabulary.id(word)]

    def index(self, word: str) -> int:
        """Row of ``word``; raises :class:`UnknownWordError`."""
        return self.vocabulary.id(word)

    @property
    def unit(self) -> np.ndarray:
        """``[V, dim]`` rows scaled to unit length (zero rows stay zero)."""
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = self.vectors / np.maximum(norms, 1e-12)
        return self._unit

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words; raises :class:`UnknownWordError`."""
        return float(self.unit[self.index(a)] @ self.unit[self.index(b)])

    def most_similar(self, positive: str | Sequence[str] | np.ndarray, negative: Sequence[str] = (), *,
                     topn: int = 10, restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """The ``topn`` words nearest (cosine) to the mean of the unit vectors of ``positive`` minus those of
        ``negative`` (3CosAdd for ``positive=[b, c], negative=[a]``), query words excluded, among the first
        ``restrict_vocab`` rows. ``positive`` may also be a ``[dim]`` vector.

        Raises:
            UnknownWordError: a query word is not in the vocabulary.
        """
        if isinstance(positive, np.ndarray):
            query, exclude = positive.astype(np.float32), set()
        else:
            pos = [positive] if isinstance(positive, str) else list(positive)
            ids = [self.index(w) for w in pos]
            neg = [self.index(w) for w in negative]
            if not ids and not neg:
                raise ValueError("most_similar needs at least one word")
            query = self.unit[ids].sum(0) - self.unit[neg].sum(0)
            exclude = set(ids) | set(neg)
        limit = len(self) if restrict_vocab is None else min(restrict_vocab, len(self))
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        sims = self.unit[:limit] @ query
        order = np.argsort(-sims)[: topn + len(exclude)]
        return [(self.words[i], float(sims[i])) for i in order if i not in exclude][:topn]

    # -- word2vec formats ----------------------------------------------------------------------------------
    def save_word2vec_format(self, path: str | Path, *, binary: bool = True) -> Path:
        """Write the word2vec C format (see the module docstring); loadable by gensim. Returns the path.

        Raises:
            ValueError: a word contains white space (the format cannot hold it).
        """
        bad = [w for w in self.words if not w or any(ch.isspace() for ch in w)]
        if bad:
            raise ValueError(f"words with white space cannot be written in the word2vec format: {bad[:5]!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(f"{len(self)} {self.dim}\n".encode())
            if binary:
                data = self.vectors.astype("<f4", copy=False)
                for word, row in zip(self.words, data):
                    fh.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
            else:
                for word, row in zip(self.words, self.vectors):
                    fh.write((word + " " + " ".join(repr(float(x)) for x in row) + "\n").encode("utf-8"))
        return path

    @classmethod
    def load_word2vec_format(cls, path: str | Path, *, binary: bool | None = None) -> WordVectors:
        """Read a word2vec C text or binary file (``binary=None``: detect from the first entry).

        Raises:
            DataError: missing file, a bad header, or a truncated / malformed entry (names the entry).
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"word vectors file {path} does not exist")
        data = path.read_bytes()
        end = data.find(b"\n")
        try:
            count, dim = (int(x) for x in data[:end].split())
        except ValueError:
            raise DataError(f"{path}: the first line must be '<words> <dim>', got {data[:end][:60]!r}") from None
        pos = end + 1
        if binary is None:
            binary = not _looks_like_text(data[pos: pos + 4096], dim)
        words: list[str] = []
        vectors = np.empty((count, dim), dtype=np.float32)
        if binary:
            width = 4 * dim
            for i in range(count):
                while pos < len(data) and data[pos: pos + 1] in (b"\n", b" "):
                    pos += 1
                space = data.find(b" ", pos)
                if space < 0 or space + 1 + width > len(data):
                    raise DataError(f"{path}: entry {i + 1} of {count} is truncated")
                words.append(data[pos:space].decode("utf-8", errors="strict"))
                vectors[i] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
                pos = space + 1 + width
        else:
            lines = data[pos:].decode("utf-8").splitlines()
            lines = [ln for ln in lines if ln.strip()]
            if len(lines) != count:
                raise DataError(f"{path}: header says {count} words, found {len(lines)} lines")
            for i, line in enumerate(lines):
                parts = line.rstrip().split(" ")
                if len(parts) != dim + 1:
                    raise DataError(f"{path}: line {i + 2} has {len(parts) - 1} numbers, expected {dim}")
                words.append(parts[0])
                vectors[i] = np.array(parts[1:], dtype=np.float32)
        return cls(words, vectors)


def _looks_like_text(head: bytes, dim: int) -> bool:
    line = head.split(b"\n", 1)[0]
    try:
        parts = line.decode("ascii").split()
        [float(x) for x in parts[1:]]
    except (UnicodeDecodeError, ValueError):
        return False
    return len(parts) == dim + 1


__all__ = ["UnknownWordError", "WordVectors"]
