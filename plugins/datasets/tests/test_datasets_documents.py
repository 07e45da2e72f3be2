"""``datasets.documents``: the sentence-per-line file format, the split by document, the named sources."""

from __future__ import annotations

import pytest

from cl_core.errors import DataError
from cl_core.testing import DatasetContract
from cl_datasets.documents import DocumentsDataset, read_document_file, split_documents
from cl_datasets.params import DocumentsParams
from cl_datasets.wiki import Document

TEXT = "First one.\nSecond one.\n\n  \nAlone here.\n\n\nThird doc A.\n  Third doc B.  \nThird doc C.\n"


def _file(tmp_path, text=TEXT, name="docs.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_file_format_blank_and_whitespace_lines_separate_documents(tmp_path):
    docs = read_document_file(_file(tmp_path))
    assert [d.sentences for d in docs] == [("First one.", "Second one."), ("Alone here.",),
                                           ("Third doc A.", "Third doc B.", "Third doc C.")]
    assert docs[2].text == "Third doc A. Third doc B. Third doc C."
    assert [d.title for d in docs] == ["docs.txt#0", "docs.txt#1", "docs.txt#2"]


def test_empty_or_blank_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="holds no sentence"):
        read_document_file(_file(tmp_path, "\n \n\n"))


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nalso fine\n\xff broken\n")
    with pytest.raises(DataError, match=r"bad.txt:3: not UTF-8"):
        read_document_file(path)


def test_missing_source_file_is_rejected_by_the_params(tmp_path):
    with pytest.raises(ValueError, match="wiki-leads"):
        DocumentsParams(source=str(tmp_path / "nope.txt"))


def _docs(n):
    return [Document(title=f"t{i}", text=f"s{i}a. s{i}b.", sentences=(f"s{i}a.", f"s{i}b.")) for i in range(n)]


def test_split_is_by_document_seeded_and_order_free():
    docs = _docs(200)
    train, held = split_documents(docs, 0.1, seed=0)
    assert len(held) == 20 and len(train) == 180
    assert not {d.title for d in train} & {d.title for d in held}
    again_train, again_held = split_documents(list(reversed(docs)), 0.1, seed=0)
    assert {d.title for d in again_held} == {d.title for d in held}  # order does not matter
    _, other = split_documents(docs, 0.1, seed=1)
    assert {d.title for d in other} != {d.title for d in held}  # the seed does


def test_duplicate_documents_land_on_the_same_side():
    docs = _docs(50)
    docs = docs + docs[:25]  # every one of the first 25 twice
    train, held = split_documents(docs, 0.3, seed=0)
    held_titles = {d.title for d in held}
    assert held_titles and not held_titles & {d.title for d in train}


def test_dataset_from_file_has_train_and_heldout_without_shared_sentences(tmp_path):
    lines = "\n\n".join(f"Doc {i} first.\nDoc {i} second." for i in range(30))
    ds = DocumentsDataset(DocumentsParams(source=str(_file(tmp_path, lines)), holdout=0.2))
    splits = ds.splits()
    assert set(splits) == {"train", "heldout"}
    assert len(splits["train"]) == 24 and len(splits["heldout"]) == 6
    train_sents = {s for d in splits["train"].documents for s in d.sentences}
    held_sents = {s for d in splits["heldout"].documents for s in d.sentences}
    assert not train_sents & held_sents
    got = splits["heldout"].get([0])
    assert set(got) == {"title", "text", "sentences", "topic"} and len(got["sentences"][0]) == 2
    assert splits["train"].labels is None  # a plain file has no topics
    assert splits["train"].num_consecutive_pairs == 24


def test_a_single_document_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="at least 2"):
        DocumentsDataset(DocumentsParams(source=str(_file(tmp_path, "Only one.\nStill one.\n")), holdout=0.0))


def test_lee_background_source():
    pytest.importorskip("gensim")
    ds = DocumentsDataset(DocumentsParams(source="lee-background", holdout=0.1))
    train, held = ds.splits()["train"], ds.splits()["heldout"]
    assert len(train) + len(held) == 300 and len(held) == 30
    assert train.num_consecutive_pairs + held.num_consecutive_pairs > 2000


def test_wiki_leads_have_topics_as_labels():
    ds = DocumentsDataset(DocumentsParams(source="wiki-leads", max_documents=40, holdout=0.25))
    train = ds.splits()["train"]
    assert len(train) == 30 and train.class_names is not None and train.labels is not None
    assert train.class_names[int(train.labels[0])] == train.documents[0].topic


class TestDocumentsContract(DatasetContract):
    name = "datasets.documents"

    @pytest.fixture
    def params(self, tmp_path):
        lines = "\n\n".join(f"Doc {i} first.\nDoc {i} second." for i in range(10))
        return DocumentsParams(source=str(_file(tmp_path, lines)), holdout=0.3)
