"""``clip.vit``: CLIP's Vision Transformer image tower, trained from scratch.

Dosovitskiy et al., 2021 ("An Image is Worth 16x16 Words") as used by CLIP (Radford et al., 2021,
``VisionTransformer``): a convolution with kernel = stride = ``patch`` cuts the image into patch
tokens, a learned class token is prepended, a learned positional embedding added, ``ln_pre``
normalises before the pre-LN transformer, and ``ln_post`` the pooled token; the projection W_I maps
it to the joint space. ``pool="attention"`` replaces the class token read-out by one learned query
attending over all tokens.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .image_tower import ImageTower
from .params import ViTParams
from .preprocess import CLIP_MEAN, CLIP_STD
from .transformer import AttentionPool, Transformer, default_heads


class ViTTrunk(nn.Module):
    """Pixels ``[B, 3, S, S]`` -> pooled, layer-normed token ``[B, width]``."""

    def __init__(self, *, image_size: int, patch: int, width: int, layers: int, heads: int | None = None,
                 mlp_ratio: float = 4.0, act: str = "gelu", pool: str = "cls") -> None:
        super().__init__()
        if image_size % patch != 0:
            raise ValueError(f"image_size = {image_size} must be a multiple of patch = {patch}")
        if pool not in ("cls", "attention"):
            raise ValueError(f"pool must be 'cls' or 'attention', got {pool!r}")
        heads = default_heads(width, heads)
        self.grid = image_size // patch
        self.pool_kind = pool
        scale = width**-0.5
        # CLIP's patch embedding has no bias (ln_pre follows).
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid**2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio, act)
        self.pool = AttentionPool(width, heads) if pool == "attention" else None
        self.ln_post = nn.LayerNorm(width)

    def tokens(self, pixels: Tensor) -> Tensor:
        """All output tokens ``[B, 1 + grid**2, width]`` (class token first)."""
        x = self.conv1(pixels)  # [B, width, grid, grid]
        if x.shape[-2:] != (self.grid, self.grid):
            raise ValueError(f"expected a {self.grid}x{self.grid} patch grid, got {tuple(x.shape[-2:])}")
        x = x.flatten(2).transpose(1, 2)  # [B, grid**2, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.transformer(self.ln_pre(x))

    def forward(self, pixels: Tensor) -> Tensor:
        x = self.tokens(pixels)
        pooled = x[:, 0] if self.pool is None else self.pool(x)
        return self.ln_post(pooled)


class ViT(ImageTower):
    """CLIP ViT image tower: ``prepare`` -> pixels; :meth:`encode` -> ``[B, embed_dim]``."""

    def __init__(self, params: ViTParams) -> None:
        trunk = ViTTrunk(image_size=params.image_size, patch=params.patch, width=params.width, layers=params.layers,
                         heads=params.heads, mlp_ratio=params.mlp_ratio, act=params.activation, pool=params.pool)
        super().__init__(
            trunk, params.width, params.embed_dim, image_size=params.image_size,
            mean=params.mean or CLIP_MEAN, std=params.std or CLIP_STD, augment=params.augment,
            freeze=params.freeze, cache_features=params.cache_features, resize_mode=params.resize_mode,
            fill_color=params.fill_color,
        )
        self.params = params

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.trunk(self.pixels(inputs))


def build_vit(params: ViTParams, ctx) -> ViT:
    return ViT(params)
