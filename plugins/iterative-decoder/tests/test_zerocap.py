"""ZeroCap's search (:mod:`cl_iterative_decoder.zerocap`) on a tiny byte-level GPT-2 and the toy character text
tower (offline, CPU, seconds)."""

from __future__ import annotations

import inspect
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from cl_iterative_decoder import zerocap as Z
from cl_iterative_decoder.similarity import TextSimilarity
from cl_iterative_decoder.zerocap import ZeroCapSettings, zerocap_hypotheses, zerocap_search

#: what the toy tower embeds as queries: texts of its own alphabet
WORDS = ["zzzz", "hello world", "a1", "qqq", "class 7", "mmmm"]
#: no steering and no end-token edits: the LM's own beam search
PLAIN = dict(iterations=0, fusion=1.0, end_factor=1.0, first_end_factor=1.0)


_BASE: dict[str, object] = {}


def _base_lm():
    """One tiny ``lm.gpt2`` decoder with the byte tokenizer (building the tokenizer is the slow part)."""
    from cl_lm.testing import tiny_lm

    if "lm" not in _BASE:
        _BASE["lm"] = tiny_lm(0)
        _BASE["near-uniform"] = _BASE["lm"].model
    return _BASE["lm"]


def peaked_lm(seed: int = 0, bonus: float = 4.0):
    """The tiny decoder with another network: wide random weights (peaked next-token distributions, no
    near-ties, an end token that comes at different steps) and a logit ``bonus`` for the characters the toy text
    tower reads (letters, digits, space), so that captions are texts the tower tells apart (it makes the end token
    rarer). Vocabulary 257, end 256."""
    from cl_core.testing import toy
    from cl_lm.testing import random_gpt2

    lm = _base_lm()
    tok = lm.tokenizer
    model = random_gpt2(seed, vocab=257, eos=tok.eos_id, pad=tok.pad_id, context=48)
    readable = [i for ch in toy.CHARS for i in tok.ids([ch])[0]]
    with torch.no_grad():  # hidden unit 1 after the final norm is the constant 1; it feeds the bonus
        model.transformer.ln_f.weight[1] = 0.0
        model.transformer.ln_f.bias[1] = 1.0
        model.lm_head.weight[:, 1] = 0.0
        model.lm_head.weight[readable, 1] = bonus
    lm.model = model
    return lm


def near_uniform_lm():
    """The tiny decoder with its own default-initialised network (near-uniform next-token distributions)."""
    lm = _base_lm()
    lm.model = _BASE["near-uniform"]
    return lm


@pytest.fixture
def lm():
    return peaked_lm(0)


@pytest.fixture(scope="module")
def tower():
    from cl_core.testing import toy

    torch.manual_seed(0)
    return toy.build_chars(toy.ToyCharsParams(embed_dim=8), None).eval()


@pytest.fixture
def sim(tower):
    return TextSimilarity(tower)


@pytest.fixture
def prompt(lm):
    return lm.tokenizer.ids(["an emoji of"])[0]


def queries(sim, n=len(WORDS)):
    return sim.embed(WORDS[:n])


def text_sims(lm, sim, q, tokens):
    """Cosine of each query with the text of its tokens (through the tower)."""
    texts = [t.strip() for t in lm.tokenizer.decode_batch(tokens)]
    return sim(q, [[t] for t in texts])[:, 0]


# -- without steering: the LM's own beam search ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["peaked", "near-uniform"])
@pytest.mark.parametrize("beams,penalty,length,with_prompt", [(3, 1.0, 8, True), (4, 0.6, 7, False)])
def test_without_steering_it_is_the_lms_beam_search(which, beams, penalty, length, with_prompt, sim):
    """iterations = 0, fusion = 1, end factors 1 and pick = "lm" give exactly ``lm.generate(method="beam")``
    (``transformers``' beam search), with and without its KV cache, on an LM with peaked distributions and on one
    with near-uniform ones (where any numerical drift would show)."""
    lm = peaked_lm(1, bonus=0.0) if which == "peaked" else near_uniform_lm()
    tok = lm.tokenizer
    pr = tok.ids(["an emoji of"])[0] if with_prompt else []
    q = queries(sim, 4)
    settings = ZeroCapSettings(**PLAIN, pick="lm", beam_size=beams, length_penalty=penalty)
    out = zerocap_search(lm, None, q, settings=settings, max_length=length, prompt=pr)
    hyps = zerocap_hypotheses(lm, None, q, settings=settings, max_length=length, prompt=pr)
    for cache in (False, True):
        ref = lm.generate(input_ids=[[tok.bos_id, *pr]] * len(q), method="beam", beam_size=beams,
                          length_penalty=penalty, max_new_tokens=length, use_cache=cache)
        assert out == ref.tokens
        assert [h[0][1] for h in hyps] == pytest.approx(ref.scores.tolist(), abs=1e-5)
    # every query gets the same hypotheses (nothing reads the query), in slots ordered by score
    assert all(h == hyps[0] for h in hyps)
    scores = [s for _, s in hyps[0]]
    assert scores == sorted(scores, reverse=True) and len(hyps[0]) == beams
    if which == "peaked":  # hypotheses that ended before the limit: the end-token bookkeeping is exercised
        assert any(len(ids) < length - 1 for ids, _ in hyps[0]), hyps[0]


