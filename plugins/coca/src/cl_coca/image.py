"""``coca.image``: CoCa's image side — a trunk that returns a grid of tokens, and two attentional poolers.

The trunk is one of ``cl-clip``'s image towers made to return its token grid ``[B, T, C]`` flattened to
``[B, T * C]`` (so a frozen pretrained trunk keeps the tower's feature cache, its on-disk store and its claim
protocol: a token grid is cached like a pooled feature row):

* :class:`EfficientNetGrid`: a pretrained EfficientNet-Lite; its head convolution's map (1280 channels, plus the
  outputs of ``token_blocks`` average-pooled to the same grid) as T = h * w tokens of C channels;
* :class:`ViTGrid`: a ViT trained from scratch; its layer-normed output tokens (class token first).

:class:`CoCaImage` adds a learned position per grid token, then the contrastive pooler (one query -> LayerNorm ->
projection: the embedding) and the captioning pooler (``caption_queries`` queries -> LayerNorm: the token states
the captioner cross-attends to), each with its own parameters, as the CoCa paper has it (Yu et al., 2022, §3.2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_clip.efficientnet import EfficientNetLite, block_channels
from cl_clip.image_tower import ImageTower
from cl_clip.params import EfficientNetParams
from cl_clip.preprocess import CLIP_MEAN, CLIP_STD
from cl_clip.vit import ViTTrunk
from cl_core.api import BuildError, Encoder, EncoderOutput

from .layers import AttentionalPooler
from .params import CoCaImageParams


def _as_grid_tower(tower: ImageTower, tokens: int, channels: int) -> None:
    """Make ``tower`` return its flattened token grid as its "embedding": no projection, width T * C."""
    tower.proj = nn.Identity()
    tower.feature_dim = tower._embed_dim = tokens * channels
    tower.tokens, tower.channels = tokens, channels


class EfficientNetGrid(EfficientNetLite):
    """A pretrained EfficientNet-Lite whose output is its token grid ``[B, T * C]`` (see the module docstring);
    batch-norm folding, chunking and the feature cache are :class:`~cl_clip.efficientnet.EfficientNetLite`'s."""

    tokens: int
    channels: int

    def __init__(self, params: CoCaImageParams) -> None:
        super().__init__(EfficientNetParams(
            variant=params.variant, image_size=params.image_size, embed_dim=1, freeze=params.freeze,
            trainable_blocks=params.trainable_blocks, pretrained=params.pretrained, cache_features=params.cache_features, mean=params.mean, std=params.std,
            pool_blocks=tuple(sorted(set(params.token_blocks))), resize_mode=params.resize_mode,
            fill_color=params.fill_color))
        with torch.no_grad():  # the grid side follows from the trunk's strides and "same" padding
            grid = self.trunk.eval().extract_features(torch.zeros(1, 3, params.image_size, params.image_size))
        self.trunk.train(not params.freeze)
        channels = int(grid.shape[1]) + sum(block_channels(self.trunk, i) for i in self.pool_blocks)
        _as_grid_tower(self, int(grid.shape[2] * grid.shape[3]), channels)

    def _features(self, net: nn.Module, pixels: Tensor) -> Tensor:
        maps, x = self.feature_maps(net, pixels)
        grid = x.shape[-2:]
        x = torch.cat([F.adaptive_avg_pool2d(m, grid) for m in maps] + [x], dim=1)
        return x.flatten(2).transpose(1, 2).flatten(1)  # [B, h*w*C], token-major


class ViTGrid(ImageTower):
    """A ViT (``cl_clip.vit.ViTTrunk``) trained from scratch whose output is its token grid: the ``1 + grid**2``
    layer-normed output tokens, flattened."""

    tokens: int
    channels: int

    def __init__(self, params: CoCaImageParams) -> None:
        trunk = ViTTrunk(image_size=params.image_size, patch=params.patch, width=params.vit_width,
                         layers=params.vit_layers, heads=params.vit_heads)
        super().__init__(trunk, 1, 1, image_size=params.image_size, mean=params.mean or CLIP_MEAN,
                         std=params.std or CLIP_STD, freeze=False, cache_features=False,
                         resize_mode=params.resize_mode, fill_color=params.fill_color, head="linear")
        _as_grid_tower(self, 1 + trunk.grid**2, params.vit_width)

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.trunk.ln_post(self.trunk.tokens(self.pixels(inputs))).flatten(1)


