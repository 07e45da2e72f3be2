"""cl_lm.generate against transformers' generate on the same random weights, and its own promises: sampling
that is seeded and stays inside top-k / top-p, stop strings, KV cache = no cache, batching that does not
change results, and bad input refused before any work."""

from __future__ import annotations

import pytest
import torch
from cl_lm.generate import Decoding, cut_at_stop, filter_logits, generate
from cl_lm.testing import random_gpt2

EOS, PAD = 1, 2


def _prefix(rows: int, k: int = 3, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, k, width, generator=torch.Generator().manual_seed(seed))


def _hf(model, *, inputs_embeds=None, input_ids=None, attention_mask=None, **kwargs):
    """transformers' generate with the end and pad tokens of these tests (scores returned)."""
    return model.generate(inputs_embeds=inputs_embeds, input_ids=input_ids, attention_mask=attention_mask,
                          eos_token_id=EOS, pad_token_id=PAD, do_sample=False, return_dict_in_generate=True,
                          output_scores=True, **kwargs)


def _left_padded(prompts, model, prefix=None):
    """inputs_embeds / attention_mask as transformers wants them for left-padded rows (prefix, then prompt)."""
    embed = model.get_input_embeddings()
    k = 0 if prefix is None else prefix.shape[1]
    width = k + max(len(p) for p in prompts)
    embeds = torch.zeros(len(prompts), width, embed.embedding_dim)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            n = k + len(p)
            if prefix is not None:
                embeds[i, width - n : width - n + k] = prefix[i]
            if p:
                embeds[i, width - len(p) :] = embed(torch.tensor(p))
            mask[i, width - n :] = 1
    return embeds, mask


# -- the same outputs as transformers ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_equals_transformers_generate_on_prefixes(seed):
    model = random_gpt2(seed, eos_boost=2.0)
    prefix = _prefix(12, seed=seed)
    ours = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(max_new_tokens=20))
    theirs = _hf(model, inputs_embeds=prefix, attention_mask=torch.ones(12, 3, dtype=torch.long), max_new_tokens=20)
    lengths = {len(t) for t in ours.tokens}
    assert len(lengths) > 3, "the rows should end at different steps for this test to mean something"
    assert torch.equal(ours.sequences, theirs.sequences)
    # the score is the summed log-probability of the generated tokens
    logp = torch.stack(theirs.scores, 1).log_softmax(-1).gather(-1, theirs.sequences[..., None])[..., 0]
    ended_before = torch.cat([torch.zeros(12, 1, dtype=torch.long), (theirs.sequences == EOS).long().cumsum(1)[:, :-1]], 1)
    logp = (logp * (ended_before == 0)).sum(1)
    torch.testing.assert_close(ours.scores, logp, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("beam_size", [2, 3, 5])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0])
def test_beam_search_equals_transformers_generate(beam_size, length_penalty):
    model = random_gpt2(0, eos_boost=2.0)
    prefix = _prefix(10)
    ours = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix,
                    settings=Decoding(method="beam", beam_size=beam_size, length_penalty=length_penalty,
                                      max_new_tokens=16))
    theirs = _hf(model, inputs_embeds=prefix, attention_mask=torch.ones(10, 3, dtype=torch.long), max_new_tokens=16,
                 num_beams=beam_size, length_penalty=length_penalty)
    assert torch.equal(ours.sequences, theirs.sequences)
    torch.testing.assert_close(ours.scores, theirs.sequences_scores.float(), rtol=1e-5, atol=1e-5)


def test_beam_score_is_log_probability_over_generated_length():
    """length_penalty = 1 divides the summed log-probability by the number of generated tokens (end included),
    recomputed here from a plain forward pass of the prefix and the returned tokens."""
    model = random_gpt2(1, eos_boost=2.0)
    prefix = _prefix(6, seed=1)
    out = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix,
                   settings=Decoding(method="beam", beam_size=3, max_new_tokens=12))
    checked = 0
    for i in range(6):
        ids = out.tokens[i] + ([EOS] if out.finished[i] else [])
        if not ids:
            continue
        with torch.no_grad():
            embeds = prefix[i : i + 1]
            if len(ids) > 1:
                embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([ids[:-1]]))], 1)
            logits = model(inputs_embeds=embeds).logits[0, 2:]
        total = logits.log_softmax(-1).gather(-1, torch.tensor(ids)[:, None]).sum()
        assert float(out.scores[i]) == pytest.approx(float(total) / len(ids), abs=1e-4)
        checked += 1
    assert checked >= 4


