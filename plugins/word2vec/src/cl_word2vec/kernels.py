"""Fused word2vec SGD kernels (numba, GIL-free): one call trains one job of whole sentences in place.

The same algorithm as word2vec C and gensim's Cython ``word2vec_inner``: per sentence, frequent-word
subsampling, a reduced window per centre word, and for each (centre, context) pair one SGD step on the
binary loss of the positive and ``negative`` noise words drawn from the unigram^0.75 table. Differences,
all deliberate:

* the exact sigmoid instead of word2vec's 1000-entry table (arguments clipped to +-20, where it is 1 -
  2e-9), so one step equals the gradient of ``core.negative-sampling`` / ``core.nce`` (tested);
* ``loss_kind = 1`` is NCE proper: logits ``S - log(k * p_noise(w))`` (noise words equal to the positive
  are kept, as NCE's estimator needs); ``loss_kind = 0`` is negative sampling (such words skipped, as
  gensim does);
* CBOW with ``cbow_mean = False`` adds the plain gradient to each context vector (gensim divides it by
  the window size).

Random numbers: word2vec's 48-bit linear congruential generator, seeded per job, so a job's updates are
a function of the seed, the epoch and the job index (and, with several threads, of the Hogwild races).
"""

from __future__ import annotations

import numpy as np
from numba import njit

LCG_MUL = np.uint64(25214903917)
LCG_ADD = np.uint64(11)
LCG_MASK = np.uint64(281474976710655)  # 2**48 - 1
MAX_ARG = 20.0


@njit(inline="always")
def _next(state):
    return (state * LCG_MUL + LCG_ADD) & LCG_MASK


@njit(inline="always")
def _noise_word(alias_prob, alias_index, state):
    """One noise word by Walker's alias method (O(1), exact up to 2^-32): a uniform column, kept with its
    probability ``alias_prob[col] / 2^32``, else its alias. Returns (word, new rng state)."""
    state = _next(state)
    col = (((state >> np.uint64(16)) & np.uint64(0xFFFFFFFF)) * np.uint64(alias_prob.shape[0])) >> np.uint64(32)
    state = _next(state)
    if ((state >> np.uint64(16)) & np.uint64(0xFFFFFFFF)) >= alias_prob[col]:
        return alias_index[col], state
    return np.int64(col), state


@njit(inline="always", fastmath=True)
def _update(l1, target, label, syn1, neu1e, alpha, log_kpn, loss_kind, compute_loss):
    """One binary term: ``l1`` ([N] input vector) against output row ``target`` with ``label`` (1 data, 0
    noise). Updates ``syn1[target]`` in place, accumulates the input's step into ``neu1e``; returns the
    term's loss (0 unless ``compute_loss``)."""
    dim = l1.shape[0]
    row = syn1[target]
    f = l1.dtype.type(0.0)  # the tables' dtype throughout (float32: SIMD, no conversions)
    for c in range(dim):
        f += l1[c] * row[c]
    if loss_kind == 1:
        f -= log_kpn[target]
    lim = l1.dtype.type(MAX_ARG)
    if f > lim:
        f = lim
    elif f < -lim:
        f = -lim
    loss = 0.0
    if compute_loss:
        loss = float(np.log1p(np.exp(-f)) if label > 0.5 else np.log1p(np.exp(f)))
    one = l1.dtype.type(1.0)
    g = (l1.dtype.type(label) - one / (one + np.exp(-f))) * l1.dtype.type(alpha)
    for c in range(dim):
        neu1e[c] += g * row[c]
    for c in range(dim):
        row[c] += g * l1[c]
    return loss


@njit(inline="always", fastmath=True)
def _binary_step(l1, word, syn1, neu1e, alpha, negative, alias_prob, alias_index, log_kpn, loss_kind, state,
                 compute_loss):
    """One SGD step of ``l1`` against ``word`` and ``negative`` noise words drawn with the alias tables.
    Returns (new rng state, loss of this step or 0)."""
    loss = _update(l1, word, 1.0, syn1, neu1e, alpha, log_kpn, loss_kind, compute_loss)
    for _ in range(negative):
        target, state = _noise_word(alias_prob, alias_index, state)
        if target == word and loss_kind == 0:
            continue
        loss += _update(l1, target, 0.0, syn1, neu1e, alpha, log_kpn, loss_kind, compute_loss)
    return state, loss


