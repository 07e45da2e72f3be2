"""ClipCap's two mappers from a condition embedding ``[B, N]`` to K prefix embeddings ``[B, K, D]`` (Mokady et
al., 2021, "ClipCap: CLIP Prefix for Image Captioning", sec. 3):

* :class:`MLPMapper`: ``N -> D*K/2 -> D*K`` with tanh between the two linear layers, reshaped to ``[K, D]``
  (used with a fine-tuned LM);
* :class:`TransformerMapper`: a linear map of the embedding to ``clip_length`` tokens of width D, followed by K
  learned constant tokens (drawn from N(0, 1)), through a stack of pre-LN transformer layers (multi-head self
  attention with bias-free query / key / value maps, then a ReLU MLP of ``mlp_ratio * D``); the last K outputs
  are the prefix (used with a frozen LM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLPMapper(nn.Module):
    """``[B, N] -> [B, K, D]`` through ``Linear(N, D*K//2)``, tanh, ``Linear(D*K//2, D*K)``."""

    def __init__(self, in_dim: int, width: int, prefix_length: int) -> None:
        super().__init__()
        self.prefix_length, self.width = prefix_length, width
        hidden = (width * prefix_length) // 2
        self.model = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, width * prefix_length))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).view(x.shape[0], self.prefix_length, self.width)


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_queries = nn.Linear(width, width, bias=False)
        self.to_keys_values = nn.Linear(width, 2 * width, bias=False)
        self.project = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q = self.to_queries(x).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        kv = self.to_keys_values(x).view(b, n, 2, self.heads, c // self.heads)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v, no mask
        return self.project(out.transpose(1, 2).reshape(b, n, c))


class _Layer(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width)
        self.attn = _Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.relu(self.fc1(self.norm2(x))))


class TransformerMapper(nn.Module):
    """``[B, N] -> [B, K, D]``: ``[linear(x) as clip_length tokens; K constants]`` through the layers, last K out.

    Raises:
        ValueError: ``heads`` does not divide ``width``.
    """

    def __init__(self, in_dim: int, width: int, prefix_length: int, clip_length: int, layers: int = 8,
                 heads: int = 8, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"mapper_heads = {heads} must divide the LM width {width}")
        self.prefix_length, self.clip_length, self.width = prefix_length, clip_length, width
        self.linear = nn.Linear(in_dim, clip_length * width)
        self.prefix_const = nn.Parameter(torch.randn(prefix_length, width))
        self.layers = nn.ModuleList(_Layer(width, heads, mlp_ratio) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.linear(x).view(x.shape[0], self.clip_length, self.width)
        h = torch.cat([tokens, self.prefix_const.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        for layer in self.layers:
            h = layer(h)
        return h[:, self.clip_length :]
