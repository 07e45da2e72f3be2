"""Params of ``decap.decap`` (a frozen attrs class, torch-free: what a spec table holds)."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import frozen, validators

from cl_core.api import DecoderRef, existing_paths, folder_or_hub_id

Projection = Literal["memory", "none"]
Method = Literal["greedy", "beam"]


def _role(_: Any, attribute: Any, value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError(f"'{getattr(attribute, 'name', 'role')}' must not be empty")


def _names(_: Any, attribute: Any, value: tuple[str, ...] | None) -> None:
    if value is None:
        return
    if any(not isinstance(v, str) or not v.strip() for v in value):
        raise ValueError(f"'{attribute.name}' must hold non-empty names, got {list(value)!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"'{attribute.name}' names a split twice: {list(value)!r}")


def _templates(_: Any, attribute: Any, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' needs at least one template, e.g. [\"{{}}\"]")
    bad = [t for t in value if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template of '{attribute.name}' needs exactly one '{{}}', got {bad!r}")


def _template(_: Any, attribute: Any, value: str) -> None:
    if value.count("{}") != 1:
        raise ValueError(f"'{attribute.name}' must contain '{{}}' exactly once, got {value!r}")


_LM = folder_or_hub_id()


def _lm(_: Any, __: Any, value: str | None) -> None:
    """Checked by the factory instead (when it starts from the LM): a saved decoder holds its LM's weights and
    architecture and loads without the LM's run, which may not exist where the decoder is loaded."""


_lm.absolute = _LM.absolute  # type: ignore[attr-defined]  # a run saves an existing folder absolute


