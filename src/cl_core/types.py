"""Small data records passed between components."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

try:  # torch only for annotations; this module stays importable without it
    from torch import Tensor
except ImportError:  # pragma: no cover
    Tensor = Any  # type: ignore[misc,assignment]


@frozen
class Batch:
    """One training batch drawn by a :class:`~cl_core.components.Sampler`.

    Attributes:
        inputs: role -> list of raw items (PIL images, strings, arrays), all of length B; row ``i`` of
            every role is one positive pair.
        labels: ``[B]`` int64 concept labels or None. Items with equal labels are positives of each
            other when a loss is asked for label-aware positives.
        indices: ``[B]`` int64 example indices into the data source.
    """

    inputs: Mapping[str, list[Any]]
    labels: Tensor | None
    indices: Tensor

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@frozen
class Targets:
    """What a loss needs to know about which candidates are positives.

    Attributes:
        positive: ``[Q]`` int64: column of each query's own positive (in-batch pairs: ``arange(Q)``).
        labels: ``[Q]`` int64 labels of the queries, or None. For in-batch pairs the candidates carry the
            same labels, so ``labels[i] == labels[j]`` marks column j as another positive of row i.
    """

    positive: Tensor
    labels: Tensor | None = None

    def positive_mask(self, num_candidates: int) -> Tensor:
        """``[Q, C]`` bool: the own positive, plus same-label columns when labels are given."""
        import torch

        q = self.positive.shape[0]
        mask = torch.zeros(q, num_candidates, dtype=torch.bool, device=self.positive.device)
        mask[torch.arange(q, device=mask.device), self.positive] = True
        if self.labels is not None:
            if num_candidates != q:
                raise ValueError(
                    f"label-aware positives need one candidate per query (in-batch pairs); "
                    f"got {q} queries and {num_candidates} candidates"
                )
            mask |= self.labels[:, None] == self.labels[None, :]
        return mask


@frozen
class EncoderOutput:
    """What one forward pass of an encoder gives: the embedding every encoder returns and, for encoders that
    declare ``provides_tokens``, the token states that cross-attention and attentional poolers read (CoCa's
    captioner reads the image tower's tokens from the same pass that gives its contrastive embedding).

    Attributes:
        embedding: ``[B, N]`` the row embeddings (what :meth:`~cl_core.components.Encoder.encode` returns).
        tokens: ``[B, T, D]`` token states, or None.
        mask: ``[B, T]`` bool, True at real tokens (False at padding), or None (every token is real).
        extras: further named tensors of the same pass that an objective of the same plugin reads (e.g.
            a masked-LM's token logits); the core never looks inside.
    """

    embedding: Tensor
    tokens: Tensor | None = None
    mask: Tensor | None = None
    extras: Mapping[str, Tensor] = field(factory=dict)


@frozen
class LossOutput:
    """A loss value (scalar tensor) and named parts for logging (e.g. each direction of CLIP)."""

    value: Tensor
    parts: Mapping[str, Tensor] = field(factory=dict)
