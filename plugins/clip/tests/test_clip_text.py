"""The causal text tower and its WordPiece tokenizer: EOT truncation (case 9), EOT pooling, causality."""

from __future__ import annotations

import pytest
import torch

from cl_clip import params as P
from cl_clip.text import TextTransformer
from cl_clip.tokenizer import eot_index, minilm_wordpiece

CLS, SEP, PAD = 101, 102, 0


def tiny(context_length: int = 16) -> TextTransformer:
    tower = TextTransformer(P.TextTransformerParams(context_length=context_length, width=64, layers=2, embed_dim=16))
    return tower.eval()


def test_tokenizer_special_ids_and_lowercase():
    tok = minilm_wordpiece()
    assert (tok.cls_id, tok.sep_id, tok.pad_id) == (CLS, SEP, PAD)
    assert tok.vocab_size == 30522
    out = tok(["A Dog", "a dog"], 16)
    assert out["input_ids"][0].tolist() == out["input_ids"][1].tolist()  # uncased
    assert out["input_ids"][0].tolist() == [CLS, 1037, 3899, SEP]


def test_truncation_keeps_end_of_text_last():
    """Case 9: a caption longer than the context keeps its EOT token as the last token."""
    tok = minilm_wordpiece()
    long = " ".join(f"word{i}" for i in range(100))
    out = tok([long, "short one"], 12)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == (2, 12)
    assert ids[0, 0] == CLS and ids[0, -1] == SEP and mask[0].all()
    content = tok._tok.encode(long, add_special_tokens=False).ids
    assert ids[0, 1:-1].tolist() == content[:10]  # the first context - 2 pieces, in order
    # the short caption ends with [SEP] and pads with [PAD] = 0 after it
    n = int(mask[1].sum())
    assert ids[1, n - 1] == SEP and (ids[1, n:] == PAD).all() and (mask[1, n:] == 0).all()
    assert eot_index(mask).tolist() == [11, n - 1]


def test_batch_pads_to_longest_not_to_context():
    out = minilm_wordpiece()(["a", "a b c"], 32)
    assert out["input_ids"].shape == (2, 5)


def test_tokenizer_rejects_non_strings():
    with pytest.raises(ValueError, match=r"items\[1\]: expected a string"):
        minilm_wordpiece()(["ok", 3], 8)


def test_pooling_reads_the_eot_state():
    tower = tiny()
    prepared = tower.prepare(["a dog", "a much longer caption about a red heart"])
    states = tower.trunk.token_states(prepared["input_ids"])
    pooled = tower.features(prepared)
    for row in range(2):
        sep = int((prepared["input_ids"][row] == SEP).nonzero()[0, 0])
        torch.testing.assert_close(pooled[row], states[row, sep])
    assert not torch.allclose(pooled[0], states[0, -1])  # not simply the last (pad) position


def test_causal_mask_later_tokens_do_not_change_earlier_states():
    tower = tiny()
    ids = tower.prepare(["one two three four five six"])["input_ids"]
    changed = ids.clone()
    changed[0, 4:] = torch.tensor([2000 + i for i in range(changed.shape[1] - 4)])
    a = tower.trunk.token_states(ids)
    b = tower.trunk.token_states(changed)
    torch.testing.assert_close(a[0, :4], b[0, :4])
    assert not torch.allclose(a[0, 4:], b[0, 4:])


def test_embedding_independent_of_padding_and_batch():
    tower = tiny()
    alone = tower.encode(tower.prepare(["a dog"]))
    batched = tower.encode(tower.prepare(["a dog", "a much longer caption with many more words"]))
    torch.testing.assert_close(alone[0], batched[0], rtol=1e-5, atol=1e-5)
    # garbage after the end-of-text token (where pads are) cannot leak into the pooled feature
    prepared = tower.prepare(["a dog", "a much longer caption with many more words"])
    noisy = dict(prepared)
    ids = prepared["input_ids"].clone()
    ids[0][prepared["attention_mask"][0] == 0] = 4242
    noisy["input_ids"] = ids
    torch.testing.assert_close(tower.encode(noisy)[0], batched[0], rtol=1e-5, atol=1e-5)


def test_prefix_pooled_output_matches_state_at_prefix_end():
    """The feature of a caption equals the state at the same position inside a longer caption that
    starts with the same tokens up to and including [SEP] (only earlier tokens are attended)."""
    tower = tiny()
    short = tower.prepare(["red heart"])
    ids = short["input_ids"][0].tolist()  # [CLS] red heart [SEP]
    longer = torch.tensor([ids + [1037, 3899, SEP]])
    states = tower.trunk.token_states(longer)
    torch.testing.assert_close(tower.features(short)[0], states[0, len(ids) - 1])


def test_too_long_input_is_rejected():
    tower = tiny(context_length=8)
    with pytest.raises(ValueError, match="T <= 8"):
        tower.trunk.token_states(torch.ones(1, 9, dtype=torch.long))