def test_the_clip_pick_is_the_finished_hypothesis_most_similar_to_the_query(lm, sim, prompt):
    q = queries(sim)
    settings = ZeroCapSettings(**PLAIN, beam_size=4)
    hyps = zerocap_hypotheses(lm, sim, q, settings=settings, max_length=8, prompt=prompt)
    out = zerocap_search(lm, sim, q, settings=settings, max_length=8, prompt=prompt)
    picks = set()
    for i, (h, ids) in enumerate(zip(hyps, out)):
        cands = [c for c, _ in h]
        assert ids in cands
        s = text_sims(lm, sim, q[i : i + 1].expand(len(cands), -1), cands)
        assert float(text_sims(lm, sim, q[i : i + 1], [ids])) == pytest.approx(float(s.max()), abs=1e-6)
        picks.add(tuple(ids))
    assert len(picks) > 1  # the same hypotheses, different queries: different picks


def test_end_factors_edit_the_end_tokens_probability(lm, sim, prompt):
    q = queries(sim, 3)
    lm_pick = dict(iterations=0, fusion=1.0, pick="lm", beam_size=3)
    ends = zerocap_search(lm, None, q, settings=ZeroCapSettings(**lm_pick, end_factor=1e9, first_end_factor=1.0),
                          max_length=8, prompt=prompt)
    assert [len(ids) for ids in ends] == [1, 1, 1]  # the end token right after the first token
    at_once = zerocap_search(lm, None, q, settings=ZeroCapSettings(**lm_pick, end_factor=1.0, first_end_factor=1e-9),
                             max_length=8, prompt=prompt)
    assert at_once == [[], [], []]  # dividing by a tiny factor at step 0 ends every caption there
    never = zerocap_hypotheses(lm, None, q, settings=ZeroCapSettings(**lm_pick, end_factor=1e-9,
                                                                     first_end_factor=1e9), max_length=5,
                               prompt=prompt)
    assert all(len(ids) == 5 for h in never for ids, _ in h)  # no end token: every hypothesis runs to the limit


# -- steering ----------------------------------------------------------------------------------------------------


def _first_step_trace(lm, sim, q, prompt, **settings):
    trace = []
    s = ZeroCapSettings(top=64, **settings)
    with Z._ContextShift(lm.model) as shift:
        Z._next_logprobs(lm, shift, sim, q, [[lm.tokenizer.bos_id, *prompt]] * len(q), [[] for _ in q], 0, s,
                         trace=trace)
    return torch.stack(trace)  # [iterations + 1, rows]


def test_gradient_steps_lower_the_clip_loss(lm, sim, prompt):
    """The CE between the text tower's target and the shifted distribution: the first step lowers it for every
    query, and after five steps it is well below where it started (the candidates and so the target move with
    the distribution, so later steps may overshoot for a row); with a zero step size nothing moves."""
    q = queries(sim)
    trace = _first_step_trace(lm, sim, q, prompt, iterations=5)
    assert trace.shape == (6, len(q))
    assert bool((trace[1] < trace[0]).all()), trace
    assert float(trace[-1].mean()) < 0.8 * float(trace[0].mean()), trace
    assert int((trace[-1] < trace[0]).sum()) >= len(q) - 1, trace
    still = _first_step_trace(lm, sim, q, prompt, iterations=3, stepsize=0.0)
    assert torch.allclose(still, still[:1].expand_as(still), atol=1e-6)
    assert torch.allclose(still[0], trace[0], atol=1e-6)


