"""CoCa's building blocks: a pre-norm transformer block (causal self-attention with an optional key mask and KV
cache, optional cross-attention, MLP) laid out as GPT-2's so a ``cl-lm`` run's blocks load into it, and the
attentional pooler (Lee et al., 2019, "Set Transformer"; CoCa's ``AttentionalPooler``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)  # [b, h, t, d/h]


def _merge_heads(x: Tensor) -> Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


class Block(nn.Module):
    """``x + attn(ln_1 x)``, then (with ``cross``) ``+ cross(ln_cross x, memory)``, then ``+ mlp(ln_2 x)``.

    Self-attention and MLP are GPT-2's (Radford et al., 2019; ``gelu`` with the tanh approximation): their
    parameters take a GPT-2 block's with :meth:`load_gpt2`. The cross-attention's output projection starts at
    zero, so a block loaded from an LM computes what the LM's block did until training moves it.

    Args:
        width: D, > 0; heads: must divide it.
        cross: add cross-attention to a memory ``[B, M, D]``.
        dropout: on attention outputs and the MLP output.
    """

    def __init__(self, width: int, heads: int, *, cross: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads = {heads} must divide width = {width}")
        self.width, self.heads, self.dropout = width, heads, dropout
        self.ln_1 = nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.attn_proj = nn.Linear(width, width)
        self.cross = cross
        if cross:
            self.ln_cross = nn.LayerNorm(width)
            self.cross_q = nn.Linear(width, width)
            self.cross_kv = nn.Linear(width, 2 * width)
            self.cross_proj = nn.Linear(width, width)
            nn.init.zeros_(self.cross_proj.weight)
            nn.init.zeros_(self.cross_proj.bias)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp_fc = nn.Linear(width, 4 * width)
        self.mlp_proj = nn.Linear(4 * width, width)
        self.drop = nn.Dropout(dropout)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``[B, h, M, D/h]`` of a cross-attention memory (computed once per generation)."""
        k, v = self.cross_kv(memory).split(self.width, dim=-1)
        return _split_heads(k, self.heads), _split_heads(v, self.heads)

    def forward(self, x: Tensor, mask: Tensor | None, *, memory_kv: tuple[Tensor, Tensor] | None = None,
                past: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x [B, T, D]`` -> ``([B, T, D], (keys, values) of every position so far)``.

        Args:
            mask: ``[B, 1 or T, S]`` bool, True where a query may attend (S = past + T keys); None: causal.
            memory_kv: :meth:`memory_kv` of the memory (blocks with ``cross``).
            past: keys and values ``[B, h, S - T, D/h]`` of earlier positions (the KV cache).
        """
        q, k, v = self.c_attn(self.ln_1(x)).split(self.width, dim=-1)
        q, k, v = (_split_heads(t, self.heads) for t in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        drop = self.dropout if self.training else 0.0
        if mask is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=past is None and q.shape[2] > 1, dropout_p=drop)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], dropout_p=drop)
        x = x + self.drop(self.attn_proj(_merge_heads(a)))
        if self.cross:
            if memory_kv is None:
                raise ValueError("a cross-attention block needs the memory's keys and values")
            cq = _split_heads(self.cross_q(self.ln_cross(x)), self.heads)
            c = F.scaled_dot_product_attention(cq, memory_kv[0], memory_kv[1], dropout_p=drop)
            x = x + self.drop(self.cross_proj(_merge_heads(c)))
        h = self.mlp_proj(F.gelu(self.mlp_fc(self.ln_2(x)), approximate="tanh"))
        return x + self.drop(h), (k, v)

    @torch.no_grad()
    def load_gpt2(self, state: Mapping[str, Tensor]) -> None:
        """Take a ``transformers`` GPT-2 block's weights (``ln_1.*``, ``attn.c_attn.*``, ``attn.c_proj.*``,
        ``ln_2.*``, ``mlp.c_fc.*``, ``mlp.c_proj.*``; its ``Conv1D`` weights are ``[in, out]``, transposed here).

        Raises:
            ValueError: a missing key or a shape that does not fit this block.
        """
        pairs = {"ln_1": self.ln_1, "attn.c_attn": self.c_attn, "attn.c_proj": self.attn_proj, "ln_2": self.ln_2,
                 "mlp.c_fc": self.mlp_fc, "mlp.c_proj": self.mlp_proj}
        for name, module in pairs.items():
            for kind in ("weight", "bias"):
                key = f"{name}.{kind}"
                if key not in state:
                    raise ValueError(f"the GPT-2 block has no {key}")
                value = state[key]
                if kind == "weight" and isinstance(module, nn.Linear):
                    value = value.t()
                target = getattr(module, kind)
                if value.shape != target.shape:
                    raise ValueError(f"{key}: the LM's is {list(value.shape)}, this block's {list(target.shape)}")
                target.copy_(value)


class AttentionalPooler(nn.Module):
    """``n`` learned queries attend over a context ``[B, T, C]`` with one multi-head attention layer (LayerNorm
    on the queries and on the context, as open_clip's ``AttentionalPooler``), giving ``[B, n, width]``.

    Args:
        width: the queries' (and output's) width; heads: must divide it.
        context_width: C of the context.
        queries: n.
    """

    def __init__(self, width: int, context_width: int, queries: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(queries, width) * width**-0.5)
        self.ln_q = nn.LayerNorm(width)
        self.ln_k = nn.LayerNorm(context_width)
        self.attn = nn.MultiheadAttention(width, heads, kdim=context_width, vdim=context_width, batch_first=True)

    def forward(self, context: Tensor, *, weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """``([B, n, width] pooled, [B, n, T] head-averaged attention or None)``."""
        x = self.ln_k(context)
        q = self.ln_q(self.query).unsqueeze(0).expand(x.shape[0], -1, -1)
        out, attention = self.attn(q, x, x, need_weights=weights, average_attn_weights=True)
        return out, attention
