"""The word2vec components: input/output embedding tables (encoders) and the skip-gram / CBOW samplers.

word2vec as contrastive learning (Mikolov et al., 2013): the *query* is a word's input vector (``syn0``,
encoder ``word2vec.embedding``), the *candidates* are output vectors (``syn1neg``, encoder
``word2vec.context``) of the true context word (positive) and of ``negative`` words drawn from the
unigram^0.75 noise distribution; the scorer is the dot product and the loss is negative sampling
(``core.negative-sampling``) or NCE (``core.nce``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cl_core.api import Batch, BuildError, DataSource, Encoder, Sampler

from .params import CBOWParams, ContextParams, EmbeddingParams, SkipGramParams
from .vocab import Vocabulary

TRAINER = "word2vec.sgd"


class _Table(Encoder):
    """A ``[V, dim]`` table looked up by word: ``prepare(words or ids) -> {"ids": [B]}``, ``encode -> [B, dim]``."""

    modality = "word"

    def __init__(self, vocabulary: Vocabulary, weight: Tensor) -> None:
        super().__init__()
        self._vocabulary = vocabulary
        self.weight = nn.Parameter(weight)

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    @property
    def embed_dim(self) -> int:
        return int(self.weight.shape[1])

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """Words (str) or row ids (int) to ``{"ids": [B] int64}``.

        Raises:
            UnknownWordError (a KeyError): a word outside the vocabulary (lists close matches).
            IndexError: an id out of range.
        """
        vocab = self.vocabulary
        ids = [int(w) if isinstance(w, (int, np.integer)) else vocab.id(str(w)) for w in items]
        if ids and not 0 <= min(ids) <= max(ids) < len(vocab):
            raise IndexError(f"word ids must be in [0, {len(vocab)}), got {min(ids)}..{max(ids)}")
        return {"ids": torch.tensor(ids, dtype=torch.long)}

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.weight[inputs["ids"]]

    def resize_to_saved(self, saved: Mapping[str, Tensor]) -> None:
        """Take the saved table's row count (the vocabulary size) before a strict load (cl_core.weights)."""
        weight = saved.get("weight")
        if weight is not None and weight.shape != self.weight.shape:
            self.weight = nn.Parameter(torch.empty(weight.shape, dtype=self.weight.dtype))


class WordEmbedding(_Table):
    """``word2vec.embedding``: input vectors ``[V, dim]``, initialised uniform(-0.5/dim, 0.5/dim) as word2vec.

    The vocabulary is saved in the state dict as buffers ``vocab_utf8`` (the words joined by newlines,
    UTF-8 bytes) and ``counts`` ``[V]`` int64, so a saved run needs no corpus to be exported or queried.
    """

    def __init__(self, vocabulary: Vocabulary, dim: int, generator: torch.Generator | None = None) -> None:
        weight = (torch.rand(len(vocabulary), dim, generator=generator, dtype=torch.float32) - 0.5) / dim
        super().__init__(vocabulary, weight)
        self.register_buffer("vocab_utf8", torch.from_numpy(vocabulary.to_bytes()))
        self.register_buffer("counts", torch.from_numpy(vocabulary.counts.copy()))

    def resize_to_saved(self, saved: Mapping[str, Tensor]) -> None:
        super().resize_to_saved(saved)
        for name in ("vocab_utf8", "counts"):
            if name in saved and saved[name].shape != getattr(self, name).shape:
                setattr(self, name, torch.empty(saved[name].shape, dtype=getattr(self, name).dtype))

    def usage_notes(self, role: str, source: str) -> list[str]:
        return [f"Word vectors (role `{role}`): `cl_word2vec.load(\"{source}\")` gives a `WordVectors` "
                "(`most_similar`, `similarity`, analogies); `python -m cl_word2vec export "
                f"{source} vectors.bin` writes the word2vec binary format that gensim's "
                "`KeyedVectors.load_word2vec_format(path, binary=True)` reads (`--text` for the text format)."]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._vocabulary = Vocabulary.from_bytes(self.vocab_utf8.cpu().numpy(), self.counts.cpu().numpy())


class ContextEmbedding(_Table):
    """``word2vec.context``: output vectors ``[V, dim]`` (``syn1neg``), zero-initialised as word2vec; it
    shares the vocabulary of the ``word2vec.embedding`` encoder."""

    def __init__(self, word: WordEmbedding) -> None:
        super().__init__(word.vocabulary, torch.zeros_like(word.weight.detach()))
        self._word = [word]  # not a submodule: its tables are saved under its own role

    @property
    def vocabulary(self) -> Vocabulary:
        return self._word[0].vocabulary


