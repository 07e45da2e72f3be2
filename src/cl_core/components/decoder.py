"""The Decoder interface: inverts embeddings back into text, and (for trainable decoders) learns to."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import ClassVar

from torch import Tensor, nn

from ..types import EncoderOutput, LossOutput
from .checks import check_finite, check_matrix


class Decoder(nn.Module, abc.ABC):
    """Maps embeddings ``[B, N]`` to ``B`` strings (ClipCap, DeCap, CapDec, CoCa, iterative decoders).

    :meth:`decode` is the one public entry for generation. A decoder that learns (``trainable = True``)
    also implements :meth:`prepare` (caption strings to target tensors, on CPU in the data path) and
    :meth:`_caption_loss`, which the ``core.caption`` objective calls with the conditioning role's encoder
    output: the teacher-forced token cross-entropy L = -sum_j log p(c_j | condition, c_<j) of ClipCap
    (Mokady et al., 2021), DeCap (Li et al., 2023) and CoCa's captioner (Yu et al., 2022).

    Declared capabilities:

    * ``trainable``: implements :meth:`prepare` and :meth:`_caption_loss`.
    * ``reads_tokens``: conditions on the token states of its conditioning role (cross-attention, as
      CoCa); the pipeline then asks that encoder for them (its encoder must ``provide_tokens``).
    * ``reads_target_states``: continues the pass of the *target* role's encoder instead of preparing targets
      itself: the ``core.caption`` objective hands :meth:`caption_loss` that role's encoder output (token
      states, mask, and the token ids in ``extras["ids"]``) of the same forward pass that gave its embedding.
      CoCa's multimodal text layers run on top of its unimodal text tower this way (Yu et al., 2022, §3.2), so
      the caption costs no second text pass. Such a decoder names the role in :attr:`target_role`.
    """

    trainable: ClassVar[bool] = False
    reads_tokens: ClassVar[bool] = False
    reads_target_states: ClassVar[bool] = False
    #: the encoder role whose states a ``reads_target_states`` decoder continues (None for the others)
    target_role: str | None = None

    @abc.abstractmethod
    def _decode(self, embeddings: Tensor, *, max_length: int) -> list[str]: ...

    def _decode_output(self, condition: EncoderOutput, *, max_length: int) -> list[str]:
        """Generation from a whole encoder output; decoders that ``read_tokens`` override it (the default
        decodes the embedding)."""
        return self._decode(condition.embedding, max_length=max_length)

    def decode(self, embeddings: Tensor | EncoderOutput, *, max_length: int = 32) -> list[str]:
        """One string per row, each at most ``max_length`` tokens.

        Args:
            embeddings: ``[B, N]`` embeddings, or the :class:`~cl_core.types.EncoderOutput` of an encoder's
                ``encode_states`` (what a decoder that ``reads_tokens`` needs).

        Raises:
            ValueError: not a ``[B, N]`` matrix, ``max_length <= 0``, token states missing for a decoder that
                reads them, or a wrong number of strings returned. FloatingPointError: non-finite embeddings.
        """
        condition = embeddings if isinstance(embeddings, EncoderOutput) else EncoderOutput(embeddings)
        check_matrix(condition.embedding, "embeddings")
        check_finite(condition.embedding, "embeddings")
        if max_length <= 0:
            raise ValueError(f"max_length must be > 0, got {max_length}")
        if self.reads_tokens and condition.tokens is None:
            raise ValueError(f"{type(self).__qualname__} reads token states: pass an encoder's encode_states() "
                             "output (or use Pipeline.caption), not bare embeddings")
        rows = condition.embedding.shape[0]
        out = self._decode_output(condition, max_length=max_length)
        if len(out) != rows:
            raise ValueError(f"{type(self).__qualname__} returned {len(out)} strings for {rows} embeddings")
        return out

    def usage_notes(self, role: str, source: str) -> list[str]:
        """Markdown lines the model card adds under "How to load" for this decoder of a model saved at ``source``
        (as :meth:`cl_core.components.Encoder.usage_notes`). Default: none."""
        return []

    def prepare(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Caption strings -> target tensors with batch dim first (CPU, data path; no global RNG).

        Raises:
            NotImplementedError: the decoder is not trainable.
        """
        raise NotImplementedError(f"{type(self).__qualname__} is not a trainable decoder")

    def _caption_loss(self, condition: EncoderOutput, targets: Mapping[str, Tensor]) -> LossOutput:
        raise NotImplementedError(f"{type(self).__qualname__} is not a trainable decoder")

    def _caption_loss_from_states(self, condition: EncoderOutput, text: EncoderOutput) -> LossOutput:
        raise NotImplementedError(f"{type(self).__qualname__} does not read the target role's states")

    def caption_loss(self, condition: EncoderOutput, targets: Mapping[str, Tensor],
                     text: EncoderOutput | None = None) -> LossOutput:
        """The caption loss of a batch: ``condition`` is the conditioning role's encoder output (``embedding
        [B, N]``, and ``tokens [B, T, D]`` when the decoder ``reads_tokens``), ``targets`` what :meth:`prepare`
        made of the B captions; for a decoder that ``reads_target_states``, ``text`` is the target role's encoder
        output instead (``targets`` is then empty). Returns a scalar (mean over target tokens) plus named parts.

        Raises:
            ValueError: the condition and the targets (or ``text``) disagree on B, ``text`` missing for a decoder
                that reads it, or the value is not a scalar.
            FloatingPointError: the loss is not finite.
        """
        rows = condition.embedding.shape[0]
        for name, value in targets.items():
            if value.shape[0] != rows:
                raise ValueError(f"{type(self).__qualname__}: targets[{name!r}] has {value.shape[0]} rows for "
                                 f"{rows} conditioning embeddings")
        if self.reads_target_states:
            if text is None or text.tokens is None:
                raise ValueError(f"{type(self).__qualname__} continues the target role's token states: pass that "
                                 "encoder's encode_states() output as text")
            if text.embedding.shape[0] != rows:
                raise ValueError(f"{type(self).__qualname__}: {text.embedding.shape[0]} target rows for {rows} "
                                 "conditioning embeddings")
            out = self._caption_loss_from_states(condition, text)
        else:
            out = self._caption_loss(condition, targets)
        if out.value.dim() != 0:
            raise ValueError(f"{type(self).__qualname__} must return a scalar loss, got {list(out.value.shape)}")
        check_finite(out.value, "caption loss", type(self).__qualname__)
        return out
