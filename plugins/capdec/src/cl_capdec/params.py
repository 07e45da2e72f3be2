"""Params of the ``capdec.*`` components (frozen attrs, torch-free: ``cl spec validate`` and ``cl components``
import this module)."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from attrs import field, frozen, validators

from cl_core.api import existing_path, existing_paths, folder_or_hub_id
from cl_lm.params import stop_strings, top_p_range, unit_interval

Mapper = Literal["mlp", "transformer"]
Method = Literal["greedy", "beam", "sample"]
EmojiStyle = Literal["openmoji", "noto"]
EmojiCaption = Literal["annotation", "tags", "openmoji_tags", "subgroup", "annotation_tags", "annotation_subgroup"]
EMOJI_CAPTIONS: tuple[str, ...] = get_args(EmojiCaption)
EMOJI_STYLES: tuple[str, ...] = get_args(EmojiStyle)


def _role(_: Any, attribute: Any, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{attribute.name}' must name an encoder role, got {value!r}")


def _one_slot(_: Any, attribute: Any, value: str) -> None:
    if value.count("{}") != 1 or value.replace("{}", "").count("{") or value.replace("{}", "").count("}"):
        raise ValueError(f"'{attribute.name}' needs exactly one '{{}}' and no other braces, got {value!r}")


def _templates(_: Any, attribute: Any, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' needs at least one template, e.g. [\"{{}}\"]")
    for template in value:
        _one_slot(_, attribute, template)
    if len(set(value)) != len(value):
        raise ValueError(f"templates must be distinct, got {list(value)!r}")


_FOLDER = folder_or_hub_id()


def _saved_folder(_: Any, __: Any, value: str | None) -> None:
    """A run folder or Hub id, checked when the decoder is built instead: a trained decoder holds the LM, so its
    saved run loads where the LM's run does not exist."""


_saved_folder.absolute = _FOLDER.absolute  # type: ignore[attr-defined]  # saved absolute, as other folders


def _choices(allowed: tuple[str, ...]):
    def check(_: Any, __: Any, value: tuple[str, ...]) -> None:
        if not isinstance(value, tuple) or not value:
            raise ValueError(f"must be a non-empty list of {', '.join(map(repr, allowed))}")
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"unknown value(s) {', '.join(map(repr, bad))}; allowed: {', '.join(map(repr, allowed))}")
        if len(set(value)) != len(value):
            raise ValueError(f"values must be distinct, got {list(value)!r}")

    return check


@frozen(kw_only=True)
class ClipCapParams:
    """``capdec.clipcap``: ClipCap (Mokady et al., 2021, "ClipCap: CLIP Prefix for Image Captioning"): a mapper
    turns the condition embedding ``[B, N]`` of a frozen contrastive tower into K prefix embeddings ``[B, K, D]``
    that a causal LM (``lm.gpt2``, from a ``cl-lm`` run) continues with the caption. Trained by ``core.caption``
    on (image embedding, caption) pairs with the teacher-forced L = -sum_j log p(c_j | prefix, c_<j) over the
    caption tokens after the K prefix positions (end token included).

    Two mappers, as in ClipCap: ``"mlp"`` (N -> D*K/2 -> D*K with tanh; the LM is fine-tuned) and
    ``"transformer"`` (a linear map of the embedding to ``clip_length`` tokens, followed by K learned constant
    tokens, through a pre-LN transformer whose last K outputs are the prefix; the LM stays frozen).

    The decoder records which tower it was trained on (a digest of the condition tower's weights, its width and
    its source) and refuses to be paired with another (``init``); embeddings of another width are refused when
    decoding.

    Attributes:
        lm: the language model: a ``cl-lm`` run folder (``runs/lm-english-...``) or Hub id; its weights and
            tokenizer are copied into this decoder (saved with the run, which then loads without it).
        mapper: ``"mlp"`` or ``"transformer"``.
        prefix_length: K, prefix embeddings given to the LM (ClipCap: 10 for the MLP, 40 for the transformer).
        clip_length: transformer mapper: tokens the embedding is mapped to before the K constants (ClipCap: 40).
        mapper_layers: transformer mapper: layers (ClipCap: 8).
        mapper_heads: transformer mapper: attention heads (ClipCap: 8); divides the LM width.
        mapper_mlp_ratio: transformer mapper: hidden width of each layer's MLP over the LM width (ClipCap: 2).
        train_lm: fine-tune the LM with the mapper; default (unset): true with the MLP mapper, false with the
            transformer mapper (ClipCap's ``--only_prefix``).
        condition: the encoder role whose embeddings the decoder is trained on (the image tower for ClipCap).
        normalize: L2-normalise embeddings before the mapper (ClipCap feeds raw CLIP embeddings; the towers here
            have different norms per modality, and only their direction is scored).
        embed_dim: width N of the condition embeddings; default: the condition role's encoder's (needed only
            when the decoder is built without encoders).
        init: a saved run (folder or Hub id) with a trained decoder of this kind whose weights this one starts
            from (to evaluate or fine-tune it with other data). Its recorded tower must be this spec's: a decoder
            cannot decode the space of another model.
        text_field: the field of the training split that holds the captions (checked for empty ones before
            training starts).
        method: decoding: ``"beam"`` (length-normalised beam search, ClipCap's ``generate_beam``), ``"greedy"``
            or ``"sample"`` (top-k / top-p).
        beam_size: beams (ClipCap: 5).
        length_penalty: a finished beam's log-probability is divided by (its tokens ** length_penalty).
        top_k: ``"sample"``: keep the k most probable tokens (0: all).
        top_p: ``"sample"``: nucleus probability (1.0: all).
        temperature: ``"sample"``: logits are divided by it.
        seed: ``"sample"``: seed of the draws.
        stop: strings that end a caption besides the LM's end token (ClipCap stops at "."; the emoji captions have
            no full stop, so none by default).
    """

    lm: str = field(validator=_saved_folder)
    mapper: Mapper = field(default="mlp", validator=validators.in_(get_args(Mapper)))
    prefix_length: int = field(default=10, validator=validators.ge(1))
    clip_length: int = field(default=10, validator=validators.ge(1))
    mapper_layers: int = field(default=8, validator=validators.ge(1))
    mapper_heads: int = field(default=8, validator=validators.ge(1))
    mapper_mlp_ratio: float = field(default=2.0, validator=validators.gt(0))
    train_lm: bool | None = None
    condition: str = field(default="image", validator=_role)
    normalize: bool = True
    embed_dim: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
    init: str | None = field(default=None, validator=_saved_folder)
    text_field: str = field(default="text", validator=_role)
    method: Method = field(default="beam", validator=validators.in_(get_args(Method)))
    beam_size: int = field(default=5, validator=validators.ge(1))
    length_penalty: float = 1.0
    top_k: int = field(default=0, validator=validators.ge(0))
    top_p: float = field(default=1.0, validator=top_p_range)
    temperature: float = field(default=1.0, validator=validators.gt(0))
    seed: int = 0
    stop: tuple[str, ...] = field(default=(), validator=stop_strings)

    @property
    def lm_trains(self) -> bool:
        """Whether the LM is fine-tuned (``train_lm``, or the mapper's default)."""
        return self.mapper == "mlp" if self.train_lm is None else self.train_lm

    @property
    def text_only(self) -> bool:
        """Whether the decoder is trained on text embeddings and decodes images (CapDec)."""
        return False