def grid_tower(params: CoCaImageParams) -> EfficientNetGrid | ViTGrid:
    """The trunk of ``params`` as a grid tower."""
    return EfficientNetGrid(params) if params.trunk == "efficientnet" else ViTGrid(params)


class CoCaImage(Encoder):
    """Images -> the contrastive embedding ``[B, embed_dim]`` and, from :meth:`encode_states`, the captioning tokens
    ``[B, caption_queries, caption_width]`` of the same trunk pass.

    Attributes:
        grid: the trunk (:class:`EfficientNetGrid` or :class:`ViTGrid`).
        position: ``[T, C]`` learned position of each grid token (zero at the start).
        contrastive_pooler, caption_pooler: the two :class:`~cl_coca.layers.AttentionalPooler` (separate parameters).
        ln_contrastive, proj: the contrastive query's LayerNorm and its projection to the joint space.
        ln_caption: LayerNorm of the captioning tokens.
    """

    modality: ClassVar[str] = "image"
    provides_tokens: ClassVar[bool] = True

    def __init__(self, params: CoCaImageParams) -> None:
        super().__init__()
        self.params = params
        self.grid = grid_tower(params)
        tokens, channels = self.grid.tokens, self.grid.channels
        self.position = nn.Parameter(torch.zeros(tokens, channels))
        self.contrastive_pooler = AttentionalPooler(params.width, channels, 1, params.heads)
        self.ln_contrastive = nn.LayerNorm(params.width)
        self.proj = nn.Linear(params.width, params.embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=params.width**-0.5)
        self.caption_pooler = AttentionalPooler(params.caption_width, channels, params.caption_queries, params.heads)
        self.ln_caption = nn.LayerNorm(params.caption_width)

    @property
    def embed_dim(self) -> int:
        return self.params.embed_dim

    @property
    def caption_width(self) -> int:
        return self.params.caption_width

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """PIL images or uint8 ``[H, W, 3]`` arrays -> the trunk's inputs (``pixels``, and cache keys)."""
        return self.grid.prepare(items)

    def context(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The trunk's token grid ``[B, T, C]`` plus the learned positions."""
        flat = self.grid.encode(inputs)
        grid = flat.view(flat.shape[0], self.grid.tokens, self.grid.channels)
        return grid.to(self.position.dtype) + self.position

    def _contrastive(self, context: Tensor) -> Tensor:
        pooled, _ = self.contrastive_pooler(context)
        return self.proj(self.ln_contrastive(pooled[:, 0]))

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self._contrastive(self.context(inputs))

    def _encode_states(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        context = self.context(inputs)
        tokens, _ = self.caption_pooler(context)
        return EncoderOutput(self._contrastive(context), tokens=self.ln_caption(tokens))

    @torch.no_grad()
    def attention_maps(self, items: Sequence[Any]) -> Tensor:
        """``[len(items), caption_queries, T]``: each captioning query's attention over the grid tokens (heads
        averaged; rows sum to 1), in eval mode, on the encoder's device."""
        was = self.training
        self.eval()
        try:
            device = self.position.device
            inputs = {k: v.to(device) for k, v in self.prepare(items).items()}
            _, weights = self.caption_pooler(self.context(inputs), weights=True)
            assert weights is not None
            return weights
        finally:
            self.train(was)


def build_image(params: CoCaImageParams, ctx: Any) -> CoCaImage:
    """Factory of ``coca.image``.

    Raises:
        BuildError: the trunk cannot be built (weights missing or not matching).
    """
    try:
        return CoCaImage(params)
    except ValueError as exc:
        raise BuildError(f"{ctx.path or 'encoders.image'}: {exc}") from None
