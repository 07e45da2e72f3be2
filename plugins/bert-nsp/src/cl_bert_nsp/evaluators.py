"""Text-embedding evaluators on held-out documents: retrieval, reranking, clustering, classification,
near-duplicate detection, and document similarity against human judgments (Lee corpus).

Every evaluator embeds texts with one encoder role of the pipeline (default: the spec's first role),
L2-normalises the embeddings and scores with the cosine. The documents are read from an evaluation split
of the dataset (every split except "train" by default) that has the fields ``title``, ``text``,
``sentences`` and ``topic`` (``datasets.documents``, or the "heldout" split of ``datasets.text-pairs``).
Metrics are named ``<task>/<metric>`` for the split "heldout" and ``<task>/<split>/<metric>`` otherwise.

Metric definitions follow sentence-transformers' evaluators (``InformationRetrievalEvaluator``,
``RerankingEvaluator``) and MTEB (Muennighoff et al. 2023: clustering v-measure, logistic-regression
probe); ranking ties are broken by candidate order after a seeded shuffle (reranking) or corpus order
(retrieval), as ``torch.sort(stable=True)`` does.

Embeddings are cached per encoder and weight state (``Tensor._version`` of its parameters changes on every
optimizer step or ``load_state_dict``), so evaluators sharing the held-out leads embed them once.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cl_core.api import DataError, DataSource, Dataset, EvalContext, Evaluator, reportable_ks
from cl_datasets.wiki import Document

from . import embed_params as ep

# -- documents of a split -----------------------------------------------------------------------------


def split_documents_of(source: DataSource) -> list[Document]:
    """The documents of an evaluation split: its ``documents`` attribute, or rebuilt from the fields
    ``title``, ``text``, ``sentences`` (and optional ``topic``).

    Raises:
        DataError: the split has no such fields (e.g. a split of text pairs).
    """
    docs = getattr(source, "documents", None)
    if docs is not None and all(isinstance(d, Document) for d in docs):
        return list(docs)
    fields = tuple(getattr(source, "fields", ()))
    if not {"title", "text", "sentences"} <= set(fields):
        raise DataError(f"the text-embedding evaluators need a split of documents with the fields title, text and "
                        f"sentences (datasets.documents or the 'heldout' split of datasets.text-pairs); this split "
                        f"has {', '.join(fields) or 'no fields'}")
    got = source.get(range(len(source)))
    topics = got.get("topic", [""] * len(source))
    return [Document(title=t, text=x, sentences=tuple(s), topic=str(tp or ""))
            for t, x, s, tp in zip(got["title"], got["text"], got["sentences"], topics)]


def document_splits(dataset: Dataset, requested: Sequence[str] | None) -> list[tuple[str, list[Document]]]:
    """``(name, documents)`` of the requested splits, or of every split except "train".

    Raises:
        DataError: a requested split does not exist, or there is no evaluation split.
    """
    splits = dataset.splits()
    names = [n for n in splits if n != "train"] if requested is None else list(requested)
    missing = [n for n in names if n not in splits]
    if missing:
        raise DataError(f"split(s) {', '.join(missing)} not found; the dataset has {', '.join(splits)}")
    if not names:
        raise DataError("no evaluation split: the dataset has only 'train' (set data.holdout > 0)")
    return [(n, split_documents_of(splits[n])) for n in names]


def metric_name(task: str, split: str, metric: str) -> str:
    return f"{task}/{metric}" if split == "heldout" else f"{task}/{split}/{metric}"


def default_role(pipeline: Any, role: str | None) -> str:
    """``role`` or the pipeline's first (query) role; KeyError naming the roles when it is unknown."""
    roles = list(pipeline.encoders)
    if role is None:
        return roles[0]
    if role not in roles:
        raise KeyError(f"no encoder for role {role!r}; roles: {', '.join(roles)}")
    return role


# -- embedding with a cache ---------------------------------------------------------------------------

_CACHE: dict[tuple[int, int], tuple[weakref.ref, dict[str, Tensor]]] = {}


