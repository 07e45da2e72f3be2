"""Word-embedding evaluation: word-pair similarity (Spearman's rho) and analogies by 3CosAdd.

Data files come from the gensim wheel's test data (``pip install gensim``), or your own files:

* ``wordsim353.tsv``: WordSim-353 (Finkelstein et al., 2002, "Placing search in context"), 353 pairs;
* ``simlex999.txt``: SimLex-999 (Hill, Reichart & Korhonen, 2015), 999 pairs;
* ``questions-words.txt``: Google's analogy set (Mikolov et al., 2013, "Efficient Estimation of Word
  Representations in Vector Space"), 19,544 questions in 14 sections.

Both follow gensim's ``evaluate_word_pairs`` / ``evaluate_word_analogies``: case-insensitive (our
vocabulary is lower-case), questions or pairs with a word outside the ``restrict_vocab`` most frequent
words are skipped and counted, accuracy is over the questions asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_core.api import DataError, Evaluator

from .params import AnalogyParams, WordSimilarityParams
from .vectors import WordVectors

PAIR_FILES = {"ws353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


def eval_file(name: str) -> Path:
    """A file of gensim's test data. Raises DataError when gensim is not installed."""
    from cl_datasets.wiki import gensim_test_file

    return gensim_test_file(name)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank), as ``scipy.stats.spearmanr``."""
    return float(np.corrcoef(_ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64)))[0, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = np.arange(len(a), dtype=np.float64)
    sorted_a = a[order]
    start = 0
    for i in range(1, len(a) + 1):  # average the ranks of tied runs
        if i == len(a) or sorted_a[i] != sorted_a[start]:
            ranks[order[start:i]] = (start + i - 1) / 2.0
            start = i
    return ranks


def read_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """``word1<TAB>word2<TAB>score`` lines (``#`` comments skipped). Raises DataError on a malformed line."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        try:
            out.append((parts[0].strip(), parts[1].strip(), float(parts[2])))
        except (IndexError, ValueError):
            raise DataError(f"{path}, line {n}: expected 'word1<TAB>word2<TAB>score', got {line[:80]!r}") from None
    return out


def word_pairs(vectors: WordVectors, pairs: Sequence[tuple[str, str, float]], *,
               restrict_vocab: int = 300_000) -> dict[str, float]:
    """Spearman's rho of cosine similarity against the human scores over the pairs whose words are known.

    Returns ``{"spearman", "pairs", "oov"}`` (pairs used, pairs skipped); spearman is NaN if < 2 pairs.
    """
    known = {w: i for i, w in enumerate(vectors.words[:restrict_vocab])}
    model, human, oov = [], [], 0
    for a, b, score in pairs:
        ia, ib = known.get(a.lower()), known.get(b.lower())
        if ia is None or ib is None:
            oov += 1
            continue
        model.append(float(vectors.unit[ia] @ vectors.unit[ib]))
        human.append(score)
    rho = spearman(model, human) if len(model) >= 2 else float("nan")
    return {"spearman": rho, "pairs": float(len(model)), "oov": float(oov)}


def read_analogies(path: str | Path) -> list[tuple[str, tuple[str, str, str, str]]]:
    """``(section, (a, b, c, d))`` of a ``questions-words.txt`` file (lower-cased)."""
    section, out = "", []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        if not line.strip():
            continue
        words = line.lower().split()
        if len(words) != 4:
            raise DataError(f"{path}, line {n}: an analogy needs 4 words, got {line[:80]!r}")
        out.append((section, (words[0], words[1], words[2], words[3])))
    return out


def analogies(vectors: WordVectors, questions: Sequence[tuple[str, tuple[str, str, str, str]]], *,
              restrict_vocab: int = 300_000, batch: int = 2048) -> dict[str, float]:
    """3CosAdd accuracy: for ``a:b::c:d`` predict the word nearest (cosine) to ``unit(b) - unit(a) + unit(c)``
    among the ``restrict_vocab`` most frequent words other than a, b, c.

    Returns ``{"accuracy", "correct", "asked", "skipped"}`` plus ``"<section>/accuracy"`` per section.
    """
    limit = min(restrict_vocab, len(vectors))
    known = {w: i for i, w in enumerate(vectors.words[:limit])}
    asked = [(sec, [known[w] for w in q]) for sec, q in questions if all(w in known for w in q)]
    skipped = len(questions) - len(asked)
    unit = torch.from_numpy(vectors.unit[:limit])
    correct_by: dict[str, list[int]] = {}
    correct = 0
    for start in range(0, len(asked), batch):
        part = asked[start:start + batch]
        ids = torch.tensor([q for _, q in part], dtype=torch.long)
        query = unit[ids[:, 1]] - unit[ids[:, 0]] + unit[ids[:, 2]]
        sims = query @ unit.T
        rows = torch.arange(len(part))
        for col in range(3):
            sims[rows, ids[:, col]] = -float("inf")
        hit = (sims.argmax(1) == ids[:, 3]).tolist()
        for (sec, _), ok in zip(part, hit):
            correct_by.setdefault(sec, [0, 0])
            correct_by[sec][0] += int(ok)
            correct_by[sec][1] += 1
            correct += int(ok)
    out = {"accuracy": correct / len(asked) if asked else float("nan"), "correct": float(correct),
           "asked": float(len(asked)), "skipped": float(skipped)}
    for sec, (ok, n) in correct_by.items():
        out[f"{sec}/accuracy"] = ok / n
    return out


def vectors_of(pipeline: Any, role: str | None = None) -> WordVectors:
    """The :class:`WordVectors` of a pipeline's ``word2vec.embedding`` encoder (input vectors)."""
    from .modules import find_word_encoder

    _, enc = find_word_encoder(pipeline.encoders, role)
    return WordVectors(enc.vocabulary.words, enc.weight.detach().float().cpu().numpy(), enc.vocabulary.counts)


def _short(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


class WordSimilarity(Evaluator):
    """``word2vec.word-similarity``: ``<set>/spearman``, ``<set>/pairs`` and ``<set>/oov`` per set."""

    def __init__(self, params: WordSimilarityParams) -> None:
        self.params = params
        self.sets = {name: read_pairs(eval_file(PAIR_FILES[name])) for name in params.sets}
        for f in params.files:
            self.sets[Path(f).stem] = read_pairs(f)

    def evaluate(self, pipeline: Any, dataset: Any, ctx: Any) -> dict[str, float]:
        vectors = vectors_of(pipeline, self.params.role)
        out = {}
        for name, pairs in self.sets.items():
            for key, value in word_pairs(vectors, pairs, restrict_vocab=self.params.restrict_vocab).items():
                out[f"{name}/{key}"] = value
        return out


class Analogy(Evaluator):
    """``word2vec.analogy``: ``analogy/<N>/accuracy`` (plus correct, asked, skipped) per ``restrict_vocab``."""

    def __init__(self, params: AnalogyParams) -> None:
        self.params = params
        self.questions = read_analogies(params.questions or eval_file("questions-words.txt"))

    def evaluate(self, pipeline: Any, dataset: Any, ctx: Any) -> dict[str, float]:
        vectors = vectors_of(pipeline, self.params.role)
        out = {}
        for limit in self.params.restrict_vocab:
            res = analogies(vectors, self.questions, restrict_vocab=limit)
            for key in ("accuracy", "correct", "asked", "skipped"):
                out[f"analogy/{_short(limit)}/{key}"] = res[key]
        return out


def build_word_similarity(params: WordSimilarityParams, ctx: Any) -> WordSimilarity:
    return WordSimilarity(params)


def build_analogy(params: AnalogyParams, ctx: Any) -> Analogy:
    return Analogy(params)
