"""Params of the ``word2vec.*`` components (torch-free: ``cl spec validate`` imports this)."""

from __future__ import annotations

from typing import Any, Literal

from attrs import field, frozen, validators

from cl_core.api import existing_path


def _unit(_: Any, attribute: Any, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be in [0, 1), got {value!r}")


@frozen(kw_only=True)
class SkipGramParams:
    """``word2vec.skip-gram``: each word predicts the words around it (Mikolov et al., 2013a, b).

    Attributes:
        window: maximum distance between the centre word and a context word.
        shrink_windows: draw each centre word's window uniformly from 1..window (word2vec's "reduced
            window", which weights near words more); False uses the full window everywhere.
        negative: noise words per (word, context) pair, drawn from the unigram distribution ** ns_exponent.
        ns_exponent: exponent of the noise distribution (0.75 in word2vec; 0 = uniform, 1 = unigram).
        sample: frequent-word subsampling threshold t: a word of frequency f is kept with probability
            ``(sqrt(f / t) + 1) * t / f`` (word2vec C / gensim formula); 0 disables.
    """

    window: int = field(default=5, validator=validators.ge(1))
    shrink_windows: bool = True
    negative: int = field(default=5, validator=validators.ge(1))
    ns_exponent: float = 0.75
    sample: float = field(default=1e-3, validator=_unit)


@frozen(kw_only=True)
class CBOWParams:
    """``word2vec.cbow``: continuous bag of words, the context words together predict the centre word.

    Attributes:
        window: maximum distance between the centre word and a context word.
        shrink_windows: draw each centre word's window uniformly from 1..window (word2vec's reduced window).
        negative: noise words per centre word, drawn from the unigram distribution ** ns_exponent.
        ns_exponent: exponent of the noise distribution (0.75 in word2vec).
        sample: frequent-word subsampling threshold t (see ``word2vec.skip-gram``); 0 disables.
        cbow_mean: average the context vectors (word2vec C, gensim's default); False sums them.
    """

    window: int = field(default=5, validator=validators.ge(1))
    shrink_windows: bool = True
    negative: int = field(default=5, validator=validators.ge(1))
    ns_exponent: float = 0.75
    sample: float = field(default=1e-3, validator=_unit)
    cbow_mean: bool = True


@frozen(kw_only=True)
class EmbeddingParams:
    """``word2vec.embedding``: the input word vectors (word2vec's ``syn0``) and the vocabulary.

    The vocabulary is built from the training corpus (``datasets.text-corpus``): words seen at least
    ``min_count`` times, most frequent first, at most ``max_vocab``. It is saved with the weights.

    Attributes:
        dim: vector width N.
        min_count: drop words seen fewer times.
        max_vocab: keep at most this many most frequent words (None: no cap).
    """

    dim: int = field(default=100, validator=validators.ge(1))
    min_count: int = field(default=5, validator=validators.ge(1))
    max_vocab: int | None = field(default=None, validator=validators.optional(validators.ge(2)))


@frozen(kw_only=True)
class ContextParams:
    """``word2vec.context``: the output (context) vectors (word2vec's ``syn1neg``), zero-initialised, one per
    word of the vocabulary of the ``word2vec.embedding`` encoder of the spec. No params."""


@frozen(kw_only=True)
class SGDParams:
    """``word2vec.sgd``: word2vec's training loop: plain SGD per (word, context) pair, learning rate decayed
    linearly with the words processed, from ``alpha`` to ``min_alpha``.

    Attributes:
        epochs: passes over the corpus.
        alpha: initial learning rate (0.025 for skip-gram in word2vec/gensim; 0.05 is word2vec's CBOW default).
        min_alpha: final learning rate.
        workers: CPU threads of the fused kernel (Hogwild: threads update the shared tables without locks,
            as word2vec C and gensim do). With ``workers = 1`` a seed gives identical vectors.
        backend: ``"numba"`` = fused per-sentence CPU kernel; ``"torch"`` = batched updates on
            ``run.device`` through the catalogue loss; ``"auto"`` = torch on CUDA, numba otherwise.
        batch_size: (word, context) pairs per update on the torch backend.
        job_words: raw words per job of the numba backend (one thread runs one job at a time).
        compute_loss: accumulate the training loss (logged per epoch; costs ~10%).
        shuffle: numba backend: visit the jobs (~``job_words`` runs of whole sentences) in a new seeded order
            each epoch, instead of corpus order as word2vec C and gensim do.
        checkpoint: write a resumable checkpoint after each epoch.
        plots: draw the loss curve into the run's ``plots/`` (needs ``compute_loss``).
    """

    epochs: int = field(default=5, validator=validators.ge(1))
    alpha: float = field(default=0.025, validator=validators.gt(0))
    min_alpha: float = field(default=1e-4, validator=validators.ge(0))
    workers: int = field(default=2, validator=validators.ge(1))
    backend: Literal["auto", "numba", "torch"] = field(
        default="auto", validator=validators.in_(("auto", "numba", "torch")))
    batch_size: int = field(default=16384, validator=validators.ge(1))
    job_words: int = field(default=10000, validator=validators.ge(100))
    compute_loss: bool = False
    shuffle: bool = True
    checkpoint: bool = True
    plots: bool = True


@frozen(kw_only=True)
class WordSimilarityParams:
    """``word2vec.word-similarity``: Spearman's rho between cosine similarities and human ratings.

    Word pairs with a word outside the ``restrict_vocab`` most frequent words are skipped and counted
    (as gensim's ``evaluate_word_pairs``, case-insensitive).

    Attributes:
        sets: built-in sets, any of ``"ws353"`` (WordSim-353, Finkelstein et al. 2002) and ``"simlex999"``
            (SimLex-999, Hill et al. 2015); the files come from the gensim wheel's test data.
        files: extra tab-separated ``word1 word2 score`` files (``#`` lines are comments), reported by stem.
        restrict_vocab: only the most frequent words count as known.
        role: encoder role of the vectors (default: the ``word2vec.embedding`` encoder).
    """

    sets: tuple[Literal["ws353", "simlex999"], ...] = ("ws353", "simlex999")
    files: tuple[str, ...] = ()
    restrict_vocab: int = field(default=300_000, validator=validators.ge(1))
    role: str | None = None


@frozen(kw_only=True)
class AnalogyParams:
    """``word2vec.analogy``: "a is to b as c is to ?" by 3CosAdd (Mikolov et al., 2013c): the word nearest
    (cosine) to ``b - a + c`` among the ``restrict_vocab`` most frequent words, a, b and c excluded.

    As gensim's ``evaluate_word_analogies``: case-insensitive; a question with a word outside the restricted
    vocabulary is skipped and counted; accuracy is over the questions asked.

    Attributes:
        restrict_vocab: one evaluation per value (e.g. ``[30000, 100000]``).
        questions: a file in the ``questions-words.txt`` format (``: section`` lines then ``a b c d``);
            default: Google's 19,544 questions from the gensim wheel.
        role: encoder role of the vectors (default: the ``word2vec.embedding`` encoder).
    """

    restrict_vocab: tuple[int, ...] = (30_000, 100_000)
    questions: str | None = field(default=None, validator=existing_path("file"))
    role: str | None = None