@frozen(kw_only=True)
class CapDecParams(ClipCapParams):
    """``capdec.capdec``: CapDec (Nukrai et al., 2022, "Text-Only Training for Image Captioning using
    Noise-Injected CLIP"): the ClipCap decoder trained on **text only**. The condition is the caption's own text
    embedding (role ``condition``, the contrastive model's text tower); in training it is L2-normalised, a
    Gaussian of variance ``noise_variance`` is added to every coordinate and the result is re-normalised, so the
    decoder learns to caption anything near a text embedding. At inference it decodes the embeddings of
    ``image_role`` (normalised, without noise), optionally shifted by the modality offset.

    Defaults as CapDec's: the transformer mapper, K = 40, clip length 40, 8 layers, the LM fine-tuned.

    The modality offset (CapDec's ``--add_modality_offset``) is the text centre minus the image centre: the mean
    of the normalised text embeddings minus the mean of the normalised image embeddings of the ``offset_split``
    examples. It is computed when the decoder is built (if that split has both fields) and saved with the model;
    ``offset = true`` adds it to every normalised image embedding before the mapper (without re-normalising, as
    CapDec's ``predictions_runner.py``).

    Entity-aware decoding (ViECap, Fei et al., 2023, "Transferable Decoding with Visual Entities for Zero-Shot
    Image Captioning"), with ``entities = k > 0``: the k entity names of a vocabulary most similar to the
    embedding (cosine, names embedded by the text tower through ``entity_templates``, averaged and normalised,
    as a zero-shot classifier does) are written into ``entity_prompt`` and given to the LM as a hard text prompt
    before the soft prefix. In training the entities are those retrieved for the caption's own (clean) text
    embedding, each dropped with probability ``entity_drop``; at inference those of the image embedding.

    Attributes:
        image_role: the encoder role decoded at inference (the image tower).
        noise_variance: variance of the Gaussian added to each coordinate in training (CapDec: 0.016, std 0.126);
            0 turns noise injection off.
        offset: add the modality offset to image embeddings when decoding.
        offset_split: the data split whose examples give the text and image centres (fields ``text_field`` and
            ``image_role``'s name); a split without images leaves the offset uncomputed.
        offset_samples: at most this many examples of that split (evenly spaced).
        entities: k, entity names in the hard prompt (0: off).
        entity_splits: splits whose class names are the entity vocabulary.
        entity_files: text files with more entity names, one per line.
        entity_templates: how each name is embedded (the embeddings of all templates averaged).
        entity_prompt: the hard prompt; ``{}`` receives the names joined by ", ".
        entity_drop: in training, the probability that each retrieved entity is left out of the prompt.
    """

    mapper: Mapper = field(default="transformer", validator=validators.in_(get_args(Mapper)))
    prefix_length: int = field(default=40, validator=validators.ge(1))
    clip_length: int = field(default=40, validator=validators.ge(1))
    train_lm: bool | None = True
    condition: str = field(default="text", validator=_role)
    image_role: str = field(default="image", validator=_role)
    noise_variance: float = field(default=0.016, validator=validators.ge(0))
    offset: bool = False
    offset_split: str = field(default="train", validator=_role)
    offset_samples: int = field(default=2000, validator=validators.ge(1))
    entities: int = field(default=0, validator=validators.ge(0))
    entity_splits: tuple[str, ...] = ("train",)
    entity_files: tuple[str, ...] = field(default=(), validator=existing_paths("file"))
    entity_templates: tuple[str, ...] = field(default=("{}", "an emoji of {}"), validator=_templates)
    entity_prompt: str = field(default="There are {} in the image.", validator=_one_slot)
    entity_drop: float = field(default=0.4, validator=unit_interval)

    def __attrs_post_init__(self) -> None:
        if self.entities and not self.entity_splits and not self.entity_files:
            raise ValueError("entities > 0 needs a vocabulary: entity_splits or entity_files")

    @property
    def text_only(self) -> bool:
        return True


