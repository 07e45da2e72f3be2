"""Pre-LN transformer blocks shared by the ViT and text towers, and a learned-query attention pool.

As in CLIP (Radford et al., 2021) and GPT-2: ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))`` with a
4x MLP. Attention runs through ``F.scaled_dot_product_attention`` (fused kernels where available);
``causal=True`` gives the text tower's autoregressive mask. Initialisation follows CLIP's
``initialize_parameters``: attention in-projections std ``width**-0.5``, out-projections and MLP
outputs std ``width**-0.5 * (2 * layers)**-0.5``, MLP inputs std ``(2 * width)**-0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation OpenAI CLIP was trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"activation must be 'gelu' or 'quick_gelu', got {name!r}")


def default_heads(width: int, heads: int | None) -> int:
    """``heads`` or CLIP's default ``width // 64`` (at least 1); raises ValueError unless it divides width."""
    h = heads if heads is not None else max(1, width // 64)
    if h <= 0 or width % h != 0:
        raise ValueError(f"heads = {h} must be > 0 and divide width = {width}")
    return h


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``[B, L, D] -> [B, heads, L, D / heads]``."""
    b, n, d = x.shape
    return x.reshape(b, n, heads, d // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """``[B, heads, L, d] -> [B, L, heads * d]``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = default_heads(width, heads)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, *, causal: bool = False) -> Tensor:
        """``x [B, L, D] -> [B, L, D]``; with ``causal`` position i attends to positions <= i only."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(
            split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads), is_causal=causal
        )
        return self.out(merge_heads(y))


class Block(nn.Module):
    """Pre-LN residual attention block (``ResidualAttentionBlock`` in CLIP)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, act: str = "gelu") -> None:
        super().__init__()
        hidden = int(round(width * mlp_ratio))
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), activation(act), nn.Linear(hidden, width))

    def forward(self, x: Tensor, *, causal: bool = False) -> Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """``layers`` pre-LN blocks of width ``width``; input and output ``[B, L, width]``."""

    def __init__(self, width: int, layers: int, heads: int | None = None, mlp_ratio: float = 4.0,
                 act: str = "gelu") -> None:
        super().__init__()
        if width <= 0 or layers <= 0:
            raise ValueError(f"width and layers must be > 0, got {width} and {layers}")
        self.width = width
        h = default_heads(width, heads)
        self.blocks = nn.ModuleList(Block(width, h, mlp_ratio, act) for _ in range(layers))
        self.init_weights()

    def init_weights(self) -> None:
        """CLIP's initialisation of the residual blocks (see the module docstring)."""
        attn_std = self.width**-0.5
        proj_std = attn_std * (2 * len(self.blocks)) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv.weight, std=attn_std)
            nn.init.zeros_(block.attn.qkv.bias)
            nn.init.normal_(block.attn.out.weight, std=proj_std)
            nn.init.zeros_(block.attn.out.bias)
            nn.init.normal_(block.mlp[0].weight, std=fc_std)
            nn.init.zeros_(block.mlp[0].bias)
            nn.init.normal_(block.mlp[2].weight, std=proj_std)
            nn.init.zeros_(block.mlp[2].bias)

    def forward(self, x: Tensor, *, causal: bool = False) -> Tensor:
        for block in self.blocks:
            x = block(x, causal=causal)
        return x


class AttentionPool(nn.Module):
    """One learned query attending over a token sequence: ``[B, L, D] -> [B, D]``.

    Multi-head attention whose query is a learned vector and whose keys/values are the (layer-normed)
    tokens: the single-query case of CoCa's / open_clip's attentional pooler, and the learned-query
    analogue of CLIP's ``AttentionPool2d`` (whose query is the mean token).
    """

    def __init__(self, width: int, heads: int | None = None) -> None:
        super().__init__()
        self.heads = default_heads(width, heads)
        self.query = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.ln_k = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        for lin in (self.q, self.kv, self.out):
            nn.init.normal_(lin.weight, std=width**-0.5)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        k, v = self.kv(self.ln_k(x)).chunk(2, dim=-1)
        q = self.q(self.query.expand(b, -1, -1))
        y = F.scaled_dot_product_attention(
            split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)
        )
        return self.out(merge_heads(y))[:, 0]