def find_word_encoder(encoders: Mapping[str, Encoder], role: str | None = None) -> tuple[str, WordEmbedding]:
    """The ``word2vec.embedding`` encoder (of ``role`` if given). Raises BuildError when there is none."""
    if role is not None:
        enc = encoders.get(role)
        if not isinstance(enc, WordEmbedding):
            raise BuildError(f"encoder role {role!r} is not a word2vec.embedding encoder")
        return role, enc
    for name, enc in encoders.items():
        if isinstance(enc, WordEmbedding):
            return name, enc
    raise BuildError("this needs a word2vec.embedding encoder ([encoders.word] type = \"word2vec.embedding\")")


def build_embedding(params: EmbeddingParams, ctx: Any) -> WordEmbedding:
    """Factory of ``word2vec.embedding``: builds the vocabulary from the dataset's "train" corpus.

    Raises:
        BuildError: no dataset, or a dataset that is not a tokenised corpus (``datasets.text-corpus``).
        DataError: fewer than 2 words reach ``min_count``.
    """
    if ctx.dataset is None:  # loading saved weights: the tables take the saved vocabulary (resize_to_saved)
        return WordEmbedding(Vocabulary([], np.zeros(0, dtype=np.int64)), params.dim)
    corpus = _corpus(ctx)
    vocab, _ = Vocabulary.build(corpus.words, corpus.counts, min_count=params.min_count, max_vocab=params.max_vocab)
    generator = torch.Generator().manual_seed(int(ctx.seed))
    return WordEmbedding(vocab, params.dim, generator)


def build_context(params: ContextParams, ctx: Any) -> ContextEmbedding:
    _, word = find_word_encoder(ctx.encoders)
    return ContextEmbedding(word)


def _corpus(ctx: Any) -> Any:
    if ctx.dataset is None:
        raise BuildError("word2vec.embedding builds its vocabulary from the training corpus; this pipeline has no "
                         "dataset (load a trained run with cl_word2vec.load(run_dir) instead)")
    corpus = ctx.dataset.splits().get("train")
    if corpus is None or not all(hasattr(corpus, a) for a in ("words", "counts", "ids", "offsets")):
        raise BuildError("word2vec needs a tokenised corpus as [data]: type = \"datasets.text-corpus\"")
    return corpus


# -- samplers -------------------------------------------------------------------------------------------------


class Word2VecSampler(Sampler):
    """``word2vec.skip-gram`` / ``word2vec.cbow``: holds the sampling params (window, negatives, subsampling)
    that the ``word2vec.sgd`` trainer applies inside its fused kernel or batched torch path.

    The generic :meth:`batches` yields in-batch (word, context) pairs of one epoch (raw words; roles
    ``"word"``/``"context"``), for inspection; training goes through ``word2vec.sgd``.
    """

    cbow = False

    def __init__(self, params: SkipGramParams | CBOWParams) -> None:
        self.params = params

    def num_batches(self, source: DataSource) -> int:
        return max(1, len(source))

    def input_roles(self, source: DataSource) -> tuple[str, ...]:
        return ("word", "context")

    def batches(self, source: DataSource, *, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        """One batch per sentence: every (centre, context) pair within the full window, as raw words."""
        order = torch.randperm(len(source), generator=generator).tolist()
        w = self.params.window
        for i in order[start:]:
            words = source.get([i])["text"][0]
            pairs = [(words[a], words[b]) for a in range(len(words))
                     for b in range(max(0, a - w), min(len(words), a + w + 1)) if a != b]
            if pairs:
                yield Batch(inputs={"word": [p[0] for p in pairs], "context": [p[1] for p in pairs]},
                            labels=None, indices=torch.full((len(pairs),), i, dtype=torch.long))


class CBOWSampler(Word2VecSampler):
    cbow = True


def _check_trainer(ctx: Any, name: str) -> None:
    spec = getattr(ctx, "spec", None)
    trainer = getattr(spec, "trainer", None)
    kind = getattr(trainer, "type", None)
    if kind is not None and kind != TRAINER:
        raise BuildError(f"{name} draws its (word, context, noise) triples inside the {TRAINER} trainer; set "
                         f"[trainer] type = \"{TRAINER}\" (got {kind!r})")


def build_skip_gram(params: SkipGramParams, ctx: Any) -> Word2VecSampler:
    _check_trainer(ctx, "word2vec.skip-gram")
    return Word2VecSampler(params)


def build_cbow(params: CBOWParams, ctx: Any) -> CBOWSampler:
    _check_trainer(ctx, "word2vec.cbow")
    return CBOWSampler(params)
