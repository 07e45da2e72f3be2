"""The Encoder interface: one modality's inputs to a batch of embeddings."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..types import EncoderOutput
from .checks import check_finite, check_matrix


class Encoder(nn.Module, abc.ABC):
    """Maps one modality's inputs to embeddings ``[B, embed_dim]``.

    Implement :meth:`prepare` (raw items to tensors; runs on CPU in the data path) and :meth:`_encode`.
    Callers use :meth:`encode` (or call the module), which checks the output contract: shape
    ``[B, embed_dim]``, floating dtype, finite values.

    Capabilities are declared as class attributes, so the core never guesses from a class name:

    * ``provides_tokens``: :meth:`_encode_states` also returns token states ``[B, T, D]`` (and a mask)
      from the same pass, for objectives and decoders that cross-attend (CoCa).
    * ``needs_inputs``: the encoder embeds raw items of its role; False for a fixed
      :class:`CandidateSet`, which a batch gives no items for.
    """

    modality: ClassVar[str] = "any"
    provides_tokens: ClassVar[bool] = False
    needs_inputs: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int:
        """Width N of the embeddings :meth:`encode` returns."""

    @abc.abstractmethod
    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """Turn raw items (strings, PIL images, arrays) into a dict of CPU tensors with batch dim first."""

    @abc.abstractmethod
    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor: ...

    def encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Embed prepared inputs. Returns ``[B, embed_dim]``; raises ValueError/FloatingPointError."""
        out = self._encode(inputs)
        producer = type(self).__qualname__
        check_matrix(out, "embeddings", width=self.embed_dim, producer=producer)
        check_finite(out, "embeddings", producer)
        return out

    def encode_states(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """Embed prepared inputs and return the token states of the same pass (encoders that declare
        ``provides_tokens``; others give ``tokens = None``).

        Returns:
            :class:`~cl_core.types.EncoderOutput` with ``embedding [B, embed_dim]`` and, when provided,
            ``tokens [B, T, D]`` and ``mask [B, T]`` (bool).

        Raises:
            ValueError: an embedding that breaks the contract, or tokens / mask of the wrong shape.
            FloatingPointError: non-finite embeddings.
        """
        out = self._encode_states(inputs)
        producer = type(self).__qualname__
        check_matrix(out.embedding, "embeddings", width=self.embed_dim, producer=producer)
        check_finite(out.embedding, "embeddings", producer)
        rows = out.embedding.shape[0]
        if out.tokens is not None:
            if out.tokens.dim() != 3 or out.tokens.shape[0] != rows:
                raise ValueError(f"{producer}: token states must have shape [{rows}, T, D], got "
                                 f"{list(out.tokens.shape)}")
            if out.mask is not None and tuple(out.mask.shape) != tuple(out.tokens.shape[:2]):
                raise ValueError(f"{producer}: the token mask must have shape {list(out.tokens.shape[:2])}, got "
                                 f"{list(out.mask.shape)}")
        return out

    def _encode_states(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """Override in encoders that declare ``provides_tokens``; the default has no token states."""
        return EncoderOutput(self._encode(inputs))

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.encode(inputs)

    def embed(self, items: Sequence[Any], *, batch_size: int = 256, device: torch.device | str | None = None) -> Tensor:
        """Embed raw items in eval mode, batch by batch. Returns ``[len(items), embed_dim]`` on CPU."""
        return self.map_batches(self.encode, items, batch_size=batch_size, device=device, what="embed()")

    @torch.no_grad()
    def map_batches(
        self,
        fn: Callable[[Mapping[str, Tensor]], Tensor],
        items: Sequence[Any],
        *,
        batch_size: int = 256,
        device: torch.device | str | None = None,
        what: str = "map_batches()",
    ) -> Tensor:
        """``fn`` over :meth:`prepare`-d batches of raw ``items`` in eval mode, without gradients; the float32
        CPU results ``[len(items), ...]`` concatenated. The training mode is restored afterwards.

        Raises:
            ValueError: ``items`` is empty (named by ``what``).
        """
        if len(items) == 0:
            raise ValueError(f"{what} needs at least one item")
        if device is None:
            device = next((p.device for p in self.parameters()), torch.device("cpu"))
        device = torch.device(device)
        was_training = self.training
        self.eval()
        try:
            chunks = []
            for start in range(0, len(items), batch_size):
                prepared = self.prepare(items[start : start + batch_size])
                prepared = {k: v.to(device, non_blocking=True) for k, v in prepared.items()}
                chunks.append(fn(prepared).float().cpu())
            return torch.cat(chunks)
        finally:
            self.train(was_training)

    def usage_notes(self, role: str, source: str) -> list[str]:
        """Markdown lines the model card adds under "How to load" for this encoder, in role ``role`` of a
        model saved at ``source`` (a run folder or ``org/name``): e.g. the plugin's own loader or export
        command. Default: none."""
        return []

    def post_step(self) -> None:
        """Called by the trainer after each optimizer step (e.g. to clamp a parameter)."""


class CandidateSet(Encoder):
    """A fixed, learned set of C candidates ``[C, N]`` to score queries against: classification as contrast
    (the class vectors of a linear head, e.g. BERT's next-sentence head, are the candidates).

    A batch gives it no items (``needs_inputs`` is False). When a contrastive objective's candidate role is
    a CandidateSet, every query is scored against all of :meth:`candidates` and the positive column of row
    ``i`` is the batch label ``labels[i]``, so ``core.info-nce`` is the softmax cross-entropy over the C
    classes. :meth:`prepare` takes candidate indices (to embed chosen candidates by hand).
    """

    modality: ClassVar[str] = "candidate"
    needs_inputs: ClassVar[bool] = False

    @abc.abstractmethod
    def candidates(self) -> Tensor:
        """``[C, embed_dim]`` candidate embeddings (with gradients in training)."""

    @property
    def num_candidates(self) -> int:
        return int(self.candidates().shape[0])

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        index = torch.as_tensor(list(items), dtype=torch.long)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_candidates):
            raise IndexError(f"candidate indices must be in [0, {self.num_candidates}), got {list(items)[:8]}")
        return {"index": index}

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.candidates()[inputs["index"]]
