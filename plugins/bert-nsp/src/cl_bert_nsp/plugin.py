"""Registration of the ``bert-nsp.*`` components (no torch import here: the factories are lazy strings)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import embed_params as ep
from . import params as p


@hookimpl
def cl_samplers():
    yield ComponentInfo(name="bert-nsp.pairs", params=p.NSPPairsParams, factory="cl_bert_nsp.nsp_pairs:build_pairs",
                        summary="Next-sentence pairs from ordered documents: 50% true next, 50% from another document.")


@hookimpl
def cl_encoders():
    yield ComponentInfo(name="bert-nsp.bert", params=p.BertParams, factory="cl_bert_nsp.bert:build_bert",
                        summary="BERT on [CLS] A [SEP] B [SEP] -> pooled [CLS] + 1 (random init, checkpoint or "
                                "MiniLM); optional joint masked-LM.")
    yield ComponentInfo(name="bert-nsp.nsp-head", params=p.NSPHeadParams, factory="cl_bert_nsp.bert:build_nsp_head",
                        summary="BERT's NSP linear layer as two candidates [W | b] (is next, random).")
    yield ComponentInfo(name="bert-nsp.sentence-encoder", params=ep.SentenceEncoderParams,
                        factory="cl_bert_nsp.embedding:build_sentence_encoder",
                        summary="Pretrained transformer (MiniLM, folder, Hub id) + mean/CLS/last-token pooling + L2 "
                                "norm, fine-tuned (Sentence-BERT).")


@hookimpl
def cl_objectives():
    yield ComponentInfo(name="bert-nsp.mlm", params=p.MaskedLMParams, factory="cl_bert_nsp.mlm:build_mlm",
                        summary="BERT's masked-LM loss beside NSP, from the same forward pass's token states.")


@hookimpl
def cl_evaluators():
    yield ComponentInfo(name="bert-nsp.nsp-accuracy", params=p.NSPAccuracyParams,
                        factory="cl_bert_nsp.nsp_eval:build_nsp_accuracy",
                        summary="Next-sentence-prediction accuracy on pairs from held-out documents.")
    for name, params, factory, summary in (
        ("retrieval", ep.RetrievalParams, "build_retrieval",
         "Title -> lead retrieval on held-out documents: recall@K, MRR@10, nDCG@10, MAP@100."),
        ("reranking", ep.RerankingParams, "build_reranking",
         "Title -> candidates reranking with fixed seeded same-topic negatives: MAP, MRR@10."),
        ("clustering", ep.ClusteringParams, "build_clustering",
         "k-means of held-out lead embeddings vs topics: v-measure."),
        ("classification", ep.ClassificationParams, "build_classification",
         "Logistic-regression probe on held-out lead embeddings -> topic: accuracy, macro F1."),
        ("dedup", ep.DedupParams, "build_dedup",
         "Near-duplicate detection (sentence drop/swap, exact copy) vs related texts: F1 at a tuned threshold."),
        ("lee-similarity", ep.LeeSimilarityParams, "build_lee_similarity",
         "Lee corpus document similarity vs 50x50 human judgments: Pearson, Spearman."),
    ):
        yield ComponentInfo(name=f"bert-nsp.{name}", params=params, factory=f"cl_bert_nsp.evaluators:{factory}",
                            summary=summary)