def test_left_padded_prompts_and_prefix_plus_prompt_equal_transformers():
    model = random_gpt2(0, eos_boost=2.0)
    prompts = [[5, 6, 7], [9], [10, 11, 12, 13, 14], [3, 4]]
    embeds, mask = _left_padded(prompts, model)
    ours = generate(model, eos_id=EOS, pad_id=PAD, input_ids=prompts, settings=Decoding(max_new_tokens=10))
    theirs = _hf(model, inputs_embeds=embeds, attention_mask=mask, max_new_tokens=10)
    assert torch.equal(ours.sequences, theirs.sequences)
    prefix = _prefix(4, k=2)
    embeds, mask = _left_padded(prompts, model, prefix)
    for method, extra in (("greedy", {}), ("beam", {"num_beams": 3})):
        ours = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, input_ids=prompts,
                        settings=Decoding(method=method, beam_size=3, max_new_tokens=10))
        theirs = _hf(model, inputs_embeds=embeds, attention_mask=mask, max_new_tokens=10, **extra)
        assert torch.equal(ours.sequences, theirs.sequences), method


# -- KV cache, batching ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_kv_cache_decoding_equals_decoding_without_cache(method):
    model = random_gpt2(1, eos_boost=2.0)
    prefix = _prefix(8, seed=2)
    prompts = [[4, 5], [6], [7, 8, 9], [10], [11], [12, 13], [14], [15]]
    settings = dict(method=method, beam_size=3, top_k=10, top_p=0.9, seed=3, max_new_tokens=14)
    cached = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, input_ids=prompts,
                      settings=Decoding(use_cache=True, **settings))
    plain = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, input_ids=prompts,
                     settings=Decoding(use_cache=False, **settings))
    assert cached.tokens == plain.tokens
    torch.testing.assert_close(cached.scores, plain.scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_batch_size_does_not_change_the_texts(method):
    model = random_gpt2(0, eos_boost=2.0)
    prefix = _prefix(9, seed=4)
    settings = dict(method=method, beam_size=2, top_p=0.8, seed=5, max_new_tokens=12)
    whole = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(batch_size=256, **settings))
    pieces = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(batch_size=4, **settings))
    assert whole.tokens == pieces.tokens
    one = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix[5:6], settings=Decoding(batch_size=256, **settings))
    if method != "sample":  # sampling draws by row index: row 5 of a call of 9 is row 0 of a call of 1
        assert one.tokens[0] == whole.tokens[5]


# -- sampling ---------------------------------------------------------------------------------------------------------


def _next_logits(model, prefix_row, tokens):
    with torch.no_grad():
        embeds = prefix_row[None]
        if tokens:
            embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([tokens]))], 1)
        return model(inputs_embeds=embeds).logits[0, -1]


def test_sampling_is_deterministic_for_a_seed_and_varies_with_it():
    model = random_gpt2(0, eos_boost=1.0)
    prefix = _prefix(8)
    a = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(method="sample", seed=7,
                                                                                  max_new_tokens=12))
    b = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(method="sample", seed=7,
                                                                                  max_new_tokens=12))
    c = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(method="sample", seed=8,
                                                                                  max_new_tokens=12))
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


@pytest.mark.parametrize("top_k, top_p", [(3, 1.0), (0, 0.5), (5, 0.7)])
def test_sampling_emits_only_allowed_tokens(top_k, top_p):
    """Every sampled token is, given what came before it, among the top-k and inside the top-p nucleus of a
    plain forward pass."""
    model = random_gpt2(2, eos_boost=1.0)
    prefix = _prefix(6, seed=2)
    out = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix,
                   settings=Decoding(method="sample", top_k=top_k, top_p=top_p, seed=1, max_new_tokens=10))
    steps = 0
    for i in range(6):
        row = out.sequences[i].tolist()
        for t in range(len(out.tokens[i]) + (1 if out.finished[i] else 0)):
            logits = _next_logits(model, prefix[i], row[:t])
            ordered = logits.sort(descending=True)
            rank = int((ordered.indices == row[t]).nonzero())
            if top_k:
                assert rank < top_k, (i, t, rank)
            probs = ordered.values.softmax(-1)
            assert float(probs[:rank].sum()) < top_p + 1e-6, (i, t, rank)  # inside the nucleus
            steps += 1
    assert steps >= 20


def test_top_k_one_is_greedy_and_filter_logits_keeps_the_nucleus():
    model = random_gpt2(1, eos_boost=2.0)
    prefix = _prefix(5, seed=1)
    greedy = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(max_new_tokens=12))
    k1 = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(method="sample", top_k=1,
                                                                                   max_new_tokens=12))
    assert k1.tokens == greedy.tokens
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.8, 0.5 + 0.3 reaches it
    assert torch.isfinite(filter_logits(logits, top_p=0.1))[0].tolist() == [True, False, False, False]
    assert torch.isfinite(filter_logits(logits, top_k=3))[0].tolist() == [True, True, True, False]


