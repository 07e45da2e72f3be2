"""``word2vec.sgd``: word2vec's training loop (Mikolov et al., 2013; gensim's ``Word2Vec.train``).

Two backends, one algorithm (subsampling, reduced windows, unigram^0.75 noise, plain SGD with the learning
rate decayed linearly in the raw words processed, from ``alpha`` to ``min_alpha``):

* ``numba``: the fused per-sentence kernel of :mod:`cl_word2vec.kernels`, run on ``workers`` threads over
  jobs of ~``job_words`` raw words (whole sentences) that update the shared tables without locks
  (Hogwild, as word2vec C and gensim). No per-word Python work.
* ``torch``: pairs of a chunk of the corpus drawn with tensor ops on the device, shuffled, then batched
  updates: the catalogue loss (``core.negative-sampling`` or ``core.nce``) on ``[B, 1 + k]`` dot scores,
  its autograd gradient scaled by ``alpha * B`` (per-pair SGD summed over the batch) added to the rows
  with ``index_add_``. CBOW scores the mean (or sum) of each centre's context rows against the centre and
  adds the input gradient to every context row unscaled, as the kernel and word2vec C do. This is the GPU
  path.

A step is one job (numba) or one batch (torch). Checkpoints are written after each epoch (tables plus the
epoch); a resumed run replays the remaining epochs exactly (every job/chunk is seeded by seed, epoch and
its index).
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_core.api import BuildError, CheckpointError, TrainContext, TrainingLoop

from .modules import ContextEmbedding, Word2VecSampler, find_word_encoder
from .params import SGDParams

#: The losses the kernels implement, by registered name -> the kernels' loss code.
LOSS_KINDS = {"core.negative-sampling": 0, "core.nce": 1}
MASK48 = (1 << 48) - 1


def job_seed(seed: int, epoch: int, job: int) -> int:
    """The 48-bit rng seed of one job (a pure function of the run seed, the epoch and the job index)."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + job * 0x94D049BB133111EB + 1) & (2**64 - 1)
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & (2**64 - 1)
    return (x ^ (x >> 29)) & MASK48 or 1


