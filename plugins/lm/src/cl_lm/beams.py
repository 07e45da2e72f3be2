"""The bookkeeping of length-normalised beam search, apart from any model: :class:`Beams`.

A search over B rows with W beams each keeps, per row, W running beams (their tokens and summed log-probabilities)
and W finished slots. At each step the caller gives the next-token log-probabilities of every running beam
(``[a, W, V]`` for the a rows still searching), and :meth:`Beams.advance`

1. adds them to the beams' scores and keeps the best ``2 x W`` of the ``W x V`` continuations (with one end token
   per beam, at least W of them go on);
2. makes the best W continuations that do not end the next running beams;
3. puts each continuation that ends (the end token, whatever the caller's ``ends`` adds, or any at the last step)
   among the best W into the finished slots if it beats their worst, scored sum log p / L ** length_penalty with L
   its generated tokens (end token included);
4. closes a row when all its W finished slots are full and its best running beam, normalised by the current
   length, cannot beat the worst of them.

These are the semantics of ``transformers``' ``generate(num_beams=..., early_stopping=False)`` (its default).
:func:`cl_lm.generate.generate`'s ``"beam"`` runs the LM with a KV cache through it; ZeroCap
(``cl_iterative_decoder.zerocap``) steers each step's log-probabilities first. What a step's log-probabilities
are, how the model is run, and what is done with the finished hypotheses are the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Score of an impossible hypothesis (``transformers`` uses the same constant, so rankings agree).
NEG = -1.0e9


@dataclass
class Step:
    """What one :meth:`Beams.advance` did, for the rows still searching after it (a' of the a searched).

    Attributes:
        kept: ``[a']`` int64 positions, among the a rows searched at this step, of the rows still searching.
        parent: ``[a', W]`` int64 beam (0..W-1, of the row's beams before the step) each new running beam continues.
        token: ``[a', W]`` int64 token each new running beam appended.
    """

    kept: Tensor
    parent: Tensor
    token: Tensor


@dataclass
class Hypotheses:
    """The finished slots of B rows, best first (slot 0: the row's best hypothesis).

    Attributes:
        tokens: ``[B, W, T]`` int64 generated ids (T the steps allowed), ``pad_id`` after ``lengths``.
        lengths: ``[B, W]`` int64 generated tokens (the end token included where there is one).
        scores: ``[B, W]`` float32 length-normalised scores (:data:`NEG` in an empty slot).
        done: ``[B, W]`` bool: the slot holds a hypothesis.
        ended: ``[B, W]`` bool: the hypothesis ended (end token or the caller's ``ends``) rather than ran out of
            steps.
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor
    done: Tensor
    ended: Tensor


class Beams:
    """Running beams and finished hypotheses of a beam search over ``rows`` rows (see the module docstring).

    Args:
        rows: B, the rows searched.
        beam_size: W, beams (and finished slots) per row.
        steps: T, tokens generated per row at most (at step T - 1 every continuation finishes).
        eos_id: the end-of-text token: a continuation that appends it has ended.
        pad_id: what token tensors hold past a hypothesis' length.
        length_penalty: a finished hypothesis scores sum log p / L ** length_penalty.
        device: where the bookkeeping tensors live.

    Attributes:
        active: ``[a]`` int64 rows (of B) still searching; a row whose result is settled is dropped.
        step: the steps advanced so far (the position the next token takes).
        done: the search is over (the last step ran, every row is settled, or every continuation ended).
    """

    def __init__(self, rows: int, beam_size: int, steps: int, *, eos_id: int, pad_id: int,
                 length_penalty: float = 1.0, device: torch.device | str = "cpu") -> None:
        b, w, n = rows, beam_size, steps
        self.width, self.steps, self.eos_id, self.length_penalty = w, n, eos_id, length_penalty
        self.run_tok = torch.full((b, w, n), pad_id, dtype=torch.long, device=device)
        self.run_score = torch.zeros(b, w, device=device)
        self.run_score[:, 1:] = NEG  # only the first beam's continuations at the first step
        self.fin_tok = torch.full((b, w, n), pad_id, dtype=torch.long, device=device)
        self.fin_score = torch.full((b, w), NEG, device=device)
        self.fin_done = torch.zeros(b, w, dtype=torch.bool, device=device)
        self.fin_len = torch.zeros(b, w, dtype=torch.long, device=device)
        self.fin_end = torch.zeros(b, w, dtype=torch.bool, device=device)
        self.open = torch.ones(b, dtype=torch.bool, device=device)  # the stopping rule not yet satisfied
        self.active = torch.arange(b, device=device)
        self.step = 0
        self.done = False

    def running(self) -> Tensor:
        """``[a, W, step]`` int64 tokens of the running beams of the rows still searching."""
        return self.run_tok[self.active][:, :, : self.step]

    def advance(self, logprobs: Tensor, ends: Callable[[Tensor], Tensor] | None = None) -> Step:
        """One step: the rows in :attr:`active` continue their beams with ``logprobs``.

        Args:
            logprobs: ``[a, W, V]`` next-token log-probabilities of each running beam of the active rows (at the
                first step all beams of a row hold the same; only the first one's continuations count).
            ends: called with the ``[a, 2W, step + 1]`` token ids of the kept continuations, returns ``[a, 2W]``
                bool: which of them end besides those appending the end token (stop strings), or None.

        Returns:
            :class:`Step`: for the rows still searching, where each new running beam comes from and its token.
        """
        if self.done:
            raise RuntimeError("the beam search is over")
        t, w, active = self.step, self.width, self.active
        a, vocab = logprobs.shape[0], logprobs.shape[-1]
        keep_k = min(2 * w, w * vocab)  # one end token: at least w unfinished continuations survive every step
        first = torch.arange(keep_k, device=logprobs.device) < w
        total = logprobs.view(a, w, vocab) + self.run_score[active][:, :, None]
        top_lp, top_idx = torch.topk(total.view(a, w * vocab), keep_k, dim=-1)
        src, token = top_idx // vocab, top_idx % vocab
        cand = torch.take_along_dim(self.run_tok[active], src[:, :, None], dim=1)
        cand[:, :, t] = token
        ended = token == self.eos_id
        if ends is not None:
            ended = ended | ends(cand[:, :, : t + 1]).to(device=ended.device, dtype=torch.bool)
        hits = torch.ones_like(ended) if t == self.steps - 1 else ended
        # the best w continuations that go on
        going = top_lp + hits.float() * NEG
        nxt = torch.topk(going, w, dim=-1).indices
        self.run_tok[active] = torch.take_along_dim(cand, nxt[:, :, None], dim=1)
        self.run_score[active] = torch.take_along_dim(going, nxt, dim=1)
        parent = torch.take_along_dim(src, nxt, dim=1)
        # finished hypotheses among the best w continuations, normalised by their generated length
        scale = float((t + 1) ** self.length_penalty)
        norm = top_lp / scale
        norm = norm + (~self.open[active]).float()[:, None] * NEG + (~(hits & first)).float() * NEG
        merged = torch.cat([self.fin_score[active], norm], dim=1)
        best = torch.topk(merged, w, dim=-1).indices

        def merge(slots: Tensor, new: Tensor) -> Tensor:
            both = torch.cat([slots[active], new], dim=1)
            return torch.take_along_dim(both, best if both.dim() == 2 else best[:, :, None], dim=1)

        self.fin_score[active] = torch.take_along_dim(merged, best, dim=1)
        self.fin_tok[active] = merge(self.fin_tok, cand)
        self.fin_done[active] = merge(self.fin_done, hits & first)
        self.fin_end[active] = merge(self.fin_end, ended)
        self.fin_len[active] = merge(self.fin_len, torch.full_like(token, t + 1))
        # can the best running beam still beat the worst finished one (transformers' early_stopping=False)?
        best_possible = self.run_score[active][:, :1] / scale
        fin_score = self.fin_score[active]
        worst = torch.where(self.fin_done[active], fin_score.min(dim=1, keepdim=True).values,
                            torch.full_like(fin_score, NEG))
        still = (best_possible > worst).any(dim=1)
        self.open[active] &= still
        self.step = t + 1
        self.done = self.step == self.steps or not bool(still.any()) or bool(hits.all())
        kept = still.nonzero()[:, 0]
        self.active = active[kept]
        return Step(kept=kept, parent=parent[kept], token=self.run_tok[self.active][:, :, t])

    def hypotheses(self) -> Hypotheses:
        """Every row's finished slots, best first (all rows, settled or not)."""
        return Hypotheses(tokens=self.fin_tok, lengths=self.fin_len, scores=self.fin_score, done=self.fin_done,
                          ended=self.fin_end)

    def best(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Each row's best hypothesis: ids ``[B, T]``, generated lengths ``[B]``, normalised scores ``[B]`` and
        whether it ended ``[B]`` (end token or the caller's ``ends``) rather than ran out of steps."""
        return self.fin_tok[:, 0], self.fin_len[:, 0], self.fin_score[:, 0], self.fin_end[:, 0]