def _state_key(encoder: torch.nn.Module) -> tuple[int, int]:
    return id(encoder), sum(p._version for p in encoder.parameters())


def embed_texts(pipeline: Any, role: str, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """L2-normalised embeddings ``[len(texts), N]`` (float32, CPU) of ``texts`` with the encoder of ``role``.

    Distinct texts are embedded once, longest first (less padding), and cached for the encoder's current
    weights (the two most recent weight states are kept).
    """
    encoder = pipeline.encoders[role]
    key = _state_key(encoder)
    entry = _CACHE.get(key)
    if entry is None or entry[0]() is not encoder:
        for old in list(_CACHE)[:-1]:
            del _CACHE[old]
        entry = (weakref.ref(encoder), {})
        _CACHE[key] = entry
    cache = entry[1]
    todo = sorted({t for t in texts if t not in cache}, key=lambda t: (-len(t), t))
    if todo:
        vectors = F.normalize(pipeline.embed(role, todo, batch_size=batch_size).float(), dim=-1)
        cache.update(zip(todo, vectors))
    return torch.stack([cache[t] for t in texts]) if texts else torch.zeros(0, encoder.embed_dim)


def clear_cache() -> None:
    """Forget every cached embedding."""
    _CACHE.clear()


# -- metric functions ---------------------------------------------------------------------------------


def ranking_metrics(scores: Tensor, relevant: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Mean IR metrics of score rows ``[Q, C]`` with a boolean relevance mask ``[Q, C]`` (>= 1 per row).

    As sentence-transformers' ``InformationRetrievalEvaluator``: ``recall@K`` = relevant in the top K /
    relevant; ``mrr@10`` = 1 / rank of the first relevant when within 10, else 0; ``ndcg@10`` with binary
    gains and 1 / log2(rank + 1) discounts, divided by the ideal DCG; ``map@100`` = sum of precision at
    each relevant rank <= 100, divided by min(relevant, 100). Ties keep column order.

    Raises:
        ValueError: shapes differ, or a row has no relevant column.
    """
    if scores.shape != relevant.shape or scores.dim() != 2:
        raise ValueError(f"scores {list(scores.shape)} and relevant {list(relevant.shape)} must be the same [Q, C]")
    n_rel = relevant.sum(dim=1)
    if bool((n_rel == 0).any()):
        raise ValueError("every query needs at least one relevant candidate")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    hits = relevant.gather(1, order).float()  # [Q, C] relevance in ranked order
    c = scores.shape[1]
    ranks = torch.arange(1, c + 1, dtype=torch.float32)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float((hits[:, :k].sum(1) / n_rel).mean())
    top10 = hits[:, :10]
    first = torch.where(top10.any(1), 1.0 / (top10.argmax(1).float() + 1), torch.zeros(len(hits)))
    out["mrr@10"] = float(first.mean())
    discount = 1.0 / torch.log2(ranks[:10] + 1)
    dcg = (top10 * discount[: top10.shape[1]]).sum(1)
    ideal = torch.stack([discount[: int(min(n, 10))].sum() for n in n_rel.tolist()])
    out["ndcg@10"] = float((dcg / ideal).mean())
    top100 = hits[:, :100]
    precision = top100.cumsum(1) / ranks[: top100.shape[1]]
    out["map@100"] = float(((precision * top100).sum(1) / n_rel.clamp(max=100)).mean())
    return out


def average_precision(scores: Tensor, relevant: Tensor) -> Tensor:
    """``[Q]`` average precision of each row (mean precision at the ranks of its relevant candidates)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    hits = relevant.gather(1, order).float()
    precision = hits.cumsum(1) / torch.arange(1, hits.shape[1] + 1, dtype=torch.float32)
    return (precision * hits).sum(1) / hits.sum(1).clamp(min=1)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(threshold, F1)``: the cut ``score >= threshold`` with the best F1 on these pairs (midpoints between
    consecutive distinct scores). Raises ValueError without positive pairs."""
    if not labels.any():
        raise ValueError("threshold selection needs at least one positive pair")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.float64)
    tp = np.cumsum(y)
    predicted = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (predicted + y.sum())
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a cut can only fall between distinct scores
    f1 = np.where(last_of_tie, f1, -1.0)
    i = int(np.argmax(f1))
    threshold = float((s[i] + s[i + 1]) / 2) if i + 1 < len(s) else float(s[i] - 1e-6)
    return threshold, float(f1[i])


def f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """``(precision, recall, F1)`` of ``score >= threshold`` against boolean ``labels``."""
    pred = scores >= threshold
    tp = float((pred & labels).sum())
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float(labels.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


# -- evaluators ---------------------------------------------------------------------------------------


class _DocumentEvaluator(Evaluator):
    task = ""

    def __init__(self, params: Any) -> None:
        self.params = params

    def evaluate(self, pipeline: Any, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        role = default_role(pipeline, self.params.role)
        out: dict[str, float] = {}
        for split, docs in document_splits(dataset, self.params.splits):
            for metric, value in self.measure(pipeline, role, docs, ctx.batch_size).items():
                out[metric_name(self.task, split, metric)] = value
        return out

    def measure(self, pipeline: Any, role: str, docs: list[Document], batch_size: int) -> dict[str, float]:
        raise NotImplementedError


class RetrievalEvaluator(_DocumentEvaluator):
    """Title (or description) -> lead retrieval over the leads of a split; see :class:`RetrievalParams`.

    Raises:
        DataError: fewer than 2 documents with a query.
    """

    task = "retrieval"

    def __init__(self, params: ep.RetrievalParams) -> None:
        super().__init__(params)
        self.task = "retrieval" if params.query == "title" else f"retrieval-{params.query}"

    def measure(self, pipeline, role, docs, batch_size):
        query = self.params.query
        field = "description" if query == "description" else "title"
        pairs = [(getattr(d, field).strip(), i) for i, d in enumerate(docs) if getattr(d, field).strip()]
        if len(pairs) < 2 or len(docs) < 2:
            raise DataError(f"bert-nsp.retrieval: needs at least 2 documents with a {field}, got {len(pairs)}")
        texts = [d.text for d in docs]
        if query == "title-masked":
            texts = [mask_title(d.text, d.title) for d in docs]
        queries = embed_texts(pipeline, role, [q for q, _ in pairs], batch_size)
        corpus = embed_texts(pipeline, role, texts, batch_size)
        scores = queries @ corpus.t()
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        relevant[torch.arange(len(pairs)), torch.tensor([i for _, i in pairs])] = True
        # the corpus is every lead: recall@K with K >= its size is 1 for any model
        ks = reportable_ks(self.params.ks, len(docs), f"bert-nsp.retrieval ({self.task}, {len(docs)} documents)")
        return ranking_metrics(scores, relevant, ks)


def mask_title(text: str, title: str) -> str:
    """``text`` with every case-insensitive occurrence of ``title`` removed (white space tidied)."""
    import re

    if not title.strip():
        return text
    return re.sub(r"\s+", " ", re.sub(re.escape(title.strip()), " ", text, flags=re.IGNORECASE)).strip()


def reranking_lists(docs: Sequence[Document], negatives: int, seed: int, *, candidates: str = "leads",
                    positives: int = 3) -> list[tuple[str, list[str], list[bool]]]:
    """Fixed candidate lists ``(query title, candidate texts, is relevant)``, one per document with a title.

    ``candidates = "leads"``: the document's lead is relevant; ``negatives`` leads of other documents of the
    same topic are not. ``"sentences"``: up to ``positives`` sentences of the lead (seeded choice) are
    relevant; ``negatives`` sentences of other same-topic documents are not. When the topic has too few
    texts the other documents of any topic fill the pool; a text equal to a relevant one is never a
    negative. Candidates are shuffled (seeded), so ties carry no order.
    """
    rng = np.random.default_rng(seed)
    by_topic: dict[str, list[int]] = {}
    for i, d in enumerate(docs):
        by_topic.setdefault(d.topic, []).append(i)

    def texts_of(j: int) -> Sequence[str]:
        return (docs[j].text,) if candidates == "leads" else docs[j].sentences

    out = []
    for i, doc in enumerate(docs):
        own = list(texts_of(i))
        if not doc.title.strip() or not own:
            continue
        if candidates == "leads":
            pos = own
        else:
            chosen = rng.choice(len(own), size=min(positives, len(own)), replace=False)
            pos = [own[j] for j in sorted(chosen)]
        banned = set(own)
        pool = [t for j in by_topic.get(doc.topic, []) if j != i for t in texts_of(j) if t not in banned]
        if len(pool) < negatives:
            pool = [t for j in range(len(docs)) if j != i for t in texts_of(j) if t not in banned]
        if not pool:
            continue
        neg = [pool[j] for j in rng.choice(len(pool), size=min(negatives, len(pool)), replace=False)]
        texts = pos + neg
        flags = [True] * len(pos) + [False] * len(neg)
        perm = rng.permutation(len(texts))
        out.append((doc.title.strip(), [texts[j] for j in perm], [flags[j] for j in perm]))
    return out


class RerankingEvaluator(_DocumentEvaluator):
    """Title -> sentences reranking with fixed seeded candidate lists; see :class:`RerankingParams`.

    Raises:
        DataError: no document gives a candidate list (no titles, or a single document).
    """

    task = "reranking"

    def measure(self, pipeline, role, docs, batch_size):
        p = self.params
        lists = reranking_lists(docs, p.negatives, p.seed, candidates=p.candidates, positives=p.positives)
        if not lists:
            raise DataError("bert-nsp.reranking: no candidate list could be made (needs >= 2 documents with "
                            "titles and sentences)")
        queries = embed_texts(pipeline, role, [q for q, _, _ in lists], batch_size)
        flat = [c for _, cands, _ in lists for c in cands]
        cand = embed_texts(pipeline, role, flat, batch_size)
        aps, rrs, start = [], [], 0
        for row, (_, cands, flags) in enumerate(lists):
            block = cand[start : start + len(cands)]
            start += len(cands)
            scores = (block @ queries[row]).unsqueeze(0)
            relevant = torch.tensor(flags).unsqueeze(0)
            aps.append(float(average_precision(scores, relevant)[0]))
            rrs.append(ranking_metrics(scores, relevant, ks=(1,))["mrr@10"])
        return {"map": float(np.mean(aps)), "mrr@10": float(np.mean(rrs))}


def _topic_labels(docs: Sequence[Document], task: str) -> tuple[list[int], np.ndarray]:
    """Indices of the documents with a topic and their ``[n]`` topic ids; DataError with < 2 topics."""
    keep = [i for i, d in enumerate(docs) if d.topic]
    names = sorted({docs[i].topic for i in keep})
    if len(names) < 2:
        raise DataError(f"bert-nsp.{task}: needs documents of at least 2 topics, got {len(names)} "
                        f"({len(keep)} of {len(docs)} documents have a topic)")
    index = {n: k for k, n in enumerate(names)}
    return keep, np.array([index[docs[i].topic] for i in keep], dtype=np.int64)


class ClusteringEvaluator(_DocumentEvaluator):
    """k-means on lead embeddings vs topics: ``clustering/v_measure``; see :class:`ClusteringParams`."""

    task = "clustering"

    def measure(self, pipeline, role, docs, batch_size):
        from sklearn.cluster import KMeans
        from sklearn.metrics import v_measure_score

        keep, labels = _topic_labels(docs, self.task)
        x = embed_texts(pipeline, role, [docs[i].text for i in keep], batch_size).numpy().astype(np.float64)
        k = int(labels.max()) + 1
        if len(keep) < k:
            raise DataError(f"bert-nsp.clustering: {len(keep)} documents cannot form {k} clusters")
        predicted = KMeans(n_clusters=k, n_init=self.params.n_init, random_state=self.params.seed).fit_predict(x)
        return {"v_measure": float(v_measure_score(labels, predicted))}


class ClassificationEvaluator(_DocumentEvaluator):
    """Logistic-regression probe on lead embeddings -> topic; see :class:`ClassificationParams`."""

    task = "classification"

    def measure(self, pipeline, role, docs, batch_size):
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score

        p = self.params
        keep, labels = _topic_labels(docs, self.task)
        x = embed_texts(pipeline, role, [docs[i].text for i in keep], batch_size).numpy().astype(np.float64)
        perm = np.random.default_rng(p.seed).permutation(len(keep))
        cut = int(round(p.train_fraction * len(keep)))
        train, test = perm[:cut], perm[cut:]
        if len(test) == 0 or len(np.unique(labels[train])) < 2:
            raise DataError(f"bert-nsp.classification: {len(keep)} documents are too few for a probe split "
                            f"(train_fraction = {p.train_fraction})")
        probe = LogisticRegression(C=p.C, max_iter=2000).fit(x[train], labels[train])
        predicted = probe.predict(x[test])
        return {"accuracy": float((predicted == labels[test]).mean()),
                "f1_macro": float(f1_score(labels[test], predicted, average="macro"))}


def dedup_pairs(docs: Sequence[Document], seed: int) -> list[tuple[str, str, bool, int]]:
    """Pairs ``(text a, text b, is duplicate, half)`` for near-duplicate detection; see :class:`DedupParams`.

    Each document gives one duplicate, cycling through the edits "drop one sentence", "swap two sentences"
    and "exact copy" (documents with a single sentence get the exact copy only); one non-duplicate with
    another document of the same topic in the same half (any other document when it is alone in its
    topic); and, with >= 4 sentences, one non-duplicate of its first half against its second half.
    ``half`` (0 or 1) is a seeded split of the documents: thresholds chosen on one half are tested on the other.
    """
    rng = np.random.default_rng(seed)
    n = len(docs)
    half = np.zeros(n, dtype=np.int64)
    half[rng.permutation(n)[n // 2 :]] = 1
    out: list[tuple[str, str, bool, int]] = []
    edits = ("drop", "swap", "exact")
    for i, doc in enumerate(docs):
        s = list(doc.sentences) or [doc.text]
        edit = edits[i % 3] if len(s) >= 2 else "exact"
        if edit == "drop":
            j = int(rng.integers(len(s)))
            other = " ".join(s[:j] + s[j + 1 :])
        elif edit == "swap":
            a, b = (int(v) for v in rng.choice(len(s), size=2, replace=False))
            s2 = list(s)
            s2[a], s2[b] = s2[b], s2[a]
            other = " ".join(s2)
        else:
            other = doc.text
        out.append((doc.text, other, True, int(half[i])))
        mates = [j for j in range(n) if j != i and half[j] == half[i] and docs[j].text != doc.text]
        same_topic = [j for j in mates if doc.topic and docs[j].topic == doc.topic]
        pool = same_topic or mates
        if pool:
            out.append((doc.text, docs[int(rng.choice(pool))].text, False, int(half[i])))
        if len(s) >= 4:
            mid = len(s) // 2
            out.append((" ".join(s[:mid]), " ".join(s[mid:]), False, int(half[i])))
    return out


class DedupEvaluator(_DocumentEvaluator):
    """Near-duplicate detection F1 with a threshold chosen on the other half; see :class:`DedupParams`.

    Metrics are the means of the two directions (choose on half 0, test on half 1, and the reverse).

    Raises:
        DataError: a half has no duplicate or no non-duplicate pair (too few documents).
    """

    task = "dedup"

    def measure(self, pipeline, role, docs, batch_size):
        from sklearn.metrics import average_precision_score

        p = self.params
        if p.max_documents is not None and len(docs) > p.max_documents:
            keep = np.sort(np.random.default_rng(p.seed).permutation(len(docs))[: p.max_documents])
            docs = [docs[i] for i in keep]
        pairs = dedup_pairs(docs, p.seed)
        a = embed_texts(pipeline, role, [p[0] for p in pairs], batch_size)
        b = embed_texts(pipeline, role, [p[1] for p in pairs], batch_size)
        scores = (a * b).sum(1).numpy().astype(np.float64)
        labels = np.array([p[2] for p in pairs])
        halves = np.array([p[3] for p in pairs])
        for h in (0, 1):
            got = labels[halves == h]
            if got.all() or not got.any():
                raise DataError(f"bert-nsp.dedup: {len(docs)} documents are too few: one half has no "
                                f"{'non-' if got.all() else ''}duplicate pair")
        rows = []
        for fit, test in ((0, 1), (1, 0)):
            threshold, _ = best_threshold(scores[halves == fit], labels[halves == fit])
            precision, recall, f1 = f1_at(scores[halves == test], labels[halves == test], threshold)
            ap = average_precision_score(labels[halves == test], scores[halves == test])
            rows.append((f1, precision, recall, threshold, ap))
        mean = np.mean(np.array(rows), axis=0)
        return {"f1": float(mean[0]), "precision": float(mean[1]), "recall": float(mean[2]),
                "threshold": float(mean[3]), "ap": float(mean[4])}


class LeeSimilarityEvaluator(Evaluator):
    """Cosine of the 50 ``lee.cor`` documents vs human similarity: ``lee/pearson``, ``lee/spearman``.

    Reads gensim's bundled test data (``pip install gensim``); the dataset of the run is not used.

    Raises:
        DataError: gensim (or its test data) is not installed.
    """

    def __init__(self, params: ep.LeeSimilarityParams) -> None:
        self.params = params
        self._docs: list[str] | None = None
        self._human: np.ndarray | None = None

    def data(self) -> tuple[list[str], np.ndarray]:
        """The 50 document texts and the ``[50, 50]`` human similarity matrix (loaded once)."""
        if self._docs is None or self._human is None:
            from cl_datasets.wiki import lee_similarities, load_lee

            self._docs = [d.text for d in load_lee("lee.cor")]
            self._human = lee_similarities()
            if len(self._docs) != self._human.shape[0]:
                raise DataError(f"lee.cor has {len(self._docs)} documents but the similarity matrix is "
                                f"{self._human.shape[0]} x {self._human.shape[1]}")
        return self._docs, self._human

    def evaluate(self, pipeline: Any, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        from scipy.stats import pearsonr, spearmanr

        role = default_role(pipeline, self.params.role)
        docs, human = self.data()
        x = embed_texts(pipeline, role, docs, ctx.batch_size)
        cos = (x @ x.t()).numpy().astype(np.float64)
        iu = np.triu_indices(len(docs), k=1)
        return {"lee/pearson": float(pearsonr(cos[iu], human[iu])[0]),
                "lee/spearman": float(spearmanr(cos[iu], human[iu])[0])}


def _check_role(ctx: Any, role: str | None, name: str) -> None:
    encoders = getattr(ctx, "encoders", {}) or {}
    if role is not None and encoders and role not in encoders:
        raise ValueError(f"{name}: no encoder for role {role!r}; the spec's roles are {', '.join(encoders)}")


def _factory(cls: type, name: str) -> Any:
    """The factory of evaluator ``name``: checks the role param against the spec's roles, then builds."""

    def build(params: Any, ctx: Any) -> Any:
        _check_role(ctx, params.role, name)
        return cls(params)

    build.__name__ = build.__qualname__ = f"build_{name.split('.', 1)[1].replace('-', '_')}"
    return build


build_retrieval = _factory(RetrievalEvaluator, "bert-nsp.retrieval")
build_reranking = _factory(RerankingEvaluator, "bert-nsp.reranking")
build_clustering = _factory(ClusteringEvaluator, "bert-nsp.clustering")
build_classification = _factory(ClassificationEvaluator, "bert-nsp.classification")
build_dedup = _factory(DedupEvaluator, "bert-nsp.dedup")
build_lee_similarity = _factory(LeeSimilarityEvaluator, "bert-nsp.lee-similarity")


__all__ = ["ClassificationEvaluator", "ClusteringEvaluator", "DedupEvaluator",
           "LeeSimilarityEvaluator", "RerankingEvaluator", "RetrievalEvaluator", "average_precision",
           "best_threshold", "dedup_pairs", "document_splits", "embed_texts", "f1_at",
           "ranking_metrics", "reranking_lists", "split_documents_of"]