class CorpusIds:
    """The corpus in vocabulary ids: ``ids`` ``[T']`` int32 (out-of-vocabulary tokens dropped), ``offsets``
    ``[S + 1]`` into it, ``raw_offsets`` ``[S + 1]`` into the raw corpus (for the learning-rate schedule)."""

    def __init__(self, corpus: Any, vocab: Any) -> None:
        mapping = np.array([vocab.index.get(w, -1) for w in corpus.words], dtype=np.int32)
        mapped = mapping[corpus.ids]
        keep = mapped >= 0
        kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        self.ids = np.ascontiguousarray(mapped[keep], dtype=np.int32)
        self.offsets = np.ascontiguousarray(kept_before[corpus.offsets], dtype=np.int64)
        self.raw_offsets = np.asarray(corpus.offsets, dtype=np.int64)
        self.raw_words = int(self.raw_offsets[-1])

    @property
    def num_sentences(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def jobs(self, job_words: int) -> np.ndarray:
        """``[J + 1]`` sentence boundaries of jobs of about ``job_words`` raw words each."""
        cuts = np.searchsorted(self.raw_offsets, np.arange(job_words, self.raw_words, job_words), side="left")
        return np.unique(np.concatenate([[0], cuts, [self.num_sentences]])).astype(np.int64)


class Word2VecSGD(TrainingLoop):
    """``word2vec.sgd``; see the module docstring.

    Raises:
        BuildError: the spec is not a word2vec assembly (sampler, encoders, scorer or loss), or the numba
            backend was asked for on a GPU device.
    """

    def __init__(self, params: SGDParams, ctx: TrainContext) -> None:
        super().__init__(ctx)
        pipeline = ctx.pipeline
        self.params = params
        sampler = pipeline.sampler
        if not isinstance(sampler, Word2VecSampler):
            raise BuildError("word2vec.sgd needs [sampler] type = \"word2vec.skip-gram\" or \"word2vec.cbow\"")
        self.sampling = sampler.params
        self.cbow = sampler.cbow
        role, self.word = find_word_encoder(pipeline.encoders)
        contexts = [e for e in pipeline.encoders.values() if isinstance(e, ContextEmbedding)]
        if not contexts or pipeline.pair_roles != (role, next(r for r, e in pipeline.encoders.items() if e is contexts[0])):
            raise BuildError("word2vec.sgd needs two encoders in this order: [encoders.word] type = "
                             "\"word2vec.embedding\" and [encoders.context] type = \"word2vec.context\"")
        self.context = contexts[0]
        spec = pipeline.spec
        if spec.objective:
            raise BuildError("word2vec.sgd trains the spec's top-level [scorer] and [loss]; remove the "
                             "[[objective]] tables")
        # What the kernels compute is decided by the registered names the spec gives, not by class names.
        if spec.scorer is None or spec.scorer.type != "core.dot" or spec.scorer.params.temperature is not None:
            raise BuildError("word2vec.sgd scores with the plain dot product: [scorer] type = \"core.dot\" without "
                             "a temperature")
        self.loss_kind = LOSS_KINDS.get(spec.loss.type) if spec.loss is not None else None
        if self.loss_kind is None:
            raise BuildError("word2vec.sgd needs [loss] type = \"core.negative-sampling\" or \"core.nce\"")
        backend = params.backend
        if backend == "auto":
            backend = "torch" if ctx.device.type == "cuda" else "numba"
        if backend == "numba" and ctx.device.type != "cpu":
            raise BuildError(f"backend \"numba\" trains on the CPU; run.device is {ctx.device} (use backend = "
                             "\"torch\" or run.device = \"cpu\")")
        self.backend = backend
        assert pipeline.dataset is not None
        self.data = CorpusIds(pipeline.dataset.splits()["train"], self.word.vocabulary)
        self.job_bounds = self.data.jobs(params.job_words)
        vocab = self.word.vocabulary
        s = self.sampling
        self.keep = vocab.keep_probabilities(s.sample, total=int(vocab.counts.sum()))
        self.cum_table = vocab.cum_table(s.ns_exponent)  # the torch path samples by search
        self.alias_prob, self.alias_index = vocab.alias_table(s.ns_exponent)  # the kernel samples in O(1)
        self.log_kpn = np.log(s.negative * vocab.noise_distribution(s.ns_exponent))
        self.epochs = params.epochs
        self.epoch = 0
        self.plots = params.plots
        if backend == "numba":
            self.steps_per_epoch = len(self.job_bounds) - 1
        else:
            kept = float((self.keep * vocab.counts).sum())
            # one example per kept centre (CBOW) or per (centre, context) pair (skip-gram)
            pairs = kept if self.cbow else kept * 2 * (s.window + 1) / 2 if s.shrink_windows else kept * 2 * s.window
            self.steps_per_epoch = max(1, math.ceil(pairs / params.batch_size))
        self.total_steps = self.epochs * self.steps_per_epoch
        self.step = 0
        self.pipeline.to(ctx.device)

    def divergence_hints(self) -> list[str]:
        return [f"lower trainer.alpha (now {self.params.alpha:g})"]

    def lower_lr_override(self) -> str:
        return f"--set trainer.alpha={self.params.alpha / 10:g}"

    # -- state ---------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        from cl_core.api import atomic_write
        from cl_core.api import state_tensors

        tensors = {f"model.{k}": v for k, v in state_tensors(self.pipeline).items()}
        meta = {"progress": json.dumps({"epoch": self.epoch, "step": self.step, "eval": self.eval_results})}
        atomic_write(self.checkpoint_path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    def resume(self) -> None:
        """Restore the tables and the epoch of the last checkpoint; drop metric lines logged after it."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = self.checkpoint_path
        if not path.is_file():
            raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if "progress" not in meta:
            raise CheckpointError(f"{path} is not a word2vec.sgd checkpoint")
        progress = json.loads(meta["progress"])
        state = {k[len("model."):]: v for k, v in load_file(str(path)).items() if k.startswith("model.")}
        try:
            self.pipeline.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not match the pipeline: {exc}") from None
        self.epoch, self.step = int(progress["epoch"]), int(progress["step"])
        self.eval_results = dict(progress.get("eval") or {})
        self.drop_metrics_after(self.step)

    # -- training ------------------------------------------------------------------------------------------
    def fit(self, plots_dir: Path | None = None) -> dict[str, float]:
        """Train the remaining epochs, evaluate, checkpoint; returns the evaluation metrics."""
        self.pipeline.train()
        started = time.perf_counter()
        raw_done = 0
        while self.epoch < self.epochs:
            t0 = time.perf_counter()
            with torch.no_grad():
                stats = self._numba_epoch() if self.backend == "numba" else self._torch_epoch()
            seconds = time.perf_counter() - t0
            raw_done += self.data.raw_words
            self.epoch += 1
            alpha = self._alpha(self.epoch * self.data.raw_words)
            record: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "alpha": alpha,
                                      "words_per_s": self.data.raw_words / max(seconds, 1e-9),
                                      "trained_words": stats["effective"], "seconds": seconds}
            if self.params.compute_loss and stats["terms"]:
                record["loss"] = stats["loss"] / stats["terms"] * (self.sampling.negative + 1)
            self.write_metrics(record)
            self.log(f"epoch {self.epoch}/{self.epochs}: {record['words_per_s']:,.0f} words/s, "
                     f"{stats['effective']:,} words trained, alpha {alpha:.5f}"
                     + (f", loss {record['loss']:.4f}" if "loss" in record else ""))
            if self.params.checkpoint and self.epoch < self.epochs:
                self.save_checkpoint()
            for callback in self.callbacks:
                callback(self, self.step)
        elapsed = time.perf_counter() - started
        if raw_done:
            self.words_per_second = raw_done / max(elapsed, 1e-9)
            self.log(f"trained {raw_done:,} raw words in {elapsed:.1f} s ({self.words_per_second:,.0f} words/s, "
                     f"{self.backend} backend)")
        results = self.evaluate(plots_dir)
        if self.params.checkpoint:
            self.save_checkpoint()
        return results

    def _alpha(self, raw_done: int) -> float:
        p = self.params
        return max(p.min_alpha, p.alpha - (p.alpha - p.min_alpha) * raw_done / (self.epochs * self.data.raw_words))

    def _job_order(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's job order and, per job, the raw words processed before it in that order (the
        learning-rate schedule follows the processing order). With ``shuffle`` the order is a permutation
        seeded by (seed, epoch): the corpus is alphabetical dictionary text, then WordNet, then Wikipedia,
        and in corpus order the decay would always give the last source the smallest steps."""
        sizes = np.diff(self.data.raw_offsets[bounds])
        order = np.arange(sizes.shape[0])
        if self.params.shuffle:
            order = np.random.default_rng(job_seed(self.seed, self.epoch, 2**31)).permutation(sizes.shape[0])
        raw_before = np.empty_like(sizes)
        raw_before[order] = np.concatenate([[0], np.cumsum(sizes[order])[:-1]])
        return order, raw_before

    def _numba_epoch(self) -> dict[str, float]:
        from .kernels import train_job

        p, s, d = self.params, self.sampling, self.data
        syn0 = self.word.weight.data.numpy()
        syn1 = self.context.weight.data.numpy()
        keep_int = np.floor(self.keep * 2.0**32).astype(np.uint64)
        log_kpn = self.log_kpn.astype(syn0.dtype)
        bounds = self.job_bounds
        num_jobs = len(bounds) - 1
        raw_total = self.epochs * d.raw_words
        base = self.epoch * d.raw_words
        order, raw_before = self._job_order(bounds)
        lock = threading.Lock()
        state = {"next": 0, "loss": 0.0, "terms": 0, "effective": 0}
        errors: list[BaseException] = []

        def work() -> None:
            try:
                while True:
                    with lock:
                        k = state["next"]
                        state["next"] += 1
                    if k >= num_jobs:
                        return
                    j = int(order[k])
                    b, e = int(bounds[j]), int(bounds[j + 1])
                    loss, terms, effective = train_job(
                        syn0, syn1, d.ids, d.offsets, b, e, base + int(raw_before[j]), raw_total, p.alpha,
                        p.min_alpha, keep_int, self.alias_prob, self.alias_index, log_kpn, s.window, s.shrink_windows, s.negative,
                        self.loss_kind, self.cbow, getattr(s, "cbow_mean", True), job_seed(self.seed, self.epoch, j),
                        p.compute_loss)
                    with lock:
                        state["loss"] += loss
                        state["terms"] += terms
                        state["effective"] += effective
            except BaseException as exc:  # re-raised in the calling thread
                errors.append(exc)

        workers = min(p.workers, num_jobs)
        if workers <= 1:
            work()
        else:
            threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if errors:
            raise errors[0]
        self.step += num_jobs
        return state

    def _torch_epoch(self) -> dict[str, float]:
        from cl_core.api import NoiseTargets
        from cl_core.api import Targets

        p, s, d = self.params, self.sampling, self.data
        dev = self.device
        syn0, syn1 = self.word.weight.data, self.context.weight.data
        gen = torch.Generator(device=dev).manual_seed(job_seed(self.seed, self.epoch, 0))
        ids = torch.from_numpy(d.ids).to(dev, torch.int64)
        sentence = torch.from_numpy(np.repeat(np.arange(d.num_sentences, dtype=np.int32),
                                              np.diff(d.offsets))).to(dev)
        keep_p = torch.from_numpy(self.keep).to(dev, torch.float32)
        cum = torch.from_numpy(self.cum_table.astype(np.int64)).to(dev)
        total = int(self.cum_table[-1])
        log_kpn = torch.from_numpy(self.log_kpn).to(dev, syn0.dtype)
        k, window = s.negative, s.window
        cbow_mean = getattr(s, "cbow_mean", True)  # skip-gram params have none
        loss_sum, terms, effective = 0.0, 0, 0
        chunk = 1 << 21
        kept_total = max(1, d.ids.shape[0])
        for t0 in range(0, d.ids.shape[0], chunk):
            t1 = min(d.ids.shape[0], t0 + chunk)
            cid, cs = ids[t0:t1], sentence[t0:t1]
            keep = torch.rand(t1 - t0, generator=gen, device=dev) < keep_p[cid]
            kid, ks = cid[keep], cs[keep]
            n = kid.shape[0]
            effective += n
            if n < 2:
                continue
            if s.shrink_windows:
                reach = window - torch.randint(0, window, (n,), generator=gen, device=dev)
            else:
                reach = torch.full((n,), window, device=dev)
            if self.cbow:
                center, inp, mask = cbow_examples(kid, ks, reach, window)
            else:
                (center, inp), mask = skipgram_pairs(kid, ks, reach, window), None
            perm = torch.randperm(center.shape[0], generator=gen, device=dev)
            center, inp = center[perm], inp[perm]
            mask = None if mask is None else mask[perm]
            m = center.shape[0]
            p0, p1 = (self.epoch * kept_total + t0) / (self.epochs * kept_total), \
                (self.epoch * kept_total + t1) / (self.epochs * kept_total)
            for b0 in range(0, m, p.batch_size):
                b1 = min(m, b0 + p.batch_size)
                progress = p0 + (p1 - p0) * b0 / m
                alpha = max(p.min_alpha, p.alpha - (p.alpha - p.min_alpha) * progress)
                pos = center[b0:b1]
                noise = torch.searchsorted(cum, torch.randint(0, total, (b1 - b0, k), generator=gen, device=dev),
                                           right=True)
                cand = torch.cat([pos[:, None], noise], 1)
                value = sgd_step(syn0, syn1, inp[b0:b1], cand, alpha, self.pipeline.loss, self.loss_kind, log_kpn,
                                 Targets, NoiseTargets, context_mask=None if mask is None else mask[b0:b1],
                                 cbow_mean=cbow_mean)
                if p.compute_loss:
                    loss_sum += float(value) * (b1 - b0)
                    terms += (b1 - b0) * (k + 1)
                self.step += 1
        return {"loss": loss_sum, "terms": terms, "effective": effective}


def skipgram_pairs(ids: torch.Tensor, sentence: torch.Tensor, reach: torch.Tensor,
                   window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (centre, context) pair of a run of kept words: ``ids`` [n] word ids, ``sentence`` [n] sentence
    numbers, ``reach`` [n] each centre's reduced window (1..window). Returns ``(centres, contexts)`` [P]."""
    n = ids.shape[0]
    centers, inputs = [], []
    for dist in range(1, min(window, n - 1) + 1):
        same = sentence[dist:] == sentence[:-dist]
        fwd = same & (reach[:-dist] >= dist)  # centre i, context i + dist
        bwd = same & (reach[dist:] >= dist)  # centre i + dist, context i
        centers += [ids[:-dist][fwd], ids[dist:][bwd]]
        inputs += [ids[dist:][fwd], ids[:-dist][bwd]]
    return torch.cat(centers), torch.cat(inputs)


def cbow_examples(ids: torch.Tensor, sentence: torch.Tensor, reach: torch.Tensor,
                  window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CBOW examples of a run of kept words (arguments as :func:`skipgram_pairs`): ``(centres [M],
    contexts [M, 2 * window], mask [M, 2 * window])``, where ``mask`` marks the context words within the
    centre's reach and sentence. Centres without any context word are dropped (word2vec skips them)."""
    n = ids.shape[0]
    offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)]).to(ids.device)
    pos = torch.arange(n, device=ids.device)[:, None] + offsets[None, :]
    inside = (pos >= 0) & (pos < n)
    pos = pos.clamp(0, n - 1)
    mask = inside & (sentence[pos] == sentence[:, None]) & (offsets.abs()[None, :] <= reach[:, None])
    has = mask.any(1)
    return ids[has], ids[pos[has]], mask[has]


def sgd_step(syn0: torch.Tensor, syn1: torch.Tensor, inputs: torch.Tensor, cand: torch.Tensor, alpha: float,
             loss: Any, loss_kind: int, log_kpn: torch.Tensor, targets_cls: Any, noise_targets_cls: Any, *,
             context_mask: torch.Tensor | None = None, cbow_mean: bool = True) -> torch.Tensor:
    """One batched SGD step through the catalogue loss: input rows ``inputs`` [B] of ``syn0`` against
    ``cand`` [B, 1 + k] rows of ``syn1`` (column 0 the data word). The loss is a mean over rows, so the
    step is ``-alpha * B * grad``: word2vec's per-pair SGD, summed over the batch. Returns the loss (a 0-dim
    tensor on the device; reading it synchronises).

    CBOW: ``inputs`` [B, C] context words with ``context_mask`` [B, C]; the input of a row is the mean
    (``cbow_mean``) or the sum of its masked context rows, and its gradient is added to each of them
    unscaled (word2vec C's ``neu1e``).
    """
    b = inputs.shape[0]
    with torch.enable_grad():
        if context_mask is None:
            q = syn0[inputs]
        else:
            weights = context_mask.to(syn0.dtype)
            q = torch.einsum("bc,bcn->bn", weights, syn0[inputs])
            if cbow_mean:
                q = q / weights.sum(1, keepdim=True)
        q = q.detach().requires_grad_()
        c = syn1[cand].requires_grad_()
        scores = torch.einsum("bn,bkn->bk", q, c)
        positive = torch.zeros(b, dtype=torch.long, device=scores.device)
        if loss_kind == 1:
            # log_kpn = log(k p_noise); NCE subtracts log(k) + log_noise, so pass log_noise = log_kpn - log k.
            k = cand.shape[1] - 1
            targets = noise_targets_cls(positive=positive, log_noise=log_kpn[cand] - math.log(k), num_noise=k)
        else:
            targets = targets_cls(positive=positive)
        out = loss(scores, targets)
        gq, gc = torch.autograd.grad(out.value, [q, c])
    if context_mask is None:
        syn0.index_add_(0, inputs, gq, alpha=-alpha * b)
    else:
        rows = gq[:, None, :].expand(-1, inputs.shape[1], -1)
        syn0.index_add_(0, inputs[context_mask], rows[context_mask], alpha=-alpha * b)
    syn1.index_add_(0, cand.reshape(-1), gc.reshape(-1, syn1.shape[1]), alpha=-alpha * b)
    return out.value.detach()


def build_sgd(params: SGDParams, ctx: TrainContext) -> Word2VecSGD:
    return Word2VecSGD(params, ctx)