@njit(nogil=True, fastmath=True, cache=True)
def train_job(syn0, syn1, ids, offsets, s_begin, s_end, raw_before, raw_total, alpha0, min_alpha, keep_int,
              alias_prob, alias_index, log_kpn, window, shrink, negative, loss_kind, cbow, cbow_mean, seed,
              compute_loss):
    """Train sentences ``s_begin .. s_end - 1`` in place (skip-gram, or CBOW when ``cbow``).

    Args:
        syn0, syn1: ``[V, N]`` float32 (or float64) input and output vectors, updated in place.
        ids: ``[T]`` int32 vocabulary ids of the corpus (out-of-vocabulary tokens already dropped);
            ``offsets`` ``[S + 1]`` int64 sentence boundaries into ``ids``.
        raw_before: raw corpus words (out-of-vocabulary ones included) before this job in the whole run;
            ``raw_total`` = raw words per epoch x epochs. alpha = alpha0 - (alpha0 - min_alpha) * progress.
        keep_int: ``[V]`` uint64 keep probability x 2^32 (subsampling).
        alias_prob, alias_index: ``[V]`` uint64 / int64 alias tables of the unigram^0.75 noise distribution
            (:meth:`~cl_word2vec.vocab.Vocabulary.alias_table`).
        log_kpn: ``[V]`` log(k * p_noise) per word (NCE only).
        seed: the job's rng seed (48 bits used).

    Returns:
        (loss sum, binary terms summed, in-vocabulary words trained after subsampling).
    """
    dim = syn0.shape[1]
    state = np.uint64(seed) & LCG_MASK
    neu1e = np.zeros(dim, dtype=syn0.dtype)
    neu1 = np.zeros(dim, dtype=syn0.dtype)
    longest = 0
    for s in range(s_begin, s_end):
        n = offsets[s + 1] - offsets[s]
        if n > longest:
            longest = n
    buf = np.empty(max(longest, 1), dtype=np.int32)
    loss = 0.0
    terms = 0
    effective = 0
    raw_done = 0
    span = alpha0 - min_alpha
    for s in range(s_begin, s_end):
        start = offsets[s]
        end = offsets[s + 1]
        progress = (raw_before + raw_done) / raw_total
        alpha = alpha0 - span * progress
        if alpha < min_alpha:
            alpha = min_alpha
        raw_done += end - start
        n = 0
        for t in range(start, end):
            w = ids[t]
            state = _next(state)
            if keep_int[w] < ((state >> np.uint64(16)) & np.uint64(0xFFFFFFFF)):
                continue
            buf[n] = w
            n += 1
        effective += n
        for i in range(n):
            b = 0
            if shrink:
                state = _next(state)
                b = np.int64(((state >> np.uint64(16)) & np.uint64(0xFFFFFFFF)) % np.uint64(window))
            lo = i - window + b
            if lo < 0:
                lo = 0
            hi = i + window + 1 - b
            if hi > n:
                hi = n
            if cbow:
                count = 0
                for c in range(dim):
                    neu1[c] = 0.0
                for j in range(lo, hi):
                    if j == i:
                        continue
                    row = syn0[buf[j]]
                    for c in range(dim):
                        neu1[c] += row[c]
                    count += 1
                if count == 0:
                    continue
                if cbow_mean:
                    inv = 1.0 / count
                    for c in range(dim):
                        neu1[c] *= inv
                for c in range(dim):
                    neu1e[c] = 0.0
                state, part = _binary_step(neu1, buf[i], syn1, neu1e, alpha, negative, alias_prob, alias_index, log_kpn,
                                           loss_kind, state, compute_loss)
                loss += part
                terms += negative + 1
                for j in range(lo, hi):
                    if j == i:
                        continue
                    row = syn0[buf[j]]
                    for c in range(dim):
                        row[c] += neu1e[c]
            else:
                for j in range(lo, hi):
                    if j == i:
                        continue
                    l1 = syn0[buf[j]]
                    for c in range(dim):
                        neu1e[c] = 0.0
                    state, part = _binary_step(l1, buf[i], syn1, neu1e, alpha, negative, alias_prob, alias_index, log_kpn,
                                               loss_kind, state, compute_loss)
                    loss += part
                    terms += negative + 1
                    for c in range(dim):
                        l1[c] += neu1e[c]
    return loss, terms, effective


@njit(nogil=True, cache=True)
def sgd_pairs(syn0, syn1, inputs, targets, alpha, log_kpn, loss_kind):
    """The kernel's step on given pairs: for each row ``p``, input word ``inputs[p]`` against
    ``targets[p, 0]`` (data) and ``targets[p, 1:]`` (noise), through the same :func:`_update` as
    :func:`train_job`, without drawing anything. Checks the kernel against autograd of the catalogue losses.
    """
    dim = syn0.shape[1]
    neu1e = np.zeros(dim, dtype=syn0.dtype)
    for p in range(inputs.shape[0]):
        l1 = syn0[inputs[p]]
        for c in range(dim):
            neu1e[c] = 0.0
        for d in range(targets.shape[1]):
            _update(l1, targets[p, d], 1.0 if d == 0 else 0.0, syn1, neu1e, alpha, log_kpn, loss_kind, False)
        for c in range(dim):
            l1[c] += neu1e[c]
