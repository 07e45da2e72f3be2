"""Registration of the ``word2vec.*`` components (no torch or numba import here: the factories are lazy)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_samplers():
    yield ComponentInfo(name="word2vec.skip-gram", params=p.SkipGramParams, factory="cl_word2vec.modules:build_skip_gram",
                        summary="Skip-gram: each word predicts its window; subsampling, reduced window, unigram^0.75 noise.")
    yield ComponentInfo(name="word2vec.cbow", params=p.CBOWParams, factory="cl_word2vec.modules:build_cbow",
                        summary="CBOW: the mean (or sum) of the window predicts the centre word.")


@hookimpl
def cl_encoders():
    yield ComponentInfo(name="word2vec.embedding", params=p.EmbeddingParams, factory="cl_word2vec.modules:build_embedding",
                        summary="Input word vectors (syn0) and the vocabulary (min_count, max_vocab), saved with the weights.")
    yield ComponentInfo(name="word2vec.context", params=p.ContextParams, factory="cl_word2vec.modules:build_context",
                        summary="Output (context) word vectors (syn1neg), zero-initialised.")


@hookimpl
def cl_evaluators():
    yield ComponentInfo(name="word2vec.word-similarity", params=p.WordSimilarityParams,
                        factory="cl_word2vec.evaluation:build_word_similarity",
                        summary="Spearman's rho on WordSim-353 and SimLex-999 (and your files), OOV pairs counted.")
    yield ComponentInfo(name="word2vec.analogy", params=p.AnalogyParams, factory="cl_word2vec.evaluation:build_analogy",
                        summary="3CosAdd analogy accuracy on questions-words.txt over the top-N words.")


@hookimpl
def cl_trainers():
    yield ComponentInfo(name="word2vec.sgd", params=p.SGDParams, factory="cl_word2vec.sgd:build_sgd",
                        summary="word2vec's SGD: fused Hogwild CPU kernel (numba) or batched torch updates (GPU).")
