"""Params of the ``captions.*`` components (frozen attrs, torch-free: what a spec table holds)."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import frozen, validators

from cl_core.api import DecoderRef, existing_paths

REFERENCE_KINDS = ("text", "name", "descriptions")
Reference = Literal["text", "name", "descriptions"]


def _splits(_: object, __: object, value: tuple[str, ...] | None) -> None:
    if value is not None and not value:
        raise ValueError("'splits' must name at least one split (leave it out for every split except 'train')")


def _references(_: object, __: object, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"'references' needs at least one of {', '.join(map(repr, REFERENCE_KINDS))}")
    if len(set(value)) != len(value):
        raise ValueError(f"'references' names a kind twice: {list(value)}")


def _template(_: object, attribute: object, value: str) -> None:
    if value.count("{}") != 1:
        raise ValueError(f"'{getattr(attribute, 'name', 'template')}' must contain '{{}}' exactly once, got {value!r}")


def _metric_name(_: object, __: object, value: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value):
        raise ValueError(f"'name' must be lowercase letters, digits, '-' and '_' (it prefixes the metric names), "
                         f"got {value!r}")


def _role(_: object, attribute: object, value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError(f"'{getattr(attribute, 'name', 'role')}' must not be empty")


@frozen(kw_only=True)
class MetricsParams:
    """``captions.metrics``: caption every example of each evaluation split and score the captions against the
    example's references with the COCO caption metrics, CLIPScore and the exact-name rate.

    Metrics per split, under ``<name>/<split>/``: ``bleu1`` ... ``bleu4``, ``meteor``, ``rouge_l``, ``cider_d``
    (pycocoevalcap 1.2, corpus level, fractions as pycocoevalcap gives them: CIDEr-D is on its 0-10 scale),
    ``clipscore`` (Hessel et al., 2021: mean of w * max(cos(item, caption), 0), w = 2.5), ``exact_name`` (the
    fraction of captions that name the example's concept, see ``name_match``), ``seconds_per_100`` (wall time
    of captioning, encoding included, per 100 captions) and ``count`` (captions scored). SPICE is not computed
    (it needs Stanford models downloaded on first use). METEOR and the Java PTB tokenizer need ``java``; without
    it METEOR is left out and captions are tokenised by ``cl_captions.tokenize.ptb_python`` (one warning says so).

    Attributes:
        name: prefix of the metric names (two evaluators in one spec need two names).
        role: encoder role whose items are captioned (and whose embeddings CLIPScore compares with the captions).
        field: data field holding those items; default: the ``role``'s name.
        text_role: encoder role that embeds the captions for CLIPScore.
        splits: splits to evaluate; default every split except ``"train"``.
        references: what an example's references are, any of ``"text"`` (every ``text_field`` value of the
            split's examples with the example's label, or the example's own text when the split has no
            labels), ``"name"`` (its class name) and ``"descriptions"`` (its class descriptions), in that order,
            repeats removed. ``datasets.emoji``'s held-out splits give the annotation (text and name) and the
            class descriptions ("<annotation>, <subgroup>" by default).
        text_field: data field of the reference captions.
        decoder: a decoder table to caption with instead of the spec's ``[decoder]`` (e.g. ``{ type =
            "captions.clipre" }``, to score a baseline beside the trained decoder); built with the spec's
            encoders and dataset, owned by this evaluator.
        max_length: the decoder's ``max_length`` (in its own units: tokens, or words for CLIPRe).
        max_examples: caption at most this many examples per split, evenly spaced (None: all).
        tokenizer: ``"auto"`` (the Java PTB tokenizer pycocoevalcap uses when ``java`` is installed, else the
            pure-Python equivalent), ``"ptb-java"`` (Java required) or ``"python"`` (same numbers on every machine).
        meteor: compute METEOR (needs ``java``; about 10 s to start its Java process).
        clipscore: compute CLIPScore.
        clipscore_weight: CLIPScore's w (2.5 in Hessel et al.).
        clipscore_template: the caption is embedded as ``template.format(caption)``; Hessel et al. use
            ``"A photo depicts {}"`` with CLIP ViT-B/32.
        name_match: ``"contains"``: a caption names the concept when, both lowercased, with punctuation
            (Unicode category P*) replaced by spaces and whitespace collapsed, the class name occurs in the
            caption as a whole phrase (at word boundaries: "red heart" is named by "a red heart", not by
            "red hearts"); ``"equals"``: the two normalised strings are equal.
        examples: examples drawn per split into ``captions-<split>.png`` when the run writes plots and the
            items are images (0: no plot).
        timing: report ``seconds_per_100`` (a wall-clock time, so not reproducible bit for bit).
        batch_size: items per captioning batch; default the evaluation's batch size.
    """

    name: str = attrs.field(default="captions", validator=_metric_name)
    role: str = attrs.field(default="image", validator=_role)
    field: str | None = attrs.field(default=None, validator=_role)
    text_role: str = attrs.field(default="text", validator=_role)
    splits: tuple[str, ...] | None = attrs.field(default=None, validator=_splits)
    references: tuple[Reference, ...] = attrs.field(default=REFERENCE_KINDS, validator=[
        validators.deep_iterable(validators.in_(REFERENCE_KINDS)), _references])
    text_field: str = attrs.field(default="text", validator=_role)
    decoder: DecoderRef | None = None
    max_length: int = attrs.field(default=32, validator=validators.gt(0))
    max_examples: int | None = attrs.field(default=None, validator=validators.optional(validators.gt(0)))
    tokenizer: Literal["auto", "ptb-java", "python"] = "auto"
    meteor: bool = True
    clipscore: bool = True
    clipscore_weight: float = attrs.field(default=2.5, validator=validators.gt(0))
    clipscore_template: str = attrs.field(default="{}", validator=_template)
    name_match: Literal["contains", "equals"] = "contains"
    examples: int = attrs.field(default=6, validator=validators.ge(0))
    timing: bool = True
    batch_size: int | None = attrs.field(default=None, validator=validators.optional(validators.gt(0)))


@frozen(kw_only=True)
class CLIPReParams:
    """``captions.clipre``: CLIPRe, the retrieval baseline of DeCap (Li et al., 2023, "DeCap: Decoding CLIP Latents
    for Zero-Shot Captioning via Text-Only Training"): an embedding is "decoded" to the caption of a memory whose
    text embedding is most similar (cosine) to it. Nothing is generated and nothing trains.

    The memory is every distinct caption of the named splits' ``field`` and of the ``files``, embedded once with
    the encoder of ``text_role`` when the pipeline is built; captions and embeddings are saved with the model
    (``decoder.memory_text``, ``decoder.memory_offsets``, ``decoder.memory``), so a saved model decodes the same
    way without its data.

    Attributes:
        text_role: encoder role that embeds the memory (the contrastive model's text tower). In a spec that
            trains, that encoder must be frozen (the memory is embedded once, at build time).
        splits: splits of the spec's ``[data]`` whose captions join the memory (default the training captions;
            ``[]`` for files only).
        field: the data field holding the captions.
        files: UTF-8 text files (or folders of ``.txt`` files), one caption per line; blank lines are skipped.
        restrict_to: keep only memory captions that are also a line of these text files (or folders of ``.txt``
            files), compared after stripping, collapsing whitespace and lowercasing: e.g. the caption text an LM
            was trained on ("CLIPRe restricted to the LM's training text").
        batch_size: captions per batch when embedding the memory.
    """

    text_role: str = attrs.field(default="text", validator=_role)
    splits: tuple[str, ...] = ("train",)
    field: str = attrs.field(default="text", validator=_role)
    files: tuple[str, ...] = attrs.field(default=(), validator=existing_paths("any"))
    restrict_to: tuple[str, ...] = attrs.field(default=(), validator=existing_paths("any"))
    batch_size: int = attrs.field(default=256, validator=validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if not self.splits and not self.files:
            raise ValueError("the memory needs captions: give 'splits' of the spec's data or 'files'")
