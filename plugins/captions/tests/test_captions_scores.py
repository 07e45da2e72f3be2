"""The caption scores against values computed by hand on tiny corpora."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from cl_captions.scores import clip_score, coco_scores, exact_name_rate, names_concept, normalise_name

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java (apt-get install default-jre-headless)")


def scores(candidates, references, **kw):
    return coco_scores(candidates, references, tokenizer="python", meteor=False, **kw)


def test_bleu_of_an_exact_match_is_one():
    out = scores(["a red heart on white"], [["a red heart on white"]])
    for n in (1, 2, 3, 4):
        assert out[f"bleu{n}"] == pytest.approx(1.0, abs=1e-8)
    assert out["rouge_l"] == 1.0


def test_bleu_with_the_brevity_penalty_by_hand():
    # "a red heart" against "a big red heart": unigram precision 3/3, bigram 1/2 ("red heart"), c = 3, r = 4
    out = scores(["a red heart"], [["a big red heart"]])
    bp = math.exp(1 - 4 / 3)
    assert out["bleu1"] == pytest.approx(bp, abs=1e-8)
    assert out["bleu2"] == pytest.approx(bp * math.sqrt(1 * 0.5), abs=1e-8)
    assert out["bleu3"] < 1e-4  # no trigram matches (pycocoevalcap's 1e-15 smoothing keeps it above 0)


def test_bleu_is_computed_at_corpus_level():
    # counts are summed over the corpus: p1 = (3 + 2) / (3 + 2), c = 5, r = 3 + 3, p2 = (2 + 0) / (2 + 1)
    out = scores(["a red heart", "a dog"], [["a red heart"], ["a big dog"]])
    bp = math.exp(1 - 6 / 5)
    assert out["bleu1"] == pytest.approx(bp, abs=1e-8)  # the mean of per-caption BLEU-1 would be (1 + e^-0.5) / 2
    assert out["bleu2"] == pytest.approx(bp * math.sqrt(2 / 3), abs=1e-8)


def test_rouge_l_by_hand():
    # LCS("a red heart", "a big red heart") = 3: P = 1, R = 3/4, F = (1 + 1.2^2) P R / (R + 1.2^2 P)
    p, r, b2 = 1.0, 0.75, 1.2**2
    assert scores(["a red heart"], [["a big red heart"]])["rouge_l"] == pytest.approx((1 + b2) * p * r / (r + b2 * p))


def test_cider_d_of_identical_corpora():
    corpus = ["a red heart on white", "a dog face with eyes", "two cats sit on a mat"]
    # identical TF-IDF vectors: cosine 1 for each n = 1..4, no length penalty, times 10
    assert scores(corpus, [[c] for c in corpus])["cider_d"] == pytest.approx(10.0)
    # a 3-word caption has no 4-grams: (1 + 1 + 1 + 0) / 4 * 10 = 7.5 for it, so the mean is (3 * 10 + 7.5) / 4
    longer = corpus + ["a big cat"]
    assert scores(longer, [[c] for c in longer])["cider_d"] == pytest.approx(9.375)
    # one image: every n-gram is in every reference set, IDF = log(1/1) = 0, so CIDEr-D is 0 (it needs a corpus)
    assert scores(["a red heart"], [["a red heart"]])["cider_d"] == 0.0


def test_empty_captions_and_several_references():
    out = scores(["", "a dog"], [["a red heart"], ["a dog", "the dog"]])
    assert all(math.isfinite(v) for v in out.values())
    # IDF from the two reference sets: "a" is in both (weight 0), "dog", "the", "a dog", "the dog" in one (log 2).
    # "a dog" vs "a dog": cosine 1 for n = 1, 2; vs "the dog": 1/sqrt(2) for n = 1 ("dog" alone), 0 for n = 2.
    # CIDEr-D of image 2 = 10 * mean_n(sum over its 2 references) / 2; the empty caption scores 0.
    image2 = 10 * ((1 + 1 / math.sqrt(2)) + (1 + 0) + 0 + 0) / 4 / 2
    assert out["cider_d"] == pytest.approx(image2 / 2)
    assert out["rouge_l"] == pytest.approx(0.5)  # 0 for the empty caption, 1 for the exact match


def test_bad_corpora_are_rejected():
    with pytest.raises(ValueError, match="no captions"):
        scores([], [])
    with pytest.raises(ValueError, match="2 captions but 1"):
        scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no references"):
        scores(["a"], [[]])


@needs_java
def test_meteor_and_the_java_tokenizer():
    corpus = ["a red heart on white", "a dog face with eyes", "two cats sit on a mat"]
    out = coco_scores(corpus, [[c] for c in corpus], tokenizer="ptb-java", meteor=True)
    assert out["meteor"] == pytest.approx(1.0)  # (one Java process takes ~10 s to start: one corpus only)


def test_meteor_is_left_out_without_java(monkeypatch):
    import cl_captions.tokenize as module

    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    out = coco_scores(["a dog"], [["a dog"]], tokenizer="auto", meteor=True)
    assert "meteor" not in out and "bleu1" in out


@pytest.mark.parametrize("caption, name, match, named", [
    ("a red heart", "red heart", "contains", True),
    ("A RED HEART!", "red heart", "contains", True),
    ("red heart", "red heart", "contains", True),
    ("a red hearts", "red heart", "contains", False),       # whole words only
    ("bored heart", "red heart", "contains", False),
    ("heart, red", "red heart", "contains", False),         # the words in order
    ("flag: germany", "flag: germany", "contains", True),   # punctuation -> space on both sides
    ("the flag of germany", "flag: germany", "contains", False),
    ("man\u2019s shoe", "man\u2019s shoe", "contains", True),
    ("mans shoe", "man\u2019s shoe", "contains", False),
    ("a red heart", "red heart", "equals", False),
    ("Red heart.", "red heart", "equals", True),
    ("anything", "", "contains", False),
])
def test_exact_name_cases(caption, name, match, named):
    assert names_concept(caption, name, match) is named


def test_exact_name_rate_and_normalisation():
    assert normalise_name("  Flag:  Germany! ") == "flag germany"
    assert exact_name_rate(["a red heart", "a dog", "cat face"], ["red heart", "cat", "cat face"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        exact_name_rate(["a"], ["a", "b"])


def test_clip_score_by_hand():
    items = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    captions = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 2.0]])
    # cosines 1/sqrt(2), -1 (clipped to 0), 1; w = 2.5
    expected = (2.5 / math.sqrt(2) + 0.0 + 2.5) / 3
    assert clip_score(items, captions) == pytest.approx(expected)
    assert clip_score(items, captions, weight=1.0) == pytest.approx(expected / 2.5)
    with pytest.raises(ValueError):
        clip_score(items, captions[:2])
