"""Cosine similarity between query embeddings and candidate texts, through a contrastive model's text tower.

Both iterative decoders score, at every step, each row's candidate continuations against its query: MAGIC's
``f_magic`` (Su et al., 2022, "Language Models Can See") and ZeroCap's CLIP target (Tewel et al., 2022, "ZeroCap:
Zero-Shot Image-to-Text Generation for Visual-Semantic Arithmetic"). The text tower is the costly part (a forward
pass per text), and the texts repeat: every row starts from the same prompt, rows of similar queries pick the same
words, and a candidate scored at one step is the prefix of the next step's candidates. So :class:`TextSimilarity`
embeds each distinct text once per call (all rows' candidates in one batched pass) and, with ``reuse``, keeps the
embeddings across steps and calls. ``reuse = False`` is the straightforward version the speed-up is measured
against (every text of every row embedded every time, one row at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: similarity of an empty text (the end token as the first word): below any cosine, so it never wins
EMPTY = -2.0


class TextSimilarity:
    """``similarity(queries [a, N], texts: a lists of k strings) -> [a, k]`` cosine similarities.

    Args:
        encoder: the text tower (a :class:`cl_core.api.Encoder` of texts, in the queries' space).
        batch_size: texts per forward pass of the tower.
        reuse: keep text embeddings across calls (the speed-up); False embeds every text of every row each call.
        capacity: the most embeddings kept; the store starts again from empty when it would exceed it.

    An empty (or whitespace) text scores :data:`EMPTY`.

    Raises (on call):
        ValueError: the queries are not ``[a, N]`` with N the tower's width (a query from another space), or the
            rows of texts do not match the queries.
    """

    def __init__(self, encoder: Any, *, batch_size: int = 512, reuse: bool = True, capacity: int = 200_000) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.reuse = reuse
        self.capacity = capacity
        self._index: dict[str, int] = {}
        self._rows: list[Tensor] = []
        self.embedded = 0  #: texts run through the tower so far (what the speed-ups save)

    @property
    def width(self) -> int:
        return int(self.encoder.embed_dim)

    def clear(self) -> None:
        self._index.clear()
        self._rows.clear()

    def _encode(self, texts: list[str]) -> Tensor:
        """``[len(texts), N]`` unit-norm embeddings, straight through the tower (no cache of any kind). Texts are
        batched in order of length, so a batch pads its texts to about the same length (less wasted work)."""
        was_training = self.encoder.training
        self.encoder.eval()
        device = next((p.device for p in self.encoder.parameters()), torch.device("cpu"))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(texts), self.batch_size):
                    inputs = self.encoder.prepare([texts[i] for i in order[start : start + self.batch_size]])
                    inputs = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in inputs.items()}
                    out.append(self.encoder.encode(inputs).float().cpu())
        finally:
            self.encoder.train(was_training)
        self.embedded += len(texts)
        rows = torch.empty(len(texts), self.width)
        rows[torch.tensor(order, dtype=torch.long)] = torch.cat(out) if out else rows[:0]
        return F.normalize(rows, dim=-1)

    def embed(self, texts: Sequence[str]) -> Tensor:
        """``[len(texts), N]`` unit-norm embeddings (CPU); with ``reuse``, each distinct text embedded once ever."""
        if not self.reuse:
            return self._encode(list(texts))
        missing = list(dict.fromkeys(t for t in texts if t not in self._index))
        if len(self._index) + len(missing) > self.capacity:
            self.clear()
            missing = list(dict.fromkeys(texts))
        if missing:
            rows = self._encode(missing)
            base = sum(r.shape[0] for r in self._rows)
            self._rows.append(rows)
            self._index.update((t, base + i) for i, t in enumerate(missing))
            if len(self._rows) > 1:
                self._rows = [torch.cat(self._rows)]
        table = self._rows[0]
        return table[torch.tensor([self._index[t] for t in texts], dtype=torch.long)]

    def __call__(self, queries: Tensor, texts: Sequence[Sequence[str]]) -> Tensor:
        if queries.dim() != 2 or queries.shape[1] != self.width:
            raise ValueError(f"queries must be [a, {self.width}] (the text tower's width), got {list(queries.shape)}: "
                             "an embedding from another space cannot be scored against this tower's texts")
        if len(texts) != queries.shape[0]:
            raise ValueError(f"{len(texts)} rows of candidate texts for {queries.shape[0]} queries")
        k = len(texts[0]) if texts else 0
        if any(len(row) != k for row in texts):
            raise ValueError("every row needs the same number of candidate texts")
        query = F.normalize(queries.detach().float(), dim=-1)
        out = torch.full((len(texts), k), EMPTY, device=query.device)
        filled = [(r, j) for r, row in enumerate(texts) for j, t in enumerate(row) if t.strip()]
        if not filled:
            return out
        if self.reuse:  # every row's candidates in one batched pass of the distinct texts
            table = self.embed([texts[r][j] for r, j in filled]).to(query.device)
            rows = torch.tensor([r for r, _ in filled], device=query.device)
            cols = torch.tensor([j for _, j in filled], device=query.device)
            out[rows, cols] = (table * query[rows]).sum(-1)
            return out
        for r, row in enumerate(texts):  # the straightforward version: row by row, nothing kept
            cols = [j for j, t in enumerate(row) if t.strip()]
            if cols:
                table = self.embed([row[j] for j in cols]).to(query.device)
                out[r, torch.tensor(cols, device=query.device)] = table @ query[r]
        return out
