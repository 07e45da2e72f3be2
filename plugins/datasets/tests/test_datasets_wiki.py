"""The Wikipedia-leads and Lee-corpus loaders read real installed data files, in a stable order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cl_core.errors import DataError
from cl_datasets.wiki import (
    load_lee,
    load_wiki_leads,
    lee_similarities,
    split_sentences,
    topics,
    wiki_leads_path,
)


def test_sentences_split_after_end_marks_before_a_capital():
    text = 'Paris is the capital. It had 2.1 million people in 2020! Why? "Because" it grew. e.g. not here.'
    assert split_sentences(text) == ("Paris is the capital.", "It had 2.1 million people in 2020!", "Why?",
                                     '"Because" it grew. e.g. not here.')
    assert split_sentences("  \n ") == ()


def test_the_installed_wiki_leads_have_ten_thousand_documents_and_twelve_topics():
    docs = load_wiki_leads()
    assert len(docs) == 10_033
    assert [d.title for d in docs[:50]] == sorted(d.title for d in docs[:50])
    names, labels = topics(docs)
    assert len(names) == 12 and "Mathematics" in names and labels.min() == 0
    pairs = sum(max(0, len(d.sentences) - 1) for d in docs)
    assert 26_000 < pairs < 27_000  # consecutive sentence pairs (data.md measured 26.5 K)


def test_a_local_leads_file_and_its_errors(tmp_path):
    good = tmp_path / "summaries_en-us.json"
    good.write_text(json.dumps({"B": {"title": "B", "extract": "One. Two.", "topic": "Arts"},
                                "A": {"title": "A", "extract": "Alpha here.", "description": "first"},
                                "Empty": {"title": "Empty", "extract": "  "}}))
    docs = load_wiki_leads(tmp_path)
    assert [(d.title, d.sentences, d.topic) for d in docs] == [("A", ("Alpha here.",), ""),
                                                               ("B", ("One.", "Two."), "Arts")]
    assert topics(docs)[1].tolist() == [-1, 0]
    with pytest.raises(DataError, match="does not exist"):
        wiki_leads_path(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(DataError, match="not a UTF-8 JSON"):
        load_wiki_leads(tmp_path / "bad.json")
    (tmp_path / "notext.json").write_text(json.dumps({"X": {"title": "X"}}))
    with pytest.raises(DataError, match="'X' has no 'extract'"):
        load_wiki_leads(tmp_path / "notext.json")


def test_lee_corpora_and_the_human_similarity_matrix():
    background = load_lee()
    assert len(background) == 300 and all(d.sentences for d in background)
    assert len(load_lee("lee.cor")) == 50
    sims = lee_similarities()
    # the file stores the upper triangle only (below the diagonal is 0): compare pairs i < j
    assert sims.shape == (50, 50) and np.allclose(np.diag(sims), 1.0) and (np.tril(sims, -1) == 0).all()
    upper = sims[np.triu_indices(50, 1)]
    assert 0 < upper.min() and upper.max() <= 1
