"""The text towers' tokenizer: the uncased WordPiece vocabulary of all-MiniLM-L6-v2 (BERT's 30,522 ids).

A caption becomes ``[CLS] w_1 ... w_n [SEP] [PAD] ...`` (``[PAD]`` = 0). ``[SEP]`` is the end-of-text
(EOT) token whose final state is the text feature of the causal tower, so truncation must never drop
it: a caption longer than the context keeps its first ``context_length - 2`` word pieces and still
ends with ``[SEP]`` (OpenAI CLIP's ``tokenize(truncate=True)`` overwrites the last kept token with EOT to
the same effect). Batches are padded to their longest row, at most ``context_length``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .pretrained import minilm_tokenizer_file


class WordPieceTokenizer:
    """Texts -> ``input_ids`` / ``attention_mask`` ``[B, T]`` int64 with ``[SEP]`` always last.

    Args:
        path: a HF ``tokenizer.json``; default the one shipped with all-MiniLM-L6-v2.

    Raises:
        DataError: the tokenizer file is missing.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        from tokenizers import Tokenizer

        self.path = Path(path) if path is not None else minilm_tokenizer_file()
        tok = Tokenizer.from_file(str(self.path))
        # We add the special tokens, truncate and pad ourselves (so [SEP] survives truncation).
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        ids = {name: tok.token_to_id(name) for name in ("[CLS]", "[SEP]", "[PAD]")}
        if None in ids.values():
            raise ValueError(f"{self.path} is not a BERT WordPiece tokenizer (no [CLS]/[SEP]/[PAD] tokens)")
        self.cls_id, self.sep_id, self.pad_id = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: Sequence[str], context_length: int) -> dict[str, Tensor]:
        """Tokenize a batch.

        Returns:
            ``input_ids`` ``[B, T]`` int64 and ``attention_mask`` ``[B, T]`` int64 (1 up to and including
            ``[SEP]``), where ``T = min(context_length, longest row)``.

        Raises:
            ValueError: ``texts`` is empty, an item is not a string, or ``context_length < 3``.
        """
        if context_length < 3:
            raise ValueError(f"context_length must be >= 3 ([CLS], one token, [SEP]), got {context_length}")
        if len(texts) == 0:
            raise ValueError("tokenize needs at least one text")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"items[{i}]: expected a string, got {type(t).__name__}")
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        rows = [[self.cls_id, *enc.ids[: context_length - 2], self.sep_id] for enc in encodings]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, special tokens dropped (for debugging and tests)."""
        return self._tok.decode(list(ids), skip_special_tokens=True)


@functools.cache
def minilm_wordpiece() -> WordPieceTokenizer:
    """The shared all-MiniLM-L6-v2 WordPiece tokenizer (loaded once per process)."""
    return WordPieceTokenizer()


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
    """``[B]`` int64 hashes of the texts: the feature-cache keys of captions."""
    import hashlib

    out = []
    for t in texts:
        digest = hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little", signed=True))
    return torch.tensor(out, dtype=torch.long)
