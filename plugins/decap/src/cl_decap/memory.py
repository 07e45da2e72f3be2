"""DeCap's support memory and the entity vocabulary: texts with their unit-norm text embeddings, kept in buffers so
a saved model decodes the same way without its data.

:class:`TextMemory` is DeCap's projection-based decoding (Li et al., 2023, sec. 3.2): an image embedding v (unit
norm) is replaced by a combination of M text embeddings m_i (unit norm) of the memory,

    w = softmax(v M^T / tau),   v' = sum_i w_i m_i / || sum_i w_i m_i ||,

with tau = 1/100 in the paper, so the decoder, trained on text embeddings only, reads an embedding that lies
among the text embeddings it was trained on instead of one across the modality gap.

:class:`EntityVocabulary` holds the names of ViECap's entities (Fei et al., 2023) and retrieves the top-k names
of a query by cosine similarity.

Both keep three buffers (names relative to the module):

* ``embeddings``: ``[M, N]`` float32, unit-norm rows;
* ``text``: ``[bytes]`` uint8, the texts' UTF-8 bytes one after another;
* ``offsets``: ``[M + 1]`` int64, where text ``i`` starts and ends in ``text``.

Their sizes come from the data, so a module built to load weights starts empty and takes the saved shapes on load
(``resize_to_saved``, called by ``cl_core``'s loader; ``_load_from_state_dict`` does the same for a direct
``load_state_dict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_core.api import pack_texts, unpack_texts

#: memory rows scored against a batch at once (bounds the [B, rows] block of the projection)
CHUNK = 65536
_NAMES = ("embeddings", "text", "offsets")


class TextTable(nn.Module):
    """Texts with unit-norm embeddings ``[M, N]`` in buffers (module docstring).

    Args:
        texts: the M texts.
        embeddings: ``[M, N]`` their embeddings (normalised here).
        what: what the table is, for messages ("DeCap's memory").

    Raises:
        ValueError: ``embeddings`` is not ``[M, N]`` for the M texts, or holds non-finite values.
    """

    def __init__(self, texts: Sequence[str], embeddings: Tensor, what: str = "the table") -> None:
        super().__init__()
        if embeddings.dim() != 2 or embeddings.shape[0] != len(texts):
            raise ValueError(f"{what}: {len(texts)} texts need [{len(texts)}, N] embeddings, got "
                             f"{list(embeddings.shape)}")
        if not bool(torch.isfinite(embeddings).all()):
            raise ValueError(f"{what}: the embeddings hold non-finite values")
        self.what = what
        text, offsets = pack_texts(texts)
        self.register_buffer("embeddings", F.normalize(embeddings.detach().float(), dim=-1).contiguous())
        self.register_buffer("text", text)
        self.register_buffer("offsets", offsets)
        self._texts: list[str] | None = list(texts)

    @property
    def texts(self) -> list[str]:
        """The texts, in row order."""
        if self._texts is None:
            self._texts = unpack_texts(self.text, self.offsets)
        return self._texts

    @property
    def width(self) -> int:
        """N, the width of the embeddings."""
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def check_query(self, query: Tensor) -> None:
        """Raises ValueError when the table is empty, or ``query`` is not ``[B, N]`` with this table's N."""
        if len(self) == 0:
            raise ValueError(f"{self.what} is empty: build it from data (splits / files) or load saved weights")
        if query.dim() != 2:
            raise ValueError(f"{self.what}: expected [B, N] query embeddings, got {list(query.shape)}")
        if query.shape[1] != self.width:
            raise ValueError(f"{self.what} holds {self.width}-dim text embeddings, got {query.shape[1]}-dim "
                             "embeddings: they come from a model of another space")

    # -- loading: buffer sizes come from the data ---------------------------------------------------------------
    def resize_to_saved(self, tensors: dict[str, Tensor]) -> None:
        """Take the shapes of the saved buffers (keys relative to this module) before a strict load."""
        for name in _NAMES:
            saved, current = tensors.get(name), getattr(self, name)
            if saved is not None and saved.shape != current.shape:
                setattr(self, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))
        self._texts = None

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        self.resize_to_saved({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._texts = None


class TextMemory(TextTable):
    """DeCap's support memory: :meth:`project` (module docstring)."""

    def __init__(self, texts: Sequence[str], embeddings: Tensor) -> None:
        super().__init__(texts, embeddings, what="DeCap's memory")

    def weights(self, query: Tensor, temperature: float) -> Tensor:
        """``[B, M]`` projection weights softmax(q M^T / temperature) of the normalised queries ``[B, N]``.

        Raises:
            ValueError: see :meth:`TextTable.check_query`; ``temperature <= 0``.
        """
        self.check_query(query)
        if temperature <= 0:
            raise ValueError(f"the projection temperature must be > 0, got {temperature}")
        q = F.normalize(query.float().to(self.embeddings.device), dim=-1)
        return torch.softmax(q @ self.embeddings.t() / temperature, dim=-1)

    def project(self, query: Tensor, temperature: float = 0.01) -> Tensor:
        """The queries ``[B, N]`` projected onto the memory: normalise(softmax(q M^T / temperature) M), ``[B, N]``
        unit-norm float32 (computed over the memory in chunks of :data:`CHUNK` rows, with a running log-sum-exp,
        so a large memory needs no ``[B, M]`` block).

        Raises:
            ValueError: see :meth:`TextTable.check_query`; ``temperature <= 0``.
        """
        self.check_query(query)
        if temperature <= 0:
            raise ValueError(f"the projection temperature must be > 0, got {temperature}")
        q = F.normalize(query.float().to(self.embeddings.device), dim=-1)
        if len(self) <= CHUNK:
            mixed = torch.softmax(q @ self.embeddings.t() / temperature, dim=-1) @ self.embeddings
            return F.normalize(mixed, dim=-1)
        top = torch.full((q.shape[0], 1), float("-inf"), device=q.device)
        total = torch.zeros(q.shape[0], 1, device=q.device)
        mixed = torch.zeros_like(q)
        for start in range(0, len(self), CHUNK):
            rows = self.embeddings[start : start + CHUNK]
            logits = q @ rows.t() / temperature
            new_top = torch.maximum(top, logits.max(dim=1, keepdim=True).values)
            scale = torch.exp(top - new_top)
            e = torch.exp(logits - new_top)
            total = total * scale + e.sum(dim=1, keepdim=True)
            mixed = mixed * scale + e @ rows
            top = new_top
        return F.normalize(mixed / total, dim=-1)


class EntityVocabulary(TextTable):
    """The names of ViECap's entity vocabulary with their text embeddings: :meth:`top` (module docstring)."""

    def __init__(self, names: Sequence[str], embeddings: Tensor) -> None:
        super().__init__(names, embeddings, what="the entity vocabulary")

    def top(self, query: Tensor, k: int) -> Tensor:
        """``[B, min(k, E)]`` indices of the names closest (cosine) to each query ``[B, N]``, best first (ties to the
        earlier name).

        Raises:
            ValueError: see :meth:`TextTable.check_query`; ``k < 1``.
        """
        self.check_query(query)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = F.normalize(query.float().to(self.embeddings.device), dim=-1)
        sims = q @ self.embeddings.t()
        return torch.sort(sims, dim=-1, descending=True, stable=True).indices[:, : min(k, len(self))]