def _probability(_: Any, attribute: Any, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'{attribute.name}' must be in [0, 1), got {value!r}")


@frozen(kw_only=True)
class DeCapParams:
    """``decap.decap``: DeCap (Li et al., ICLR 2023, "DeCap: Decoding CLIP Latents for Zero-Shot Captioning via
    Text-Only Training"), a caption decoder trained on text only.

    Training (the ``core.caption`` objective with ``condition = "text"`` and ``target = "text"``): the caption's
    text embedding t (from the frozen text tower of the contrastive run, ``text_role``) is L2-normalised and mapped
    by one linear layer to **one** prefix embedding; the LM reads ``[prefix] <bos> caption <eos>`` and learns
    L = -sum_j log p(c_j | prefix, c_<j) with label smoothing 0.1 (the prefix position predicts ``<bos>``, as
    DeCap's predicts CLIP's start token). Inference: the image embedding v (normalised) is projected onto a
    **memory** of M text embeddings, w = softmax(v M^T / temperature), v' = normalise(sum_i w_i m_i), and v' is
    decoded greedily. The memory is the text of ``memory_splits`` / ``memory_files`` (and the class names of
    ``memory_names``), embedded once by the text tower when the pipeline is built and saved with the model.

    Entity-aware decoding (ViECap, Fei et al., ICCV 2023, "Transferable Decoding with Visual Entities for
    Zero-Shot Image Captioning"), with ``entities = k > 0``: the k names of an entity vocabulary closest to the
    query (cosine with the names' text embeddings; the caption's own text embedding in training, the image
    embedding at inference, i.e. zero-shot classification) are written into a hard prompt, ``entity_template``
    (ViECap's "There are {} in image."), that the LM reads *before* the soft prefix; in training each retrieved
    entity is dropped with probability ``entity_mask`` (ViECap's random masking).

    The decoder records the identity of the contrastive model it was trained in (digests of the text and image
    towers' weights) and refuses to be loaded into a pipeline whose towers differ.

    Attributes:
        text_role: the encoder role that embeds captions (training condition, memory, entity names): the text
            tower of the contrastive run, frozen (``core.from-run``).
        image_role: the encoder role decoded at inference (its tower's identity is recorded beside the text
            tower's); default ``"image"`` when the spec has that role, else none.
        lm: an ``lm.gpt2`` run (folder or ``org/name[@rev]``) whose LM the decoder starts from
            (``cl_lm.load_lm``); its weights are then saved with this decoder, so the run loads without it.
        scratch: instead of ``lm``, an ``lm.gpt2`` table of an LM trained from scratch (DeCap's paper: 4 layers, 4
            heads, width 768; ``{ type = "lm.gpt2", layers = 4, heads = 4, width = 768, dropout = 0.1 }``).
        trainable_layers: with ``lm``: None fine-tunes the whole LM (DeCap trains its whole decoder), k only the
            top k blocks (the prefix map always trains).
        max_length: tokens of a training row, ``<bos>`` and ``<eos>`` included (DeCap: 20 CLIP tokens); longer
            captions are cut (and lose their ``<eos>``).
        label_smoothing: of the caption cross-entropy (DeCap: 0.1).
        projection: ``"memory"``: decode the image embedding projected onto the memory (DeCap's
            projection-based decoding); ``"none"``: decode the normalised image embedding as it is (the paper's
            comparison; it suffers from the modality gap).
        temperature: tau of the projection weights softmax(v M^T / tau) (DeCap: 1/100).
        memory_splits: splits of the spec's ``[data]`` whose ``memory_field`` texts join the memory (default the
            training captions; DeCap samples its memory from the training captions).
        memory_field: the data field holding those texts.
        memory_files: UTF-8 text files (or folders of ``.txt`` files) whose lines join the memory.
        memory_names: splits whose class names join the memory (``["train", "heldout-noto"]`` adds the concept
            names a zero-shot classifier would be given).
        max_memory: keep at most this many memory texts (evenly spaced, in order; DeCap's notebook samples 500,000
            captions); None keeps all.
        memory_batch_size: texts per batch when embedding the memory and the entity names.
        entities: k, the entity names in the hard prompt (0: no entities, plain DeCap).
        entity_splits: splits whose class names form the entity vocabulary (default: every split of the data, as
            zero-shot classification uses every class name).
        entity_files: text files (or folders of ``.txt`` files) with more entity names, one per line.
        entity_prompts: each name is embedded as the mean of its normalised embeddings through these templates,
            normalised again (CLIP's prompt ensembling).
        entity_template: the hard prompt, with ``{}`` for the names joined by ", " (ViECap's "There are {} in
            image."; with every entity dropped the names read "something", as ViECap writes).
        entity_mask: probability that a retrieved entity is dropped from a training prompt (ViECap: 0.4).
        noise_variance: in training, the normalised text embedding that makes the soft prefix gets isotropic
            Gaussian noise of this variance per dimension and is normalised again (CapDec's noise injection, which
            ViECap trains its soft prompt with: 0.016); 0 (DeCap) leaves it clean. With entities, a clean prefix
            tells the LM the whole caption and it learns to ignore the hard prompt; a noisy one makes the names
            worth reading, as at inference, where the prefix comes from an image. Entities are retrieved with the
            clean embedding.
        method: ``"greedy"`` (DeCap) or ``"beam"`` (length-normalised beam search of ``cl_lm``).
        beam_size: beams of ``"beam"``.
    """

    text_role: str = attrs.field(default="text", validator=_role)
    image_role: str | None = attrs.field(default=None, validator=_role)
    lm: str | None = attrs.field(default=None, validator=_lm)
    scratch: DecoderRef | None = None
    trainable_layers: int | None = attrs.field(default=None, validator=validators.optional(validators.ge(0)))
    max_length: int = attrs.field(default=20, validator=validators.ge(3))
    label_smoothing: float = attrs.field(default=0.1, validator=_probability)
    projection: Projection = "memory"
    temperature: float = attrs.field(default=0.01, validator=validators.gt(0))
    memory_splits: tuple[str, ...] = attrs.field(default=("train",), validator=_names)
    memory_field: str = attrs.field(default="text", validator=_role)
    memory_files: tuple[str, ...] = attrs.field(default=(), validator=existing_paths("any"))
    memory_names: tuple[str, ...] = attrs.field(default=(), validator=_names)
    max_memory: int | None = attrs.field(default=None, validator=validators.optional(validators.ge(1)))
    memory_batch_size: int = attrs.field(default=256, validator=validators.ge(1))
    entities: int = attrs.field(default=0, validator=validators.ge(0))
    entity_splits: tuple[str, ...] | None = attrs.field(default=None, validator=_names)
    entity_files: tuple[str, ...] = attrs.field(default=(), validator=existing_paths("any"))
    entity_prompts: tuple[str, ...] = attrs.field(default=("{}",), validator=_templates)
    entity_template: str = attrs.field(default="There are {} in image.", validator=_template)
    entity_mask: float = attrs.field(default=0.4, validator=_probability)
    noise_variance: float = attrs.field(default=0.0, validator=validators.ge(0))
    method: Method = "greedy"
    beam_size: int = attrs.field(default=3, validator=validators.ge(1))

    def __attrs_post_init__(self) -> None:
        if (self.lm is None) == (self.scratch is None):
            raise ValueError("give the LM to start from, lm = \"runs/lm-english-...\" (an lm.gpt2 run), or one to "
                             "train from scratch, scratch = { type = \"lm.gpt2\", ... } (DeCap's paper), not "
                             + ("both" if self.lm is not None else "neither"))
        if self.scratch is not None and self.scratch.type != "lm.gpt2":
            raise ValueError(f"scratch: DeCap's LM is an \"lm.gpt2\" table, got type = {self.scratch.type!r}")
        if self.trainable_layers is not None and self.lm is None:
            raise ValueError("trainable_layers applies to a pretrained lm; a scratch LM trains whole (set its own "
                             "trainable_layers in the scratch table)")
        if self.projection == "memory" and not self.memory_splits and not self.memory_files and not self.memory_names:
            raise ValueError("projection = \"memory\" needs a memory: give memory_splits, memory_files or memory_names")
