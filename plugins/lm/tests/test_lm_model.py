"""lm.gpt2: its losses against transformers' own on the same weights, packing, scoring, the tokenizers and how
they travel in the weights, layer locking, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from cl_core.api import BuildContext, BuildError, EncoderOutput

from cl_lm.model import IGNORE, GPT2Decoder, build_gpt2
from cl_lm.params import GPT2Params
from cl_lm.testing import tiny_lm
from cl_lm.tokenizer import LMTokenizer, bytes_tokenizer, minilm_tokenizer, train_bpe

TEXTS = ["A grinning face with big eyes.", "naïve café 😀 – fine", "the cat sat on the mat " * 6, "ok hand"]


def test_lm_loss_equals_transformers_loss_on_packed_and_unpacked_rows(tiny_lm):
    for pack in (True, False):
        rows = tiny_lm.lm_rows(TEXTS, pack=pack)
        ours = tiny_lm.lm_loss(rows["ids"], rows["labels"])
        mask = (rows["labels"] != IGNORE).long()
        theirs = tiny_lm.model(input_ids=rows["ids"], attention_mask=mask, labels=rows["labels"]).loss
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
        assert 4.0 < float(ours.detach()) < 7.0  # random init over 257 byte tokens: about ln 257 = 5.55


def test_packing_predicts_every_token_once(tiny_lm):
    rows = tiny_lm.lm_rows(TEXTS, pack=True)
    tok = tiny_lm.tokenizer
    stream = [tok.bos_id]
    for ids in tok.ids(TEXTS):
        stream += ids + [tok.eos_id]  # bos = eos for the byte tokenizer: one <eot> between texts
    assert rows["ids"].shape[1] == tiny_lm.context
    targets = [int(t) for r in rows["labels"][:, 1:] for t in r if t != IGNORE]
    assert targets == stream[1:]
    unpacked = tiny_lm.lm_rows(TEXTS, pack=False)
    assert unpacked["ids"].shape[0] == len(TEXTS)
    assert int((unpacked["labels"][2] != IGNORE).sum()) == tiny_lm.context  # the long text is cut to the context


def test_caption_loss_equals_transformers_loss_after_a_prefix(tiny_lm):
    captions = ["a red heart", "a dog face", "smiling cat with heart eyes"]
    targets = tiny_lm.prepare(captions)
    prefix = torch.randn(3, 2 * tiny_lm.width, generator=torch.Generator().manual_seed(0))  # K = 2
    ours = tiny_lm.caption_loss(EncoderOutput(prefix), targets).value
    ids, mask = targets["ids"], targets["mask"]
    embeds = torch.cat([prefix.view(3, 2, -1), tiny_lm.embed_tokens(ids)], 1)
    labels = torch.cat([torch.full((3, 2), IGNORE), ids.masked_fill(mask == 0, IGNORE)], 1)
    # transformers shifts labels: position t predicts labels[t + 1]; the caption's first token follows the prefix
    theirs = tiny_lm.model(inputs_embeds=embeds, attention_mask=torch.cat([torch.ones(3, 2, dtype=torch.long), mask],
                                                                          1), labels=labels).loss
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_lm.caption_loss(EncoderOutput(torch.randn(3, 40)), targets)


def test_score_sums_the_negative_log_likelihood_of_every_token(tiny_lm):
    nll, count = tiny_lm.score(TEXTS, batch_size=3)
    for i, text in enumerate(TEXTS):
        ids = [tiny_lm.tokenizer.bos_id] + tiny_lm.tokenizer.ids([text])[0] + [tiny_lm.tokenizer.eos_id]
        assert int(count[i]) == len(ids) - 1
        if len(ids) <= tiny_lm.context:  # one window: transformers' mean loss times the tokens
            with torch.no_grad():
                loss = tiny_lm.model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
            assert float(nll[i]) == pytest.approx(float(loss) * (len(ids) - 1), rel=1e-5)
    assert count[2] > tiny_lm.context  # the long text took two windows


def test_empty_and_non_text_inputs_are_refused(tiny_lm):
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        tiny_lm.lm_rows(["fine", "  "])
    with pytest.raises(ValueError, match=r"captions\[0\]: expected a string"):
        tiny_lm.prepare([3])
    with pytest.raises(ValueError, match="no captions"):
        tiny_lm.prepare([])
    with pytest.raises(ValueError, match="exceeds the LM's context of 48"):
        tiny_lm.generate(prompts=["hello"], max_new_tokens=45)
    with pytest.raises(ValueError, match="prefix embeddings are 16 wide"):
        tiny_lm.generate(prefix=torch.randn(2, 1, 16))
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_lm.decode(torch.randn(2, 20))


def test_generate_from_prompts_and_unconditioned(tiny_lm):
    a = tiny_lm.generate(prompts=["The", "A much longer prompt"], max_new_tokens=5)
    assert len(a.texts) == 2 and all(len(t) <= 5 for t in a.tokens)
    b = tiny_lm.generate(3, method="sample", seed=1, max_new_tokens=6)
    assert b.texts == tiny_lm.generate(3, method="sample", seed=1, max_new_tokens=6).texts
    with pytest.raises(ValueError, match="not both"):
        tiny_lm.generate(2, prompts=["x", "y"])


# -- tokenizers -------------------------------------------------------------------------------------------------------


def test_byte_tokenizer_round_trips_any_text():
    tok = bytes_tokenizer()
    text = "Naïve café 😀, “quotes” and\ttabs"
    ids = tok.ids([text])[0]
    assert len(ids) == len(text.encode("utf-8")) and max(ids) < 256
    assert tok.decode(ids) == text
    assert tok.vocab_size == 257 and tok.eos_id == tok.bos_id == tok.pad_id == 256


def test_bpe_training_is_deterministic_merges_common_words_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    corpus = [f"the smiling face number {i} with the heart eyes" for i in range(300)] + TEXTS
    a = train_bpe(corpus, 400, use_cache=False)
    b = train_bpe(corpus, 400, use_cache=False)
    assert a.to_json() == b.to_json()
    assert len(a.ids([" smiling"])[0]) == 1  # a frequent word is one token
    assert a.decode(a.ids([TEXTS[1]])[0]) == TEXTS[1]  # byte level: unseen characters round-trip
    cached = train_bpe(corpus, 400)
    assert list((tmp_path / "cache" / "lm" / "tokenizers").glob("bpe-400-*.json"))
    assert train_bpe(corpus, 400).to_json() == cached.to_json() == a.to_json()
    again = LMTokenizer.from_bytes(a.to_bytes())
    assert again.to_json() == a.to_json() and again.eos_id == a.eos_id
    with pytest.raises(ValueError, match="not a saved LM tokenizer"):
        LMTokenizer.from_bytes(b"\xff\x00junk")


def test_minilm_wordpiece_is_usable_and_lossy_in_case_only():
    tok = minilm_tokenizer()
    ids = tok.ids(["A Smiling cat"])[0]
    assert tok.decode(ids) == "a smiling cat"
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (101, 102, 0) and tok.vocab_size == 30522


def test_the_tokenizer_travels_in_the_state_dict():
    """A decoder built as a load builds it (a stand-in tokenizer) takes the saved BPE and its size from the weights."""
    corpus = [f"emoji {i} of a face with tears of joy" for i in range(200)]
    ctx = BuildContext(dataset=_Data(corpus))
    params = GPT2Params(tokenizer="bpe", vocab_size=300, context=32, layers=1, width=16, heads=2)
    torch.manual_seed(0)
    trained = build_gpt2(params, ctx)
    assert trained.tokenizer.kind == "bpe"
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    loaded = build_gpt2(params, BuildContext(weights_follow=True))
    assert loaded.tokenizer.kind == "bytes"  # the stand-in
    loaded.resize_to_saved(state)
    loaded.load_state_dict(state, strict=True)
    assert loaded.tokenizer.to_json() == trained.tokenizer.to_json()
    text = "a face with tears of joy"
    assert loaded.tokenizer.ids([text]) == trained.tokenizer.ids([text])
    with pytest.raises(BuildError, match="no data"):
        build_gpt2(params, BuildContext())


class _Data:
    def __init__(self, texts):
        from cl_lm.data import TextSource

        self.source = TextSource(texts, [0] * len(texts), ["x"])

    def splits(self):
        return {"train": self.source}


# -- locking --------------------------------------------------------------------------------------------------------


def test_trainable_layers_lock_the_rest():
    lm = tiny_lm(trainable_layers=1)
    trainable = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.transformer.h.1.", "model.transformer.ln_f.")) for n in trainable)
    lm.train()
    assert not lm.model.transformer.h[0].training and lm.model.transformer.h[1].training
    lm.set_trainable(0)
    assert not any(p.requires_grad for p in lm.parameters())
    lm.set_trainable(None)
    assert all(p.requires_grad for p in lm.parameters())
    with pytest.raises(ValueError):
        GPT2Params(layers=2, trainable_layers=3)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    """With every logit equal, the NLL of each token is ln V: perplexity V, log2 V bits per byte-token."""
    lm = tiny_lm()
    with torch.no_grad():
        for p in lm.model.lm_head.parameters():
            p.zero_()  # tied: the token embeddings are zero too, the output is uniform
    nll, count = lm.score(["hello there"])
    assert float(nll[0]) / int(count[0]) == pytest.approx(math.log(257), rel=1e-5)
    assert isinstance(lm, GPT2Decoder)
