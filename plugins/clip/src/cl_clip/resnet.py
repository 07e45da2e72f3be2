"""``clip.resnet``: CLIP's ModifiedResNet image tower, trained from scratch (Radford et al., 2021).

Differences from a torchvision ResNet, as in CLIP:

* a stem of three 3x3 convolutions (the first with stride 2) followed by a 2x2 average pool instead
  of one 7x7 convolution and a max pool;
* anti-aliased strided convolutions (Zhang, 2019, "Making Convolutional Networks Shift-Invariant
  Again"): every strided bottleneck runs its 3x3 convolution at stride 1 and then down-samples with
  an average pool, and its shortcut average-pools before the 1x1 convolution;
* the global average pool is replaced by :class:`AttentionPool2d`: one multi-head attention whose
  single query is the mean of the final feature map (plus a learned positional embedding over the
  ``HW + 1`` tokens). Its output projection ``c_proj`` is the tower's projection W_I.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .image_tower import ImageTower
from .params import ResNetParams
from .preprocess import CLIP_MEAN, CLIP_STD
from .transformer import merge_heads, split_heads


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> (avg-pool if strided) -> 1x1 (x4 channels) with an avg-pool + 1x1 shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        # CLIP zero-initialises the last BN of each residual branch, so each block starts as identity.
        nn.init.zeros_(self.bn3.weight)
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                nn.Conv2d(inplanes, out, 1, bias=False),
                nn.BatchNorm2d(out),
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.avgpool(y)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(y + identity)


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling of a feature map ``[B, C, H, W] -> [B, C]`` (before ``c_proj``).

    Tokens are the ``H*W`` positions with the mean token prepended; a learned positional embedding
    (``[HW + 1, C]``, init ``randn / sqrt(C)``) is added; multi-head attention uses **only the mean
    token as the query** and all ``HW + 1`` tokens as keys and values.
    """

    def __init__(self, spatial: int, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads != 0:
            raise ValueError(f"heads = {heads} must divide channels = {channels}")
        self.spatial = spatial
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(spatial * spatial + 1, channels) / channels**0.5)
        self.q_proj = nn.Linear(channels, channels)
        self.k_proj = nn.Linear(channels, channels)
        self.v_proj = nn.Linear(channels, channels)
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.normal_(lin.weight, std=channels**-0.5)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.spatial, self.spatial):
            raise ValueError(f"expected a {self.spatial}x{self.spatial} feature map, got {tuple(x.shape[-2:])}")
        x = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # [B, HW + 1, C]
        x = x + self.positional_embedding.to(x.dtype)
        q = split_heads(self.q_proj(x[:, :1]), self.heads)
        k = split_heads(self.k_proj(x), self.heads)
        v = split_heads(self.v_proj(x), self.heads)
        return merge_heads(F.scaled_dot_product_attention(q, k, v))[:, 0]


class ModifiedResNetTrunk(nn.Module):
    """Pixels ``[B, 3, S, S]`` -> attention-pooled features ``[B, width * 32]``."""

    def __init__(self, *, image_size: int, layers: Sequence[int], width: int, heads: int | None = None) -> None:
        super().__init__()
        if len(layers) != 4 or any(n <= 0 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {tuple(layers)}")
        if image_size % 32 != 0 or width % 2 != 0:
            raise ValueError(f"image_size must be a multiple of 32 and width even, got {image_size} and {width}")
        half = width // 2
        self.conv1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        stages = []
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            stage = [Bottleneck(inplanes, planes, stride=1 if i == 0 else 2)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = width * 32
        self.attnpool = AttentionPool2d(image_size // 32, self.out_channels, heads or self.out_channels // 64 or 1)

    def feature_map(self, pixels: Tensor) -> Tensor:
        """The last stage's output ``[B, width * 32, S / 32, S / 32]``."""
        x = F.relu(self.bn1(self.conv1(pixels)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, pixels: Tensor) -> Tensor:
        return self.attnpool(self.feature_map(pixels))


class ModifiedResNet(ImageTower):
    """CLIP ModifiedResNet tower; the projection (``proj``, with bias) is CLIP's ``attnpool.c_proj``."""

    def __init__(self, params: ResNetParams) -> None:
        trunk = ModifiedResNetTrunk(image_size=params.image_size, layers=params.layers, width=params.width,
                                    heads=params.heads)
        super().__init__(
            trunk, trunk.out_channels, params.embed_dim, image_size=params.image_size,
            mean=params.mean or CLIP_MEAN, std=params.std or CLIP_STD, augment=params.augment,
            freeze=params.freeze, cache_features=params.cache_features, proj_bias=True,
            resize_mode=params.resize_mode, fill_color=params.fill_color,
        )
        self.params = params

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.trunk(self.pixels(inputs))


def build_resnet(params: ResNetParams, ctx) -> ModifiedResNet:
    return ModifiedResNet(params)
