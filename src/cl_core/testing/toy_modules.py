"""The torch modules of the ``toy`` and ``squares`` test plugins (:mod:`cl_core.testing.toy`,
:mod:`cl_core.testing.squares`), at module level so that they pickle: a pipeline's data path is copied into
worker processes (``trainer.data_processes``) as any plugin's would be. The plugin modules import this one only
when they build a component, so discovering them needs no torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..components import Decoder, Encoder
from ..types import EncoderOutput, LossOutput
from .toy import BOS, CHARS, EOS, PAD


def char_ids(texts: Sequence[str], *, bos: bool, eos: bool) -> torch.Tensor:
    """``[B, T]`` int64 character ids of ``texts`` (unknown characters dropped), padded with ``PAD``."""
    rows = [[BOS] * bos + [3 + CHARS.index(ch) for ch in str(t).lower() if ch in CHARS] + [EOS] * eos for t in texts]
    width = max(1, max((len(r) for r in rows), default=1))
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


class Linear(Encoder):
    """``toy.linear``: a linear map of float vectors ``[B, in_dim]`` to ``[B, embed_dim]``."""

    modality = "vector"

    def __init__(self, in_dim: int, embed_dim: int, tokens: int = 0) -> None:
        super().__init__()
        self.in_dim, self._embed_dim, self.tokens = in_dim, embed_dim, tokens
        self.proj = torch.nn.Linear(in_dim, embed_dim)
        if tokens:
            self.token_proj = torch.nn.Linear(in_dim, tokens * embed_dim)

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    def prepare(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        if len(items) == 0:
            return {"x": torch.empty(0, self.in_dim)}
        return {"x": torch.as_tensor(np.stack(items), dtype=torch.float32)}

    def _encode(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._encode_states(inputs).embedding

    def _encode_states(self, inputs: Mapping[str, torch.Tensor]) -> EncoderOutput:
        x = inputs["x"]
        if not self.tokens:
            return EncoderOutput(self.proj(x))
        tokens = self.token_proj(x).view(x.shape[0], self.tokens, self._embed_dim)
        return EncoderOutput(self.proj(x) + tokens.mean(dim=1), tokens=tokens)


class TokenLinear(Linear):
    """``toy.linear`` with ``tokens > 0``: also token states ``[B, tokens, embed_dim]``."""

    provides_tokens = True


class Chars(Encoder):
    """``toy.chars``: the mean of learned character embeddings, then a linear map to ``[B, embed_dim]``."""

    modality = "text"

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self._embed_dim = embed_dim
        self.table = torch.nn.Embedding(3 + len(CHARS), 16, padding_idx=PAD)
        self.proj = torch.nn.Linear(16, embed_dim)

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    def prepare(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"ids": char_ids(items, bos=False, eos=False)}

    def _encode(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids = inputs["ids"]
        mask = (ids != PAD).unsqueeze(-1).to(self.table.weight.dtype)
        mean = (self.table(ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.proj(mean)


class CharDecoder(Decoder):
    """``toy.char-decoder``: a character GRU conditioned on an embedding (a linear map of it added to every step)."""

    trainable = True

    def __init__(self, embed_dim: int, hidden: int) -> None:
        super().__init__()
        vocab = 3 + len(CHARS)
        self.init = torch.nn.Linear(embed_dim, hidden)
        self.table = torch.nn.Embedding(vocab, hidden)
        self.gru = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, vocab)

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"ids": char_ids(texts, bos=True, eos=True)}

    def _inputs(self, ids: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.table(ids) + self.init(condition).unsqueeze(1)

    def _condition(self, condition: Any) -> torch.Tensor:
        return condition.tokens.mean(dim=1) if self.reads_tokens else condition.embedding

    def _caption_loss(self, condition: Any, targets: Mapping[str, torch.Tensor]) -> Any:
        ids = targets["ids"]
        states, _ = self.gru(self._inputs(ids[:, :-1], self._condition(condition)))
        logits = self.out(states)
        value = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=PAD)
        return LossOutput(value)

    def _decode_output(self, condition: Any, *, max_length: int) -> list[str]:
        return self._decode(self._condition(condition), max_length=max_length)

    def _decode(self, embeddings: torch.Tensor, *, max_length: int) -> list[str]:
        hidden = None
        token = torch.full((embeddings.shape[0], 1), BOS, dtype=torch.long, device=embeddings.device)
        chars: list[list[str]] = [[] for _ in range(embeddings.shape[0])]
        done = [False] * embeddings.shape[0]
        for _ in range(max_length):
            states, hidden = self.gru(self._inputs(token, embeddings), hidden)
            token = self.out(states[:, -1]).argmax(-1, keepdim=True)
            for row, t in enumerate(token[:, 0].tolist()):
                if t == EOS:
                    done[row] = True
                elif not done[row] and t > EOS:
                    chars[row].append(CHARS[t - 3])
            if all(done):
                break
        return ["".join(c) for c in chars]


class TokenCharDecoder(CharDecoder):
    """``toy.char-decoder`` with ``reads_tokens``: conditioned on the mean of the token states."""

    reads_tokens = True


class ClassNames(Decoder):
    """``toy.class-names``: the name of the nearest of ``classes`` learned prototypes ``[classes, embed_dim]``."""

    def __init__(self, classes: int, embed_dim: int) -> None:
        super().__init__()
        self.prototypes = torch.nn.Parameter(torch.randn(classes, embed_dim))

    def _decode(self, embeddings: torch.Tensor, *, max_length: int) -> list[str]:
        nearest = (embeddings @ self.prototypes.t()).argmax(1).tolist()
        return [" ".join(f"class {i}".split()[:max_length]) for i in nearest]


class Pixels(Encoder):
    """``squares.pixels``: the mean colour of an image (``[B, 3]`` in [0, 1], minus ``center``), then a linear map."""

    modality = "image"

    def __init__(self, embed_dim: int, center: float) -> None:
        super().__init__()
        self._embed_dim, self.center = embed_dim, center
        self.proj = torch.nn.Linear(3, embed_dim)

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    def prepare(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        rows = [np.asarray(i.convert("RGB").resize((4, 4)), dtype=np.float32).reshape(-1, 3).mean(0) / 255
                for i in items]
        return {"x": torch.as_tensor(np.stack(rows) if rows else np.zeros((0, 3), np.float32))}

    def _encode(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.proj(inputs["x"] - self.center)