def test_sampling_follows_the_model_distribution():
    """Without filtering, the first sampled token of 3,000 rows with one prefix follows softmax(logits)."""
    model = random_gpt2(3, eos_boost=0.0)
    prefix = _prefix(1, seed=3).expand(3000, -1, -1)
    out = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(method="sample", seed=0,
                                                                                    max_new_tokens=1))
    probs = _next_logits(model, prefix[0], []).softmax(-1)
    counts = torch.bincount(out.sequences[:, 0], minlength=probs.shape[0]).float() / 3000
    top = probs.argsort(descending=True)[:3]
    assert float(probs[top[0]]) > 0.1
    for token in top.tolist():
        assert abs(float(counts[token]) - float(probs[token])) < 0.035, (token, float(counts[token]),
                                                                        float(probs[token]))


# -- stop strings ---------------------------------------------------------------------------------------------------


class _Letters:
    """A tokenizer stand-in: token i spells chr(ord('a') + i % 26)."""

    def decode_batch(self, rows):
        return ["".join(chr(ord("a") + t % 26) for t in r if t not in (EOS, PAD)) for r in rows]


def test_stop_strings_end_a_greedy_row_and_cut_its_text():
    model = random_gpt2(0, eos_boost=0.0)
    prefix = _prefix(4, seed=6)
    free = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(max_new_tokens=16),
                    tokenizer=_Letters())
    text = free.texts[0]
    assert len(text) >= 8
    stop = text[4:6]  # two letters the unstopped row spells from its fifth token
    stopped = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix, settings=Decoding(stop=(stop,), max_new_tokens=16),
                       tokenizer=_Letters())
    assert stopped.texts[0] == text[: text.index(stop)]
    assert stopped.finished[0]
    assert len(stopped.tokens[0]) == text.index(stop) + len(stop)  # it stopped on the token that completed it
    assert stopped.tokens[0] == free.tokens[0][: len(stopped.tokens[0])]
    assert cut_at_stop("a cat. a dog\n", (".", "\n")) == "a cat"


def test_stop_strings_finish_beams():
    """A beam that spells a stop string is a finished hypothesis: no returned text holds one, and a row that
    stopped on one ends with the token that completed it."""
    model = random_gpt2(0, eos_boost=0.0)
    prefix = _prefix(6, seed=6)
    free = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix,
                    settings=Decoding(method="beam", beam_size=3, max_new_tokens=16), tokenizer=_Letters())
    stops = tuple(sorted({t[3:5] for t in free.texts if len(t) >= 5}))[:3]
    stopped = generate(model, eos_id=EOS, pad_id=PAD, prefix=prefix,
                       settings=Decoding(method="beam", beam_size=3, max_new_tokens=16, stop=stops),
                       tokenizer=_Letters())
    spelled = _Letters().decode_batch(stopped.tokens)
    ended_on_stop = 0
    for text, full, done in zip(stopped.texts, spelled, stopped.finished):
        assert not any(s in text for s in stops)
        if any(s in full for s in stops):
            assert done and any(full.endswith(s) for s in stops) and not any(s in full[:-1] for s in stops)
            ended_on_stop += 1
    assert ended_on_stop >= 3


# -- bad input --------------------------------------------------------------------------------------------------------


def test_bad_inputs_are_refused_with_clear_errors():
    model = random_gpt2(0)
    ok = _prefix(2)
    cases = [
        (dict(prefix=torch.randn(2, 3, 16)), "16 wide; the LM's embeddings are 32 wide"),
        (dict(prefix=torch.randn(2, 32)), r"prefix must be \[B, K, D\]"),
        (dict(prefix=torch.full((2, 3, 32), float("nan"))), "non-finite"),
        (dict(prefix=ok, settings=Decoding(max_new_tokens=62)), "exceeds the LM's context of 64"),
        (dict(input_ids=[[3] * 60], settings=Decoding(max_new_tokens=5)), "prompt length 60 .* exceeds"),
        (dict(), "nothing to decode"),
        (dict(input_ids=[[]]), "neither prefix embeddings nor prompt tokens"),
        (dict(prefix=ok, input_ids=[[3]]), "1 prompts for 2 prefixes"),
        (dict(input_ids=[[3, 600]]), r"outside \[0, 60\)"),
        (dict(prefix=ok, settings=Decoding(stop=("x",))), "stop strings need the tokenizer"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            generate(model, eos_id=EOS, pad_id=PAD, **kwargs)
    for bad in (dict(top_p=0.0), dict(max_new_tokens=0), dict(method="nucleus"), dict(stop=("",)),
                dict(temperature=0.0)):
        with pytest.raises(ValueError):
            Decoding(**bad)