def test_steering_moves_captions_toward_the_query(lm, sim, prompt):
    """Queries that are the tower's embeddings of texts: the steered captions are, on average and for at least
    half the queries, closer to their query than the unsteered ones (the same LM, the same CLIP pick; ZeroCap's
    step size, three steps)."""
    q = queries(sim)
    common = dict(beam_size=2, top=64)
    base = zerocap_search(lm, sim, q, settings=ZeroCapSettings(iterations=0, **common), max_length=5, prompt=prompt)
    steered = zerocap_search(lm, sim, q, settings=ZeroCapSettings(iterations=3, **common),
                             max_length=5, prompt=prompt)
    before, after = text_sims(lm, sim, q, base), text_sims(lm, sim, q, steered)
    assert float(after.mean()) > float(before.mean()), (before, after)
    assert 2 * int((after >= before - 1e-6).sum()) >= len(q), (before, after)


def test_fusion_zero_ignores_the_shift(lm, sim, prompt):
    """fusion = 0: the output distribution is the unshifted one, whatever the steps did."""
    q = queries(sim, 3)
    settings = dict(fusion=0.0, end_factor=1.0, first_end_factor=1.0, pick="lm", beam_size=2, top=32)
    plain = zerocap_search(lm, None, q, settings=ZeroCapSettings(**{**settings, "iterations": 0}), max_length=5,
                           prompt=prompt)
    ignored = zerocap_search(lm, sim, q, settings=ZeroCapSettings(**settings, iterations=2, stepsize=3.0),
                             max_length=5, prompt=prompt)
    assert ignored == plain


