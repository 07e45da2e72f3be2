"""Pair tokens: longest-first truncation that keeps [SEP] (case 9), segment ids, masked-LM noise."""

from __future__ import annotations

import pytest
import torch

from cl_bert_nsp.nsp_tokens import (IGNORE_INDEX, SentencePair, as_pair, build_pair_ids, mask_tokens,
                                    text_seed, truncation_lengths)

CLS, SEP, PAD, MASK = 101, 102, 0, 103


def _reference(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """BERT's truncate_seq_pair, one token at a time: pop from the longer, B on ties."""
    while len_a + len_b > budget:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


@pytest.mark.parametrize("budget", [0, 1, 2, 5, 13, 40])
def test_truncation_lengths_match_one_at_a_time_reference(budget):
    for len_a in range(0, 30, 3):
        for len_b in range(0, 30, 4):
            assert truncation_lengths(len_a, len_b, budget) == _reference(len_a, len_b, budget), (len_a, len_b)


def test_long_pair_is_cut_longest_first_and_still_ends_with_sep():
    a, b = list(range(1000, 1030)), list(range(2000, 2006))  # 30 + 6 tokens, block 20 -> 17 for text
    ids, segments = build_pair_ids(a, b, 20, CLS, SEP)
    assert len(ids) == 20 and ids[0] == CLS and ids[-1] == SEP
    first_sep = ids.index(SEP)
    assert ids[1:first_sep] == a[:11] and ids[first_sep + 1 : -1] == b  # only the longer A lost tokens
    assert segments == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)


def test_equal_long_sentences_share_the_budget():
    ids, _ = build_pair_ids(list(range(50)), list(range(100, 150)), 13, CLS, SEP)
    first_sep = ids.index(SEP)
    assert ids[1:first_sep] == list(range(5)) and ids[first_sep + 1 : -1] == list(range(100, 105))


def test_short_pair_is_untouched():
    ids, segments = build_pair_ids([5, 6], [7], 64, CLS, SEP)
    assert ids == [CLS, 5, 6, SEP, 7, SEP] and segments == [0, 0, 0, 0, 1, 1]


def test_as_pair_accepts_pairs_and_rejects_the_rest():
    assert as_pair(("x", "y"), 0) == SentencePair("x", "y")
    assert as_pair(["x", "y"], 0).b == "y"
    with pytest.raises(TypeError, match="pair 3"):
        as_pair("just one sentence", 3)
    with pytest.raises(TypeError):
        as_pair(("a", "b", "c"), 0)


def test_text_seed_is_stable_and_respects_an_explicit_seed():
    assert text_seed(SentencePair("a", "b")) == text_seed(SentencePair("a", "b"))
    assert text_seed(SentencePair("a", "b")) != text_seed(SentencePair("b", "a"))
    assert text_seed(SentencePair("a", "b", 7)) == 7


def _batch(rows=64, width=40):
    ids = torch.randint(1000, 2000, (rows, width), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, 20], ids[:, -1] = CLS, SEP, SEP
    maskable = (ids != CLS) & (ids != SEP)
    maskable[:, 30:] = False  # pretend padding
    return ids, maskable


def test_masking_never_touches_special_or_padding_positions_and_labels_originals():
    ids, maskable = _batch()
    corrupted, labels = mask_tokens(ids, maskable, list(range(64)), probability=0.5, mask_id=MASK, vocab_size=30522)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~maskable).any()
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    assert torch.equal(labels[chosen], ids[chosen])


def test_masking_rates_are_15_percent_and_80_10_10():
    ids, maskable = _batch(rows=400)
    corrupted, labels = mask_tokens(ids, maskable, list(range(400)), probability=0.15, mask_id=MASK, vocab_size=30522)
    chosen = labels != IGNORE_INDEX
    rate = chosen.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < 0.01
    n = chosen.sum().item()
    masked = (corrupted[chosen] == MASK).sum().item() / n
    kept = (corrupted[chosen] == ids[chosen]).sum().item() / n
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.03  # the rest (~10%) are random ids


def test_masking_depends_on_row_seed_only():
    ids, maskable = _batch(rows=4)
    first, _ = mask_tokens(ids, maskable, [11, 12, 13, 14], probability=0.3, mask_id=MASK, vocab_size=30522)
    again, _ = mask_tokens(ids, maskable, [11, 12, 13, 14], probability=0.3, mask_id=MASK, vocab_size=30522)
    alone, _ = mask_tokens(ids[2:3], maskable[2:3], [13], probability=0.3, mask_id=MASK, vocab_size=30522)
    other, _ = mask_tokens(ids, maskable, [21, 22, 23, 24], probability=0.3, mask_id=MASK, vocab_size=30522)
    assert torch.equal(first, again) and torch.equal(first[2:3], alone)
    assert not torch.equal(first, other)
    state = torch.get_rng_state()
    mask_tokens(ids, maskable, [1, 2, 3, 4], probability=0.3, mask_id=MASK, vocab_size=30522)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is never drawn from
