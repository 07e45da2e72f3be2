"""Tokens of a sentence pair for BERT: ``[CLS] A [SEP] B [SEP]``, longest-first truncation, masked-LM noise.

Pure functions over token-id lists and tensors (no model), shared by the ``bert-nsp.bert`` encoder and
its tests. Conventions from BERT's ``create_pretraining_data.py`` (Devlin et al., 2019):

* **truncation** (``truncate_seq_pair``): while the pair is longer than the budget, drop the last token of
  the longer sentence (of B when both are equally long); the special tokens are added afterwards, so a
  truncated pair still ends with ``[SEP]``;
* **segment ids** (``token_type_ids``): 0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``;
* **masked LM**: every non-special token is chosen with probability p; a chosen token becomes ``[MASK]``
  80% of the time, a uniformly random vocabulary id 10%, and stays 10%; labels are the original ids at
  chosen positions and -100 elsewhere (transformers' ``DataCollatorForLanguageModeling``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

IGNORE_INDEX = -100


class SentencePair(NamedTuple):
    """One NSP example: sentence ``a``, sentence ``b`` and the ``seed`` of its masked-LM noise.

    The sampler draws ``seed`` from the epoch's generator, so masks differ between epochs yet are the
    same after a resume; a plain ``(a, b)`` tuple gets a seed hashed from its text.
    """

    a: str
    b: str
    seed: int = -1


def as_pair(item: Any, position: int) -> SentencePair:
    """``item`` as a :class:`SentencePair` (accepts ``SentencePair`` or a 2-sequence of strings).

    Raises:
        TypeError: anything else (names the batch position).
    """
    if isinstance(item, SentencePair):
        return item
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(s, str) for s in item):
        return SentencePair(item[0], item[1])
    raise TypeError(f"pair {position}: expected a (sentence_a, sentence_b) pair of strings, got {item!r:.80}")


def text_seed(pair: SentencePair) -> int:
    """The masking seed of ``pair``: its own, or a stable hash of both sentences (not Python's ``hash``)."""
    if pair.seed >= 0:
        return int(pair.seed)
    digest = hashlib.blake2b(f"{pair.a}\0{pair.b}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def truncation_lengths(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Kept lengths of A and B under longest-first truncation to ``max_tokens`` tokens (without specials).

    Equal to removing, one at a time, the last token of the longer sentence (B on ties) until the pair
    fits. Raises ValueError when ``max_tokens < 0``.
    """
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    excess = len_a + len_b - max_tokens
    if excess <= 0:
        return len_a, len_b
    gap = min(excess, abs(len_a - len_b))
    if len_a > len_b:
        len_a -= gap
    else:
        len_b -= gap
    excess -= gap
    return len_a - excess // 2, len_b - (excess - excess // 2)


def build_pair_ids(
    a: Sequence[int], b: Sequence[int], block_size: int, cls_id: int, sep_id: int
) -> tuple[list[int], list[int]]:
    """``([CLS] A [SEP] B [SEP]`` ids, segment ids``)`` of at most ``block_size`` tokens, cut longest-first."""
    keep_a, keep_b = truncation_lengths(len(a), len(b), block_size - 3)
    ids = [cls_id, *a[:keep_a], sep_id, *b[:keep_b], sep_id]
    segments = [0] * (keep_a + 2) + [1] * (keep_b + 1)
    return ids, segments


def pad_batch(rows: Sequence[Sequence[int]], segments: Sequence[Sequence[int]], pad_id: int) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``token_type_ids``, ``attention_mask`` ``[B, T]`` (T = longest row), int64."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, seg) in enumerate(zip(rows, segments, strict=True)):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        types[i, : len(seg)] = torch.as_tensor(seg, dtype=torch.long)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def mask_tokens(
    input_ids: Tensor,
    maskable: Tensor,
    seeds: Sequence[int],
    *,
    probability: float,
    mask_id: int,
    vocab_size: int,
) -> tuple[Tensor, Tensor]:
    """BERT's masked-LM corruption of ``input_ids [B, T]``; returns ``(corrupted ids, labels)``, both ``[B, T]``.

    ``maskable [B, T]`` (bool) marks the positions that may be chosen (not ``[CLS]``, ``[SEP]``, padding).
    Row ``i`` draws from its own generator seeded with ``seeds[i]`` (numpy PCG64), never from a global
    RNG, so the result is a function of the ids and seeds alone (safe in a background thread, the same
    after a resume, independent of the batch's other rows).
    """
    ids = input_ids.clone()
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for i, seed in enumerate(seeds):
        positions = torch.nonzero(maskable[i], as_tuple=False).flatten().numpy()
        if positions.size == 0:
            continue
        rng = np.random.default_rng(int(seed))
        chosen = positions[rng.random(positions.size) < probability]
        if chosen.size == 0:
            continue
        how = rng.random(chosen.size)
        random_ids = rng.integers(0, vocab_size, size=chosen.size)
        idx = torch.as_tensor(chosen, dtype=torch.long)
        labels[i, idx] = ids[i, idx]
        to_mask = torch.as_tensor(how < 0.8)
        to_random = torch.as_tensor((how >= 0.8) & (how < 0.9))
        ids[i, idx[to_mask]] = mask_id
        ids[i, idx[to_random]] = torch.as_tensor(random_ids[to_random.numpy()], dtype=torch.long)
    return ids, labels
