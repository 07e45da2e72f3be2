"""Word vectors: queries, unknown words, the word2vec text/binary formats (checked with gensim), evaluators."""

from __future__ import annotations

import numpy as np
import pytest

from cl_core.errors import DataError
from cl_word2vec.evaluation import analogies, spearman, word_pairs
from cl_word2vec.vectors import WordVectors
from cl_word2vec.vocab import UnknownWordError, Vocabulary


def _vectors():
    words = ["king", "queen", "man", "woman", "apple", "pear", "naïve"]
    royal, male, fruit = np.eye(3, 8)[0], np.eye(3, 8)[1], np.eye(3, 8)[2]
    noise = np.random.default_rng(0).normal(0, 0.01, (7, 8))
    vec = np.stack([royal + male, royal - male, male, -male, fruit, fruit + 0.3 * royal, royal + fruit]) + noise
    return WordVectors(words, vec.astype(np.float32), np.arange(7, 0, -1))


def test_queries_and_unknown_word():
    wv = _vectors()
    assert wv.most_similar("apple", topn=1)[0][0] == "pear"
    assert wv.most_similar(positive=["king", "woman"], negative=["man"], topn=1)[0][0] == "queen"
    assert wv.similarity("king", "queen") == pytest.approx(float(wv.unit[0] @ wv.unit[1]))
    with pytest.raises(KeyError) as err:
        wv["kings"]
    assert isinstance(err.value, UnknownWordError)
    assert "king" in str(err.value) and "not in the vocabulary" in str(err.value)


def test_vocabulary_min_count_and_order():
    vocab, mapping = Vocabulary.build(["a", "b", "c", "d"], np.array([3, 9, 1, 9]), min_count=2)
    assert vocab.words == ["b", "d", "a"]  # most frequent first, ties in first-seen order
    assert mapping.tolist() == [2, 0, -1, 1]
    vocab2, _ = Vocabulary.build(["a", "b", "c", "d"], np.array([3, 9, 1, 9]), min_count=1, max_vocab=2)
    assert vocab2.words == ["b", "d"]
    with pytest.raises(DataError, match="min_count = 10"):
        Vocabulary.build(["a", "b"], np.array([3, 9]), min_count=10)
    again = Vocabulary.from_bytes(vocab.to_bytes(), vocab.counts)
    assert again.words == vocab.words


def test_keep_probability_is_word2vec_formula():
    vocab = Vocabulary(["the", "rare"], np.array([9000, 10]))
    p = vocab.keep_probabilities(1e-3)
    t = 1e-3 * 9010
    assert p[0] == pytest.approx((np.sqrt(9000 / t) + 1) * t / 9000)
    assert p[1] == 1.0


@pytest.mark.parametrize("binary", [True, False])
def test_word2vec_format_round_trip_and_gensim(tmp_path, binary):
    wv = _vectors()
    path = wv.save_word2vec_format(tmp_path / ("v.bin" if binary else "v.txt"), binary=binary)
    back = WordVectors.load_word2vec_format(path)
    assert back.words == wv.words
    np.testing.assert_allclose(back.vectors, wv.vectors, rtol=1e-6 if not binary else 0)
    gensim = pytest.importorskip("gensim.models")
    kv = gensim.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert list(kv.index_to_key) == wv.words
    np.testing.assert_allclose(kv.vectors, wv.vectors, rtol=1e-6)


def test_truncated_binary_file_is_a_clear_error(tmp_path):
    path = _vectors().save_word2vec_format(tmp_path / "v.bin")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated"):
        WordVectors.load_word2vec_format(path, binary=True)


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    x = [1.0, 2.0, 2.0, 5.0, 3.0, 0.5]
    y = [2.0, 1.0, 4.0, 4.0, 6.0, 0.0]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_word_pairs_and_analogies_count_oov():
    wv = _vectors()
    res = word_pairs(wv, [("king", "man", 7.0), ("apple", "pear", 9.0), ("king", "apple", 1.0),
                          ("king", "zebra", 3.0)])
    assert res["pairs"] == 3 and res["oov"] == 1 and res["spearman"] == pytest.approx(1.0)
    q = [("s", ("man", "king", "woman", "queen")), ("s", ("man", "woman", "king", "queen")),
         ("s", ("man", "king", "zebra", "queen"))]
    out = analogies(wv, q)
    assert out["asked"] == 2 and out["skipped"] == 1 and out["correct"] == 2
    assert analogies(wv, q, restrict_vocab=3)["asked"] == 0  # "woman" is the 4th word