def test_the_shift_is_a_shift_of_the_past_keys_and_values(lm, prompt):
    """The hooks give the logits of the last token run on the past's KV cache plus the deltas (ZeroCap's shifted
    ``past_key_values``): the past positions' own states stay unshifted."""
    model, tok = lm.model, lm.tokenizer
    ctx = [[tok.bos_id, *prompt, 70, 71], [tok.bos_id, *prompt, 72, 73]]
    ids = torch.tensor(ctx)
    rows, past, width = ids.shape[0], ids.shape[1] - 1, model.config.n_embd
    heads = model.config.n_head
    g = torch.Generator().manual_seed(0)
    with Z._ContextShift(model) as shift:
        shift.mode = "record"
        plain = Z._last_logits(model, ctx)
        shift.deltas = [torch.randn(rows, past, 2 * width, generator=g) for _ in shift.projections]
        shift.mode = "shift"
        with torch.no_grad():
            shifted = Z._last_logits(model, ctx)
        deltas = shift.deltas
    assert not torch.allclose(plain, shifted, atol=1e-3)
    arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.no_grad():
        out = model(input_ids=ids[:, :-1], use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values

        def heads_of(x):
            return x.view(rows, past, heads, width // heads).transpose(1, 2)

        for i, d in enumerate(deltas):
            if hasattr(cache, "layers"):
                cache.layers[i].keys += heads_of(d[..., :width])
                cache.layers[i].values += heads_of(d[..., width:])
            else:
                cache.key_cache[i] += heads_of(d[..., :width])
                cache.value_cache[i] += heads_of(d[..., width:])
        ref = model(input_ids=ids[:, -1:], position_ids=torch.full((rows, 1), past), **{arg: cache}).logits[:, -1]
    assert torch.allclose(shifted, ref.float(), atol=1e-4)
    for p in shift.projections:
        assert not p._forward_hooks  # removed on exit


def test_deterministic_weights_untouched_and_no_cache_dependence(lm, tower, prompt):
    """The same output twice, and with a similarity that keeps nothing between calls; the LM gets no gradient
    and keeps its mode; the hooks are gone afterwards."""
    sim = TextSimilarity(tower)
    q = queries(sim, 3)
    settings = ZeroCapSettings(iterations=2, beam_size=2, top=32)
    lm.model.train()
    weights = {k: v.clone() for k, v in lm.model.state_dict().items()}
    first = zerocap_search(lm, sim, q, settings=settings, max_length=4, prompt=prompt)
    assert lm.model.training  # restored
    lm.model.eval()
    second = zerocap_search(lm, sim, q, settings=settings, max_length=4, prompt=prompt)
    fresh = zerocap_search(lm, TextSimilarity(tower, reuse=False), q, settings=settings, max_length=4, prompt=prompt)
    assert first == second == fresh
    assert all(len(ids) <= 4 for ids in first)
    assert all(p.grad is None for p in lm.model.parameters())
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in weights.items())
    assert all(not b.attn.c_attn._forward_hooks for b in lm.model.transformer.h)


def test_runs_under_no_grad_and_batches_like_one_by_one(lm, sim, prompt):
    """Callers decode under ``torch.no_grad()``; a batch of queries gives what each query gives alone."""
    q = queries(sim, 3)
    settings = ZeroCapSettings(iterations=2, beam_size=2, top=32)
    with torch.no_grad():
        together = zerocap_search(lm, sim, q, settings=settings, max_length=4, prompt=prompt)
    alone = [zerocap_search(lm, sim, q[i : i + 1], settings=settings, max_length=4, prompt=prompt)[0]
             for i in range(len(q))]
    assert together == alone


# -- errors --------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(lm, sim, prompt):
    q = queries(sim, 2)
    s = ZeroCapSettings(iterations=1, beam_size=2, top=8)
    with pytest.raises(ValueError, match="max_length must be >= 1, got 0"):
        zerocap_search(lm, sim, q, settings=s, max_length=0, prompt=prompt)
    with pytest.raises(ValueError, match="queries are 5-dim and the text tower embeds into 8"):
        zerocap_search(lm, sim, torch.randn(2, 5), settings=s, max_length=3, prompt=prompt)
    with pytest.raises(ValueError, match=r"queries must be \[B, N\]"):
        zerocap_search(lm, sim, q[0], settings=s, max_length=3, prompt=prompt)
    with pytest.raises(ValueError, match="leaves no room in the LM's context of 48"):
        zerocap_search(lm, sim, q, settings=s, max_length=3, prompt=[65] * 47)
    with pytest.raises(ValueError, match="give a TextSimilarity"):
        zerocap_search(lm, None, q, settings=s, max_length=3, prompt=prompt)
    with pytest.raises(ValueError, match="give a TextSimilarity"):
        zerocap_search(lm, None, q, settings=ZeroCapSettings(iterations=0), max_length=3, prompt=prompt)
    # a prompt that leaves one position: one token
    one = zerocap_search(lm, sim, q, settings=s, max_length=5, prompt=[65] * 46)
    assert all(len(ids) <= 1 for ids in one)


@pytest.mark.parametrize("field,value,message", [
    ("iterations", -1, "iterations must be >= 0, got -1"),
    ("top", 0, "top must be >= 1, got 0"),
    ("clip_temperature", 0.0, "clip_temperature must be > 0, got 0.0"),
    ("ce_scale", -0.1, "ce_scale must be >= 0, got -0.1"),
    ("stepsize", -1.0, "stepsize must be >= 0"),
    ("fusion", 1.5, r"fusion must be in \[0, 1\], got 1.5"),
    ("beam_size", 0, "beam_size must be >= 1, got 0"),
    ("end_factor", 0.0, "end_factor must be > 0, got 0.0"),
    ("first_end_factor", -1.6, "first_end_factor must be > 0"),
    ("window", 0, "window must be >= 1, got 0"),
    ("pick", "best", "pick must be one of 'clip', 'lm', got 'best'"),
])
def test_settings_are_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        ZeroCapSettings(**{field: value})


def test_defaults_are_zerocaps():
    s = ZeroCapSettings()
    assert (s.iterations, s.top, s.clip_temperature, s.ce_scale, s.stepsize, s.grad_norm_factor, s.fusion,
            s.beam_size, s.end_factor, s.first_end_factor, s.window, s.pick) == \
        (5, 512, 0.01, 0.2, 0.3, 0.9, 0.99, 5, 1.01, 1.6, 60, "clip")


def test_non_gpt2_lm_is_refused():
    with pytest.raises(ValueError, match="transformer.h"):
        Z._ContextShift(torch.nn.Linear(2, 2))


def test_text_of_a_query_is_near_itself(sim):
    """Sanity of the toy setup the steering tests rely on: each word is nearest its own query."""
    q = queries(sim)
    s = F.normalize(q, dim=-1) @ F.normalize(q, dim=-1).T
    assert bool((s.argmax(-1) == torch.arange(len(q))).all())
