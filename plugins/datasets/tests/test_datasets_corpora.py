"""datasets.text-corpus: the tokenizer, plain-text files, GCIDE/WordNet parsing on tiny fixtures, errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cl_core.errors import DataError
from cl_datasets import corpora


def test_tokenizer():
    assert corpora.tokenize("Don't stop at 1913! Café-au-lait, U.S.A.") == \
        ["don't", "stop", "at", "1913", "caf", "au", "lait", "u", "s", "a"]


def test_encode_and_merge_share_one_word_list():
    a = corpora.encode(["the cat sat", "", "the dog"])
    b = corpora.encode(["a dog and the cat"])
    assert a.num_sentences == 2 and a.offsets.tolist() == [0, 3, 5]
    m = corpora.merge([a, b])
    words = [m.words[i] for i in m.ids]
    assert words == ["the", "cat", "sat", "the", "dog", "a", "dog", "and", "the", "cat"]
    assert m.offsets.tolist() == [0, 3, 5, 10]


def test_plain_text_files_and_folders(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("second file\n", encoding="utf-8")
    (tmp_path / "d" / "a.txt").write_text("First line.\n\nSecond line here\n", encoding="utf-8")
    (tmp_path / "d" / ".hidden").write_text("skipped\n", encoding="utf-8")
    corpus = corpora.load_corpus(paths=[str(tmp_path / "d")])
    assert len(corpus) == 3 and corpus.get([2])["text"] == [["second", "file"]]
    assert corpus.counts[corpus.words.index("line")] == 2


def test_bad_files_are_clear_errors(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt: not UTF-8 text .*line 2"):
        corpora.load_corpus(paths=[str(bad)])
    with pytest.raises(DataError, match="does not exist"):
        corpora.load_corpus(paths=[str(tmp_path / "nope")])
    empty = tmp_path / "empty.txt"
    empty.write_text("?!\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        corpora.load_corpus(paths=[str(empty)])


def test_gcide_cleanup_and_wordnet_glosses(tmp_path):
    gz = tmp_path / "gcide.dict.dz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write("Abandon \\A*ban\"don\\, v. t. To give up wholly. [1913 Webster]\n\nToo short\n\n"
                 "Dog \\Dog\\, n. A domestic animal. [PJC]\n")
    paras = list(corpora.gcide_paragraphs(gz))
    assert len(paras) == 2
    assert corpora.tokenize(paras[0]) == ["abandon", "v", "t", "to", "give", "up", "wholly"]
    wn = tmp_path / "wordnet"
    wn.mkdir()
    for part in corpora.WORDNET_PARTS:
        (wn / f"data.{part}").write_text(
            "  1 This software and database is being provided\n"
            f"00001740 03 n 01 entity 0 000 | that which is perceived to exist ({part})\n", encoding="latin-1")
    enc = corpora.load_source("wordnet", wordnet_dir=str(wn), use_cache=False)
    assert enc.num_sentences == 4 and enc.words[:3] == ["that", "which", "is"]


def test_missing_debian_package_names_the_apt_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(corpora, "GCIDE_FILE", "nonexistent/dir/gcide.dict.dz")
    with pytest.raises(DataError, match="apt-get install dict-gcide"):
        corpora.load_source("gcide", fetch=False)
    with pytest.raises(DataError, match="does not exist"):
        corpora.debian_file("dict-gcide", "x", explicit=tmp_path / "missing.dz")


def test_wiki_leads_source_with_limit():
    enc = corpora.load_source("wiki-leads", limit=20, use_cache=False)
    assert enc.num_sentences == 20 and enc.num_tokens > 500
    assert enc.ids.dtype == np.int32
