"""``clip.text-transformer``: CLIP's causal text tower, trained from scratch (Radford et al., 2021).

GPT-2-style (Radford et al., 2019): token embedding plus a learned positional embedding, a
causal-masked stack of pre-LN blocks, ``ln_final``, and the state **at the end-of-text token** as the
text feature, projected by W_T. There is no padding mask, as in CLIP (openai/CLIP#183): with the
causal mask no position up to EOT ever attends to the pads after it. Unlike CLIP, which finds EOT
with ``argmax`` over ids (its EOT has the largest id), the EOT position here is read from the attention
mask (the last kept position, which the tokenizer guarantees is ``[SEP]``).

Init as CLIP: token embedding std 0.02, positional embedding std 0.01.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from cl_core.api import hf

from .params import TextTransformerParams
from .tokenizer import eot_index, minilm_wordpiece, text_keys
from .tower import Tower
from .transformer import Transformer


class CausalTextTrunk(nn.Module):
    """Token ids ``[B, T]`` -> per-token states ``[B, T, width]`` and the EOT state ``[B, width]``."""

    def __init__(self, *, vocab_size: int, context_length: int, width: int, layers: int, heads: int | None = None,
                 mlp_ratio: float = 4.0, act: str = "gelu") -> None:
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads, mlp_ratio, act)
        self.ln_final = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

    def token_states(self, input_ids: Tensor) -> Tensor:
        """``[B, T, width]`` after ``ln_final``; position i depends only on tokens 0..i."""
        if input_ids.dim() != 2 or input_ids.shape[1] > self.context_length:
            raise ValueError(
                f"input_ids must have shape [B, T] with T <= {self.context_length}, got {list(input_ids.shape)}"
            )
        t = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:t].to(self.token_embedding.weight.dtype)
        return self.ln_final(self.transformer(x, causal=True))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        states = self.token_states(input_ids)
        eot = eot_index(attention_mask).to(states.device)
        return states[torch.arange(states.shape[0], device=states.device), eot]


class TextTransformer(Tower):
    """CLIP text tower over the MiniLM WordPiece vocabulary; ``prepare`` takes strings."""

    modality: ClassVar[str] = "text"

    def __init__(self, params: TextTransformerParams, tokenizer: hf.Tokenizer | None = None) -> None:
        tokenizer = tokenizer or minilm_wordpiece()
        trunk = CausalTextTrunk(vocab_size=tokenizer.vocab_size, context_length=params.context_length,
                                width=params.width, layers=params.layers, heads=params.heads,
                                mlp_ratio=params.mlp_ratio, act=params.activation)
        super().__init__(trunk, params.width, params.embed_dim, freeze=params.freeze,
                         cache_features=params.cache_features)
        self.tokenizer = tokenizer
        self.context_length = params.context_length
        self.params = params

    def prepare(self, items: Sequence[str]) -> dict[str, Tensor]:
        """Strings -> ``input_ids``, ``attention_mask`` ``[B, T]`` (plus ``key`` when frozen and caching)."""
        out = self.tokenizer(items, self.context_length)
        if self.wants_keys:
            out["key"] = text_keys(items)
        return out

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.trunk(inputs["input_ids"], inputs["attention_mask"])


def build_text_transformer(params: TextTransformerParams, ctx) -> TextTransformer:
    return TextTransformer(params)
