"""The vocabulary, frequent-word subsampling and the unigram^0.75 noise table (word2vec C / gensim formulas).

Mikolov et al., 2013, "Distributed Representations of Words and Phrases and their Compositionality":
subsampling keeps a word of frequency ``f = count / total`` with probability
``min(1, (sqrt(f / t) + 1) * t / f)`` (the formula of the released word2vec C code and gensim, not the
paper's ``1 - sqrt(t / f)``), and negatives come from ``P_n(w) ~ count(w) ** 0.75``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np

from cl_core.api import DataError

CUM_TABLE_DOMAIN = 2**31 - 1  # gensim's cum_table domain (uint32)


class UnknownWordError(KeyError):
    """A word that is not in the vocabulary; the message lists close matches (:mod:`difflib`)."""

    def __init__(self, word: str, vocabulary: Sequence[str] = ()) -> None:
        self.word = word
        self.close = difflib.get_close_matches(word, list(vocabulary), n=5, cutoff=0.7) if len(vocabulary) else []
        super().__init__(word)

    def __str__(self) -> str:
        hint = f"; close matches: {', '.join(self.close)}" if self.close else ""
        return f"word {self.word!r} is not in the vocabulary{hint}"


class Vocabulary:
    """Words (most frequent first) and their corpus counts.

    Args:
        words: distinct words; ``index`` maps each to its row.
        counts: ``[V]`` int64 corpus counts (same order).
    """

    def __init__(self, words: Sequence[str], counts: np.ndarray) -> None:
        self.words = list(words)
        self.counts = np.asarray(counts, dtype=np.int64)
        if len(self.words) != self.counts.shape[0]:
            raise ValueError(f"{len(self.words)} words but {self.counts.shape[0]} counts")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary words must be distinct")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def id(self, word: str) -> int:
        """Row of ``word``; raises :class:`UnknownWordError` (a KeyError) listing close matches."""
        try:
            return self.index[word]
        except KeyError:
            raise UnknownWordError(word, self.words) from None

    # -- build --------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, words: Sequence[str], counts: np.ndarray, *, min_count: int = 5,
              max_vocab: int | None = None) -> tuple[Vocabulary, np.ndarray]:
        """Keep words with ``count >= min_count``, most frequent first (ties: first seen first), at most
        ``max_vocab``. Returns the vocabulary and ``[len(words)]`` int32 old id -> new id (-1 = dropped).

        Raises:
            DataError: fewer than 2 words are left (say which min_count and how many words there were).
        """
        counts = np.asarray(counts, dtype=np.int64)
        kept = np.flatnonzero(counts >= min_count)
        order = kept[np.argsort(-counts[kept], kind="stable")]
        if max_vocab is not None:
            order = order[:max_vocab]
        if len(order) < 2:
            raise DataError(
                f"the vocabulary would have {len(order)} word(s): only {len(kept)} of the corpus's "
                f"{len(words):,} distinct words occur at least min_count = {min_count} times; lower min_count "
                "or give more text"
            )
        mapping = np.full(len(words), -1, dtype=np.int32)
        mapping[order] = np.arange(len(order), dtype=np.int32)
        return cls([words[i] for i in order], counts[order]), mapping

    # -- serialisation (tensors only: saved in model.safetensors) -------------------------------------------
    def to_bytes(self) -> np.ndarray:
        """``[nbytes]`` uint8: the words joined by newlines, UTF-8."""
        return np.frombuffer("\n".join(self.words).encode("utf-8"), dtype=np.uint8).copy()

    @classmethod
    def from_bytes(cls, data: np.ndarray, counts: np.ndarray) -> Vocabulary:
        words = bytes(np.asarray(data, dtype=np.uint8)).decode("utf-8").split("\n") if len(data) else []
        return cls(words, counts)

    # -- sampling tables ------------------------------------------------------------------------------------
    def keep_probabilities(self, sample: float, total: int | None = None) -> np.ndarray:
        """``[V]`` float64 probability of keeping each occurrence under subsampling threshold ``sample``.

        ``total`` is the number of in-vocabulary tokens (default: the sum of counts). ``sample = 0`` keeps all.
        """
        if sample <= 0:
            return np.ones(len(self), dtype=np.float64)
        total = int(self.counts.sum()) if total is None else total
        threshold = sample * total
        c = self.counts.astype(np.float64)
        return np.minimum(1.0, (np.sqrt(c / threshold) + 1.0) * threshold / c)

    def noise_distribution(self, exponent: float = 0.75) -> np.ndarray:
        """``[V]`` float64 noise probabilities ``count ** exponent / Z``."""
        weights = self.counts.astype(np.float64) ** exponent
        return weights / weights.sum()

    def cum_table(self, exponent: float = 0.75) -> np.ndarray:
        """``[V]`` uint32 cumulative noise table scaled to ``2**31 - 1`` (gensim's ``cum_table``): a uniform
        integer r in ``[0, table[-1])`` maps to word ``searchsorted(table, r, side="right")``."""
        cum = np.cumsum(self.noise_distribution(exponent)) * CUM_TABLE_DOMAIN
        table = np.round(cum).astype(np.uint32)
        table[-1] = CUM_TABLE_DOMAIN
        return table

    def alias_table(self, exponent: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
        """Walker's alias tables of the noise distribution (Walker, 1977; Vose, 1991): ``prob`` ``[V]`` uint64
        (acceptance probability x 2^32) and ``alias`` ``[V]`` int64. A uniform column ``i`` is kept when a
        uniform 32-bit draw is below ``prob[i]``, else it becomes ``alias[i]``: one O(1) draw instead of a
        binary search of the cumulative table, exact up to 2^-32 per column."""
        return alias_tables(self.noise_distribution(exponent))


def alias_tables(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alias tables (see :meth:`Vocabulary.alias_table`) of a ``[V]`` probability vector (Vose's method)."""
    n = probabilities.shape[0]
    scaled = probabilities.astype(np.float64) * n / probabilities.sum()
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    # leftovers are 1 up to rounding: always kept
    return np.minimum(np.round(prob * 2.0**32), 2.0**32).astype(np.uint64), alias