def _inherit_attribute_docs(child: type, parent: type) -> None:
    """Append the parent's ``Attributes:`` entries to the child's docstring (the reference and ``cl components``
    read one docstring per class), except those the child documents itself."""
    def entries(doc: str) -> list[tuple[str, list[str]]]:
        lines = doc.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
        out: list[tuple[str, list[str]]] = []
        for line in lines[start:]:
            match = re.match(r"^ {8}(\w+): ", line)
            if match:
                out.append((match.group(1), [line]))
            elif out and line.strip():
                out[-1][1].append(line)
        return out

    own = {name for name, _ in entries(child.__doc__ or "")}
    extra = [line for name, block in entries(parent.__doc__ or "") if name not in own for line in block]
    child.__doc__ = (child.__doc__ or "").rstrip() + "\n" + "\n".join(extra) + "\n    "


_inherit_attribute_docs(CapDecParams, ClipCapParams)


@frozen(kw_only=True)
class EmojiTextParams:
    """``capdec.emoji-text``: the emoji concepts of ``datasets.emoji`` for a text-only captioner.

    Splits: ``"train"``, text only (field ``"text"``): every distinct caption (``captions`` through
    ``templates``) of the concepts ``text_concepts`` names, labelled by concept, whose names are the split's
    ``class_names``; ``"pairs"`` (with ``pairs``): the image–caption pairs of ``datasets.emoji``'s training split
    (the training concepts only), for the modality offset; ``"heldout-<style>"``: ``datasets.emoji``'s held-out
    image splits, unchanged. The concept split is ``datasets.emoji``'s (same ``styles``, ``holdout``,
    ``split_seed``): keep them equal to the contrastive run's, so the held-out concepts agree.

    With ``text_concepts = "all"`` the training text includes the captions of the held-out concepts — never
    their images. That is the premise of zero-shot captioning from text (CapDec, DeCap): text is cheap and covers
    the names images have not; say so wherever the scores are reported. ``"train"`` keeps to the training
    concepts, as an image-trained decoder sees them.

    Attributes:
        text_concepts: ``"all"`` or ``"train"`` (above).
        pairs: add the ``"pairs"`` split.
        styles: ``datasets.emoji``'s.
        holdout: ``datasets.emoji``'s.
        split_seed: ``datasets.emoji``'s.
        image_size: ``datasets.emoji``'s (the contrastive run's, so images are embedded as it embedded them).
        captions: ``datasets.emoji``'s caption kinds.
        templates: ``datasets.emoji``'s.
        descriptions: ``datasets.emoji``'s class descriptions (references of ``captions.metrics``).
        max_concepts: ``datasets.emoji``'s (tests).
        skip_bad: ``datasets.emoji``'s.
        openmoji_json: ``datasets.emoji``'s.
        noto_dir: ``datasets.emoji``'s.
    """

    text_concepts: Literal["all", "train"] = field(default="all", validator=validators.in_(("all", "train")))
    pairs: bool = True
    styles: tuple[EmojiStyle, ...] = field(default=EMOJI_STYLES, validator=_choices(EMOJI_STYLES))
    holdout: float = field(default=0.2, validator=unit_interval)
    split_seed: int = 0
    image_size: int = field(default=64, validator=validators.ge(8))
    captions: tuple[EmojiCaption, ...] = field(default=("annotation",), validator=_choices(EMOJI_CAPTIONS))
    templates: tuple[str, ...] = field(default=("{}",), validator=_templates)
    descriptions: tuple[EmojiCaption, ...] = field(default=("annotation_subgroup",), validator=_choices(EMOJI_CAPTIONS))
    max_concepts: int | None = field(default=None, validator=validators.optional(validators.ge(2)))
    skip_bad: bool = False
    openmoji_json: str | None = field(default=None, validator=existing_path("file"))
    noto_dir: str | None = field(default=None, validator=existing_path("dir"))
