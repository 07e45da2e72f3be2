"""Magic search: its two reductions (beta = 0 is contrastive search, alpha = beta = 0 is greedy), the speed-ups
leaving the result unchanged, the steering toward the query, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cl_iterative_decoder import MagicSettings, TextSimilarity, magic_search


def _contrastive_reference(lm, start, k, alpha, steps):
    """Contrastive search (Su et al., 2022) written plainly: one row, the whole sequence run again every step, each
    candidate appended and run on its own."""
    model, eos = lm.model, lm.tokenizer.eos_id
    seq, out = list(start), []
    for _ in range(steps):
        with torch.no_grad():
            base = model(input_ids=torch.tensor([seq]), output_hidden_states=True)
        probs = base.logits[0, -1].float().softmax(-1)
        context = F.normalize(base.hidden_states[-1][0].float(), dim=-1)
        top_p, top_ids = probs.topk(k)
        best, best_score = None, None
        for p, v in zip(top_p.tolist(), top_ids.tolist()):
            with torch.no_grad():
                h = model(input_ids=torch.tensor([seq + [v]]), output_hidden_states=True).hidden_states[-1][0, -1]
            penalty = float((context @ F.normalize(h.float(), dim=-1)).max())
            score = (1 - alpha) * p - alpha * penalty
            if best_score is None or score > best_score:
                best, best_score = v, score
        if best == eos:
            break
        out.append(best)
        seq.append(best)
    return out


def _queries(tower, texts):
    return F.normalize(tower.embed(texts), dim=-1)


def test_alpha_and_beta_zero_is_greedy_decoding(lm):
    for prompt in ("hello", "cat", "ab"):
        ids = lm.tokenizer.ids([prompt])[0]
        got = magic_search(lm, None, torch.randn(3, 8), settings=MagicSettings(k=7, alpha=0.0, beta=0.0),
                           max_length=12, prompt=ids)
        greedy = lm.generate(prompts=[prompt] * 3, method="greedy", max_new_tokens=12).tokens
        assert got == greedy
        assert len(got[0]) == {"hello": 8, "cat": 3, "ab": 12}[prompt]


@pytest.mark.parametrize("alpha", [0.3, 0.6])
def test_beta_zero_is_contrastive_search(lm, alpha):
    prompt = lm.tokenizer.ids(["hello"])[0]
    got = magic_search(lm, None, torch.zeros(2, 8), settings=MagicSettings(k=5, alpha=alpha, beta=0.0),
                       max_length=10, prompt=prompt)
    want = _contrastive_reference(lm, [lm.tokenizer.bos_id, *prompt], k=5, alpha=alpha, steps=10)
    assert got == [want, want]
    greedy = magic_search(lm, None, torch.zeros(1, 8), settings=MagicSettings(k=5, alpha=0.0, beta=0.0),
                          max_length=10, prompt=prompt)
    assert want != greedy[0]  # the penalty changed the text, so the comparison above tested it


def test_kv_cache_and_text_reuse_leave_the_captions_unchanged(lm, tower):
    queries = _queries(tower, ["cat", "dog face", "red heart", "zzz", "cat face"])
    fast_sim = TextSimilarity(tower)
    fast = magic_search(lm, fast_sim, queries, settings=MagicSettings(k=6, beta=2.0, logit_scale=20.0),
                        max_length=8)
    slow_sim = TextSimilarity(tower, reuse=False)
    slow = magic_search(lm, slow_sim, queries, settings=MagicSettings(k=6, beta=2.0, logit_scale=20.0,
                                                                      kv_cache=False), max_length=8)
    assert fast == slow
    assert fast_sim.embedded < slow_sim.embedded  # shared texts were embedded once


def test_the_text_tower_steers_toward_the_query(lm, tower):
    """With a dominant beta, each step keeps the candidate whose text is closest to the query, so the captions end
    closer to their queries than the unsteered ones."""
    targets = ["aaaa", "zzzz", "mmmm", "qqqq", "0000", "xyxy"]
    queries = _queries(tower, targets)
    sim = TextSimilarity(tower)
    plain = magic_search(lm, None, queries, settings=MagicSettings(k=20, beta=0.0), max_length=6)
    steered = magic_search(lm, sim, queries, settings=MagicSettings(k=20, beta=50.0, logit_scale=50.0),
                           max_length=6)

    def closeness(rows):
        texts = [lm.tokenizer.decode(r).strip() or "?" for r in rows]
        return (_queries(tower, texts) * queries).sum(-1)

    assert steered != plain
    assert float(closeness(steered).mean()) > float(closeness(plain).mean()) + 0.05


def test_results_are_deterministic_and_independent_of_the_batch(lm, tower):
    queries = _queries(tower, ["cat", "dog", "sun", "moon"])
    settings = MagicSettings(k=8, beta=2.0, logit_scale=20.0)
    whole = magic_search(lm, TextSimilarity(tower), queries, settings=settings, max_length=8)
    again = magic_search(lm, TextSimilarity(tower), queries, settings=settings, max_length=8)
    halves = [row for part in (queries[:2], queries[2:])
              for row in magic_search(lm, TextSimilarity(tower), part, settings=settings, max_length=8)]
    assert whole == again == halves


def test_similarity_scores_match_the_tower_and_mark_empty_texts(tower):
    sim = TextSimilarity(tower)
    queries = _queries(tower, ["cat", "dog"])
    texts = [["cat", "", "dog"], ["dog", "cat", "  "]]
    got = sim(queries, texts)
    want = _queries(tower, ["cat", "dog"]) @ queries.t()
    assert torch.allclose(got[0, 0], want[0, 0], atol=1e-6) and torch.allclose(got[0, 2], want[1, 0], atol=1e-6)
    assert torch.allclose(got[1, 0], want[1, 1], atol=1e-6) and torch.allclose(got[1, 1], want[0, 1], atol=1e-6)
    assert got[0, 1] == got[1, 2] == -2.0
    assert sim.embedded == 2  # "cat" and "dog", once each


def test_bad_input_is_a_clear_error(lm, tower):
    sim = TextSimilarity(tower)
    with pytest.raises(ValueError, match="another space"):
        magic_search(lm, sim, torch.randn(2, 5), settings=MagicSettings(), max_length=4)
    with pytest.raises(ValueError, match="max_length"):
        magic_search(lm, sim, torch.randn(2, 8), settings=MagicSettings(), max_length=0)
    with pytest.raises(ValueError, match="TextSimilarity"):
        magic_search(lm, None, torch.randn(2, 8), settings=MagicSettings(beta=1.0), max_length=4)
    with pytest.raises(ValueError, match="no room"):
        magic_search(lm, sim, torch.randn(1, 8), settings=MagicSettings(), max_length=4, prompt=[65] * 60)
    with pytest.raises(ValueError, match="k must be >= 1"):
        MagicSettings(k=0)
    with pytest.raises(ValueError, match="alpha"):
        MagicSettings(alpha=1.5)
