"""The Decoder interface: inverts embeddings back into text."""

from __future__ import annotations

import abc

from torch import Tensor, nn

from .checks import check_finite, check_matrix


class Decoder(nn.Module, abc.ABC):
    """Maps embeddings ``[B, N]`` to ``B`` strings (ClipCap, DeCap, CapDec, CoCa, iterative decoders)."""

    @abc.abstractmethod
    def _decode(self, embeddings: Tensor, *, max_length: int) -> list[str]: ...

    def decode(self, embeddings: Tensor, *, max_length: int = 32) -> list[str]:
        """One string per embedding row, each at most ``max_length`` tokens. Raises ValueError."""
        check_matrix(embeddings, "embeddings")
        check_finite(embeddings, "embeddings")
        if max_length <= 0:
            raise ValueError(f"max_length must be > 0, got {max_length}")
        out = self._decode(embeddings, max_length=max_length)
        if len(out) != embeddings.shape[0]:
            raise ValueError(f"{type(self).__qualname__} returned {len(out)} strings for {embeddings.shape[0]} embeddings")
        return out
