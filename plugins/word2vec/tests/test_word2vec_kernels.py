"""The fused kernel: one SGD step equals autograd of the catalogue losses; seeded runs repeat exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cl_core.api import NoiseTargets, build
from cl_core.types import Targets
from cl_word2vec import kernels
from cl_word2vec.sgd import sgd_step
from cl_word2vec.vocab import Vocabulary


def _tables(v=12, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, (v, dim)), rng.normal(0, 0.5, (v, dim))


@pytest.mark.parametrize("loss_kind", [0, 1])
def test_kernel_step_equals_autograd_of_catalogue_loss(loss_kind):
    syn0, syn1 = _tables()
    # distinct words everywhere, so the sequential per-pair updates equal one batched gradient step
    inputs = np.array([0, 1], dtype=np.int32)
    targets = np.array([[2, 3, 4, 5], [6, 7, 8, 9]], dtype=np.int64)
    log_kpn = np.log(3 * np.linspace(0.02, 0.2, 12))
    alpha = 0.05
    k0, k1 = syn0.copy(), syn1.copy()
    kernels.sgd_pairs(k0, k1, inputs, targets, alpha, log_kpn, loss_kind)

    t0, t1 = torch.tensor(syn0), torch.tensor(syn1)
    loss = build("loss", "core.nce") if loss_kind else build("loss", "core.negative-sampling")
    sgd_step(t0, t1, torch.tensor(inputs, dtype=torch.long), torch.tensor(targets), alpha, loss, loss_kind,
             torch.tensor(log_kpn), Targets, NoiseTargets)
    assert not np.allclose(k0, syn0)  # something moved
    np.testing.assert_allclose(k0, t0.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(k1, t1.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cbow_mean", [True, False])
def test_torch_cbow_step_equals_word2vec_update(cbow_mean):
    """word2vec C's CBOW step, by hand in float64: the input is the mean (or sum) of the context rows; each
    candidate row moves by g * h and every context row by the whole neu1e = sum of g * syn1[c], unscaled."""
    syn0, syn1 = _tables()
    contexts = np.array([[0, 1, 2, 0], [3, 4, 0, 0]])
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    cand = np.array([[5, 6, 7], [8, 9, 10]])
    alpha = 0.05
    r0, r1 = syn0.copy(), syn1.copy()
    for row in range(2):
        ctx = contexts[row][mask[row]]
        h = r0[ctx].sum(0) / (len(ctx) if cbow_mean else 1)
        neu1e = np.zeros_like(h)
        for d, word in enumerate(cand[row]):
            g = ((1.0 if d == 0 else 0.0) - 1 / (1 + math.exp(-h @ r1[word]))) * alpha
            neu1e += g * r1[word]
            r1[word] += g * h
        for word in ctx:
            r0[word] += neu1e

    t0, t1 = torch.tensor(syn0), torch.tensor(syn1)
    sgd_step(t0, t1, torch.tensor(contexts), torch.tensor(cand), alpha, build("loss", "core.negative-sampling"), 0,
             torch.zeros(12, dtype=torch.float64), Targets, NoiseTargets, context_mask=torch.tensor(mask),
             cbow_mean=cbow_mean)
    assert not np.allclose(r0, syn0)
    np.testing.assert_allclose(t0.numpy(), r0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t1.numpy(), r1, rtol=0, atol=1e-12)


def test_cbow_examples_respect_reach_and_sentences():
    from cl_word2vec.sgd import cbow_examples

    ids = torch.tensor([10, 11, 12, 13, 14])
    sentence = torch.tensor([0, 0, 0, 1, 1])
    reach = torch.tensor([2, 1, 2, 1, 1])
    center, ctx, mask = cbow_examples(ids, sentence, reach, 2)
    got = {int(c): sorted(int(w) for w in row[m]) for c, row, m in zip(center, ctx, mask, strict=True)}
    assert got == {10: [11, 12], 11: [10, 12], 12: [10, 11], 13: [14], 14: [13]}
    alone = cbow_examples(torch.tensor([1, 2]), torch.tensor([0, 1]), torch.tensor([1, 1]), 1)
    assert alone[0].numel() == 0  # one-word sentences give no CBOW example


def test_nce_differs_from_negative_sampling():
    syn0, syn1 = _tables()
    inputs, targets = np.array([0], dtype=np.int32), np.array([[2, 3, 4]], dtype=np.int64)
    log_kpn = np.log(2 * np.linspace(0.01, 0.3, 12))
    a0, a1, b0, b1 = syn0.copy(), syn1.copy(), syn0.copy(), syn1.copy()
    kernels.sgd_pairs(a0, a1, inputs, targets, 0.1, log_kpn, 0)
    kernels.sgd_pairs(b0, b1, inputs, targets, 0.1, log_kpn, 1)
    assert not np.allclose(a1, b1)


def _corpus(n_sent=60, length=30, vocab=40, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, n_sent * length).astype(np.int32)
    offsets = np.arange(0, n_sent * length + 1, length, dtype=np.int64)
    counts = np.bincount(ids, minlength=vocab)
    return ids, offsets, Vocabulary([f"w{i}" for i in range(vocab)], counts)


def _train(seed, *, cbow=False, sample=0.0):
    ids, offsets, vocab = _corpus()
    rng = np.random.default_rng(1)
    syn0 = ((rng.random((len(vocab), 8)) - 0.5) / 8).astype(np.float32)
    syn1 = np.zeros_like(syn0)
    keep = np.floor(vocab.keep_probabilities(sample) * 2.0**32).astype(np.uint64)
    out = kernels.train_job(syn0, syn1, ids, offsets, 0, len(offsets) - 1, 0, len(ids), 0.025, 1e-4, keep,
                            *vocab.alias_table(), np.zeros(len(vocab), np.float32), 3, True, 4, 0, cbow, True, seed,
                            True)
    return syn0, syn1, out


@pytest.mark.parametrize("cbow", [False, True])
def test_same_seed_same_vectors_other_seed_differs(cbow):
    a0, a1, out_a = _train(7, cbow=cbow)
    b0, b1, _ = _train(7, cbow=cbow)
    c0, _, _ = _train(8, cbow=cbow)
    assert np.array_equal(a0, b0) and np.array_equal(a1, b1)
    assert not np.array_equal(a0, c0)
    loss, terms, effective = out_a
    assert effective == 1800 and terms > 0 and math.isfinite(loss)


def test_subsampling_keeps_the_expected_share():
    ids, offsets, vocab = _corpus()
    sample = 1e-3
    expected = float((vocab.keep_probabilities(sample) * vocab.counts).sum())
    _, _, (_, _, effective) = _train(3, sample=sample)
    assert expected < 0.9 * len(ids)  # the threshold bites
    assert abs(effective - expected) < 4 * math.sqrt(expected)


def test_alias_tables_are_exactly_the_unigram_to_the_075():
    counts = np.array([5000, 1000, 100, 10, 1, 1, 3], dtype=np.int64)
    vocab = Vocabulary(list("abcdefg"), counts)
    prob, alias = vocab.alias_table(0.75)
    accept = prob / 2.0**32
    implied = accept.copy()
    np.add.at(implied, alias, 1.0 - accept)  # a rejected column goes to its alias
    implied /= len(counts)
    np.testing.assert_allclose(implied, counts**0.75 / (counts**0.75).sum(), rtol=1e-7)


def test_the_kernel_draws_noise_words_with_the_alias_tables():
    counts = np.array([1000, 100, 10, 1], dtype=np.int64)
    prob, alias = Vocabulary(["a", "b", "c", "d"], counts).alias_table(0.75)
    state, drawn = np.uint64(12345), np.zeros(4)
    for _ in range(100_000):
        word, state = kernels._noise_word(prob, alias, state)
        drawn[word] += 1
    np.testing.assert_allclose(drawn / drawn.sum(), counts**0.75 / (counts**0.75).sum(), atol=0.005)
