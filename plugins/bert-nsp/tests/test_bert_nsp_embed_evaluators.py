"""Text-embedding evaluators: metric definitions on hand-made scores, and each evaluator on real data with
stand-in embedders whose right answer is known."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from cl_bert_nsp import embed_params as ep
from cl_bert_nsp import evaluators as ev
from cl_core.components import EvalContext
from cl_core.errors import DataError, EvaluationWarning
from cl_datasets.params import TextPairsParams
from cl_datasets.text_pairs import TextPairsDataset
from cl_datasets.wiki import Document, load_wiki_leads

CTX = EvalContext(device=torch.device("cpu"), batch_size=64)


class FakePipeline:
    """``embed`` maps each text through ``fn`` (text -> vector); one role "query"."""

    def __init__(self, fn):
        self.fn = fn
        self.encoders = {"query": torch.nn.Linear(1, 1)}
        self.evaluators = []

    def embed(self, role, items, batch_size=256):
        return torch.stack([torch.as_tensor(self.fn(t), dtype=torch.float32) for t in items])


def bag_of_words(dim: int = 4096):
    """Hashed bag of lower-cased words: a lexical embedder (knows nothing about meaning)."""
    import hashlib
    import re

    def fn(text: str) -> np.ndarray:
        v = np.zeros(dim)
        for w in re.findall(r"[a-z0-9]+", text.lower()):
            v[int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little") % dim] += 1
        return v if v.any() else np.ones(dim)

    return fn


def random_embedder(dim: int = 32):
    cache: dict[str, np.ndarray] = {}

    def fn(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = np.random.default_rng(len(cache) + 7).normal(size=dim)
        return cache[text]

    return fn


@pytest.fixture(scope="module")
def wiki():
    try:
        docs = load_wiki_leads(limit=400)
    except DataError as exc:
        pytest.skip(str(exc))
    return TextPairsDataset(TextPairsParams(holdout=0.2, split_seed=0), documents=docs)


@pytest.fixture(autouse=True)
def _fresh_cache():
    ev.clear_cache()
    yield
    ev.clear_cache()


# -- metric definitions -------------------------------------------------------------------------------


def test_ranking_metrics_single_relevant_at_rank_two():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]])
    relevant = torch.tensor([[False, True, False], [False, False, True]])
    m = ev.ranking_metrics(scores, relevant, ks=(1, 2))
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(1.0)
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0) / 2)
    assert m["map@100"] == pytest.approx(0.75)


def test_ranking_metrics_several_relevant():
    # relevant at ranks 1 and 3 of 4
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.7]])
    relevant = torch.tensor([[True, False, True, False]])
    m = ev.ranking_metrics(scores, relevant, ks=(1, 3))
    assert m["recall@1"] == pytest.approx(0.5) and m["recall@3"] == pytest.approx(1.0)
    assert m["map@100"] == pytest.approx((1 + 2 / 3) / 2)
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert float(ev.average_precision(scores, relevant)[0]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="at least one relevant"):
        ev.ranking_metrics(scores, torch.zeros_like(relevant))


def test_best_threshold_and_f1():
    scores = np.array([0.95, 0.9, 0.8, 0.6, 0.5, 0.2])
    labels = np.array([True, True, False, True, False, False])
    threshold, f1 = ev.best_threshold(scores, labels)
    # cut after 0.6: tp 3, predicted 4 -> F1 = 6 / 7 (better than after 0.9: 4 / 5)
    assert f1 == pytest.approx(6 / 7) and 0.5 < threshold < 0.6
    assert ev.f1_at(scores, labels, threshold) == pytest.approx((0.75, 1.0, 6 / 7))


# -- data made for the evaluators ---------------------------------------------------------------------


def sample_docs() -> list[Document]:
    out = []
    for i in range(12):
        sentences = tuple(f"Item {i} fact {j} about topic {i % 3}." for j in range(1 + i % 5))
        out.append(Document(title=f"Item {i}", text=" ".join(sentences), sentences=sentences, topic=f"t{i % 3}"))
    return out


def test_dedup_pairs_are_real_edits():
    docs = sample_docs()
    pairs = ev.dedup_pairs(docs, seed=1)
    by_doc = {d.text: d for d in docs}
    positives = [(a, b) for a, b, dup, _ in pairs if dup]
    assert len(positives) == len(docs)
    kinds = set()
    for a, b in positives:
        d = by_doc[a]
        if a == b:
            kinds.add("exact")
        elif len(b) < len(a):
            kinds.add("drop")
            assert sum(s in b for s in d.sentences) == len(d.sentences) - 1
        else:
            kinds.add("swap")
            assert sorted(s for s in d.sentences if s in b) == sorted(d.sentences)
    assert kinds == {"exact", "drop", "swap"}
    half_of = {a: half for a, _, dup, half in pairs if dup}
    for a, b, dup, half in pairs:
        if not dup and a in by_doc and b in by_doc:
            assert half_of[a] == half_of[b] == half  # pairs never cross the halves
            mates = [d for d in docs if d.text != a and half_of[d.text] == half and d.topic == by_doc[a].topic]
            assert by_doc[b].topic == by_doc[a].topic or not mates  # same topic whenever the half has one
    halves = [d for d in docs if len(d.sentences) >= 4]
    assert sum(1 for a, b, dup, _ in pairs if not dup and a not in by_doc) == len(halves)
    assert ev.dedup_pairs(docs, seed=1) == pairs  # seeded


def test_reranking_lists_are_fixed_and_hard():
    docs = sample_docs()
    lists = ev.reranking_lists(docs, negatives=3, seed=0, candidates="sentences", positives=2)
    assert lists == ev.reranking_lists(docs, negatives=3, seed=0, candidates="sentences", positives=2)
    for title, cands, flags in lists:
        own = next(d for d in docs if d.title == title)
        assert sum(flags) == min(2, len(own.sentences))
        for c, f in zip(cands, flags):
            assert (c in own.sentences) == f
            if not f:
                assert f"about topic {own.topic[1]}" in c  # same-topic negative
    leads = ev.reranking_lists(docs, negatives=2, seed=0)
    assert all(sum(f) == 1 and len(c) == 3 for _, c, f in leads)


# -- evaluators on real held-out Wikipedia leads ------------------------------------------------------


def test_retrieval_lexical_embedder_finds_titles_but_not_masked_titles(wiki):
    bow = FakePipeline(bag_of_words())
    plain = ev.RetrievalEvaluator(ep.RetrievalParams()).evaluate(bow, wiki, CTX)
    masked = ev.RetrievalEvaluator(ep.RetrievalParams(query="title-masked")).evaluate(bow, wiki, CTX)
    rand = ev.RetrievalEvaluator(ep.RetrievalParams()).evaluate(FakePipeline(random_embedder()), wiki, CTX)
    assert set(plain) == {"retrieval/recall@1", "retrieval/recall@5", "retrieval/recall@10", "retrieval/mrr@10",
                          "retrieval/ndcg@10", "retrieval/map@100"}
    assert plain["retrieval/recall@10"] > 0.8
    assert masked["retrieval-title-masked/recall@1"] < plain["retrieval/recall@1"] - 0.2
    assert rand["retrieval/recall@1"] < 0.1  # 80 documents: chance is 1/80


def test_retrieval_leaves_out_recall_at_k_not_below_the_number_of_documents():
    docs = [Document(title=f"Title {w}", text=f"Title {w} is a {w} thing.", sentences=(f"Title {w} is a thing.",))
            for w in ("alpha", "beta", "gamma", "delta")]
    with pytest.warns(EvaluationWarning, match=r"^bert-nsp.retrieval \(retrieval, 4 documents\): K = 5, 10 not "
                                               r"reported: with 4 candidates to rank, any model would score 1$"):
        got = ev.RetrievalEvaluator(ep.RetrievalParams()).measure(FakePipeline(bag_of_words()), "query", docs, 64)
    assert set(got) == {"recall@1", "mrr@10", "ndcg@10", "map@100"}
    assert got["recall@1"] == 1.0  # each title shares its own words with its lead only


def test_clustering_and_classification_with_topic_oracle(wiki):
    docs = wiki.heldout_documents
    names = sorted({d.topic for d in docs})
    topic_of = {d.text: names.index(d.topic) for d in docs}

    def oracle(text):
        v = np.full(len(names), 0.01)
        v[topic_of[text]] = 1.0
        return v

    oracle_p = FakePipeline(oracle)
    assert ev.ClusteringEvaluator(ep.ClusteringParams()).evaluate(oracle_p, wiki, CTX)["clustering/v_measure"] == \
        pytest.approx(1.0)
    acc = ev.ClassificationEvaluator(ep.ClassificationParams(C=1000.0)).evaluate(oracle_p, wiki, CTX)
    assert acc["classification/accuracy"] > 0.85  # (a topic missing from the probe's half cannot be learnt)
    rand_acc = ev.ClassificationEvaluator(ep.ClassificationParams(C=1000.0)).evaluate(
        FakePipeline(random_embedder()), wiki, CTX)
    assert rand_acc["classification/accuracy"] < 0.5
    rand = FakePipeline(random_embedder())
    assert ev.ClusteringEvaluator(ep.ClusteringParams()).evaluate(rand, wiki, CTX)["clustering/v_measure"] < 0.5


def test_dedup_and_reranking_on_wiki(wiki):
    bow = FakePipeline(bag_of_words())
    d = ev.DedupEvaluator(ep.DedupParams()).evaluate(bow, wiki, CTX)
    assert set(d) == {"dedup/f1", "dedup/precision", "dedup/recall", "dedup/threshold", "dedup/ap"}
    assert 0.5 < d["dedup/f1"] <= 1.0
    rand = ev.DedupEvaluator(ep.DedupParams()).evaluate(FakePipeline(random_embedder()), wiki, CTX)
    assert rand["dedup/ap"] < d["dedup/ap"]
    r = ev.RerankingEvaluator(ep.RerankingParams()).evaluate(bow, wiki, CTX)
    r_rand = ev.RerankingEvaluator(ep.RerankingParams()).evaluate(FakePipeline(random_embedder()), wiki, CTX)
    assert 0 <= r_rand["reranking/map"] < r["reranking/map"] <= 1


def test_lee_similarity_tfidf_vs_random():
    pytest.importorskip("gensim")
    from sklearn.feature_extraction.text import TfidfVectorizer

    lee = ev.LeeSimilarityEvaluator(ep.LeeSimilarityParams())
    texts, human = lee.data()
    assert len(texts) == 50 and human.shape == (50, 50)
    tfidf = TfidfVectorizer().fit(texts)
    p = FakePipeline(lambda t: tfidf.transform([t]).toarray()[0])
    got = lee.evaluate(p, None, CTX)
    assert 0.35 < got["lee/pearson"] < 0.6  # TF-IDF cosine: ~0.45 (a lexical baseline)
    assert abs(lee.evaluate(FakePipeline(random_embedder()), None, CTX)["lee/pearson"]) < 0.15


def test_errors_are_clear(wiki):
    bow = FakePipeline(bag_of_words())
    with pytest.raises(DataError, match="split"):
        ev.RetrievalEvaluator(ep.RetrievalParams(splits=("test",))).evaluate(bow, wiki, CTX)
    with pytest.raises(DataError, match="fields title, text and sentences"):
        ev.RetrievalEvaluator(ep.RetrievalParams(splits=("train",))).evaluate(bow, wiki, CTX)
    one_topic = [Document(title=f"D{i}", text=f"Text {i}.", sentences=(f"Text {i}.",), topic="x") for i in range(6)]
    ds = TextPairsDataset(TextPairsParams(holdout=0.5), documents=one_topic)
    with pytest.raises(DataError, match="at least 2 topics"):
        ev.ClusteringEvaluator(ep.ClusteringParams()).evaluate(bow, ds, CTX)
    with pytest.raises(KeyError, match="no encoder for role"):
        ev.ClusteringEvaluator(ep.ClusteringParams(role="image")).evaluate(bow, ds, CTX)


def test_embedding_cache_follows_weight_updates():
    enc = torch.nn.Linear(3, 2)

    class P:
        encoders = {"query": enc}
        calls = 0

        def embed(self, role, items, batch_size=256):
            P.calls += 1
            x = torch.tensor([[float(len(t)), 1.0, 0.0] for t in items])
            return enc(x).detach()

    p = P()
    first = ev.embed_texts(p, "query", ["ab", "abc", "ab"])
    assert P.calls == 1 and torch.equal(first[0], first[2])
    ev.embed_texts(p, "query", ["abc"])
    assert P.calls == 1  # cached
    with torch.no_grad():
        enc.weight.add_(1.0)
    again = ev.embed_texts(p, "query", ["abc"])
    assert P.calls == 2 and not torch.allclose(again[0], first[1])


@pytest.mark.parametrize("name", ["retrieval", "reranking", "clustering", "classification", "dedup", "lee_similarity"])
def test_factories_check_the_role_against_the_spec(name):
    class Ctx:
        encoders = {"query": object(), "text": object()}

    params_cls = {"lee_similarity": ep.LeeSimilarityParams}.get(name) or getattr(ep, f"{name.capitalize()}Params")
    factory = getattr(ev, f"build_{name}")
    assert factory.__name__ == f"build_{name}"
    from cl_core.components import Evaluator

    assert isinstance(factory(params_cls(role="text"), Ctx()), Evaluator)
    with pytest.raises(ValueError, match="no encoder for role 'image'; the spec's roles are query, text"):
        factory(params_cls(role="image"), Ctx())
