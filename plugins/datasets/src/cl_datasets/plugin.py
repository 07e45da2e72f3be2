"""Registration of the ``datasets.*`` components (imports neither torch nor Pillow: factories are lazy)."""

from __future__ import annotations

from cl_core.api import ComponentInfo, hookimpl

from . import params as p


@hookimpl
def cl_datasets():
    yield ComponentInfo(
        name="datasets.emoji", params=p.EmojiParams, factory="cl_datasets.emoji:build_emoji",
        summary="Emoji image-text pairs (OpenMoji + Noto styles), concept-level held-out splits.",
    )
    yield ComponentInfo(
        name="datasets.image-caption", params=p.ImageCaptionParams,
        factory="cl_datasets.image_caption:build_image_caption",
        summary="Your own images + JSONL/CSV captions, verified at build time, train/heldout split.",
    )
    yield ComponentInfo(
        name="datasets.text-corpus", params=p.TextCorpusParams, factory="cl_datasets.corpora:build_text_corpus",
        summary="English text (GCIDE, WordNet glosses, Wikipedia leads, your files) tokenised into word ids.",
    )
    yield ComponentInfo(
        name="datasets.documents", params=p.DocumentsParams, factory="cl_datasets.documents:build_documents",
        summary="Ordered documents (Wikipedia leads, Lee news, your file), split by document (NSP, text pairs).",
    )
    yield ComponentInfo(
        name="datasets.text-pairs", params=p.TextPairsParams, factory="cl_datasets.text_pairs:build_text_pairs",
        summary="Wikipedia (title|description|sentence, lead|next sentence) pairs for text embeddings, split by document.",
    )
    yield ComponentInfo(
        name="datasets.shards", params=p.ShardsParams, factory="cl_datasets.stream:build_shards",
        summary="WebDataset tar shards (cl data shard) from a folder or URL: the training split streams, the others "
                "load for evaluation.",
    )


@hookimpl
def cl_samplers():
    yield ComponentInfo(
        name="datasets.stream", params=p.StreamParams, factory="cl_datasets.stream:build_stream",
        summary="Batches streamed from shards: per-epoch shard order and shuffle buffer from the run seed, each "
                "torchrun rank its own streams, decoding in worker processes, exact resume.",
    )
