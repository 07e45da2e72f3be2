"""NSP pairs: true next = the following sentence, random = another document's sentence (case 8), balance,
determinism, and the documents that cannot give pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cl_core.errors import DataError
from cl_core.testing import SamplerContract
from cl_bert_nsp.nsp_pairs import IS_NEXT, RANDOM, NSPPairSampler, SentenceIndex
from cl_bert_nsp.params import NSPPairsParams
from cl_datasets.documents import DocumentSource
from cl_datasets.wiki import Document


def _source(lengths: list[int]) -> DocumentSource:
    docs = [Document(title=f"d{i}", text="", sentences=tuple(f"d{i}s{j}" for j in range(n)))
            for i, n in enumerate(lengths)]
    return DocumentSource(docs)


def _doc(sentence: str) -> int:
    return int(sentence[1 : sentence.index("s")])


def _all_pairs(source, batch_size=8, seed=0, p=0.5):
    sampler = NSPPairSampler(batch_size, p, drop_last=False)
    out = []
    for batch in sampler.batches(source, generator=torch.Generator().manual_seed(seed)):
        assert batch.labels.dtype == torch.long and len(batch.labels) == len(batch.inputs["pair"])
        out += list(zip(batch.inputs["pair"], batch.labels.tolist(), strict=True))
    return out


def test_is_next_pairs_are_consecutive_and_random_pairs_cross_documents():
    source = _source([5, 1, 3, 8, 2, 1, 6])
    pairs = _all_pairs(source)
    assert len(pairs) == source.num_consecutive_pairs == 4 + 0 + 2 + 7 + 1 + 0 + 5
    for pair, label in pairs:
        da, db = _doc(pair.a), _doc(pair.b)
        ia, ib = int(pair.a.split("s")[-1]), int(pair.b.split("s")[-1])
        if label == IS_NEXT:
            assert da == db and ib == ia + 1
        else:
            assert label == RANDOM and da != db
    firsts = {p.a for p, _ in pairs}
    assert "d1s0" not in firsts and "d5s0" not in firsts  # one-sentence documents give no A ...


def test_random_sentences_are_uniform_over_other_documents_including_single_sentence_ones():
    source = _source([3, 1, 1, 1])  # anchors only in d0; negatives must be d1s0, d2s0, d3s0
    seen = []
    for seed in range(300):
        seen += [p.b for p, label in _all_pairs(source, seed=seed) if label == RANDOM]
    values, counts = np.unique(seen, return_counts=True)
    assert list(values) == ["d1s0", "d2s0", "d3s0"]  # ... but they are drawn as random next sentences
    assert counts.min() / counts.max() > 0.8


def test_labels_are_balanced():
    source = _source([20] * 50)
    labels = np.array([label for _, label in _all_pairs(source, batch_size=50)])
    assert abs(labels.mean() - 0.5) < 0.05
    skewed = np.array([label for _, label in _all_pairs(source, batch_size=50, p=0.2)])
    assert abs(skewed.mean() - 0.2) < 0.05


@pytest.mark.parametrize("lengths", [[10], [10, 0], [0, 0]])
def test_a_single_document_is_a_clear_error_never_same_document_negatives(lengths):
    with pytest.raises(DataError, match="another"):
        NSPPairSampler(4).num_batches(_source(lengths))


def test_documents_without_two_sentences_give_no_pairs():
    with pytest.raises(DataError, match="no 'is next' pair"):
        NSPPairSampler(1).num_batches(_source([1, 1, 1]))


def test_too_few_pairs_for_a_batch():
    with pytest.raises(DataError, match="fewer than batch_size"):
        NSPPairSampler(64).num_batches(_source([3, 3]))
    assert NSPPairSampler(64, drop_last=False).num_batches(_source([3, 3])) == 1


def test_source_without_sentences_is_rejected():
    class Plain(DocumentSource):
        fields = ("text",)

    with pytest.raises(DataError, match="'sentences' field"):
        SentenceIndex.from_source(Plain([]))


def test_empty_sentences_are_skipped():
    index = SentenceIndex([["a", "", "  ", "b"], ["c"]])
    assert index.sentences == ["a", "b", "c"] and index.anchors.tolist() == [0]


def test_batches_depend_on_the_generator_and_resume_with_start():
    source = _source([6] * 10)
    sampler = NSPPairSampler(5)
    full = list(sampler.batches(source, generator=torch.Generator().manual_seed(3)))
    tail = list(sampler.batches(source, generator=torch.Generator().manual_seed(3), start=2))
    assert [b.inputs for b in full[2:]] == [b.inputs for b in tail]
    assert all(torch.equal(x.labels, y.labels) for x, y in zip(full[2:], tail, strict=True))
    seeds = {p.seed for b in full for p in b.inputs["pair"]}
    assert len(seeds) == 50  # every pair has its own masking seed


class TestPairsContract(SamplerContract):
    name = "bert-nsp.pairs"

    @pytest.fixture
    def params(self):
        return NSPPairsParams(batch_size=4)

    @pytest.fixture
    def source(self):
        return _source([4, 5, 1, 6, 3])
