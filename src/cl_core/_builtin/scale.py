"""The one temperature mechanism every built-in scorer shares: ``S = s * raw(q, k)``.

``s = exp(logit_scale)`` with ``logit_scale`` a scalar parameter (learnable or fixed), clamped to
``[log(min(1, 1/temperature)), log(max_logit_scale)]``. CLIP (Radford et al., 2021) learns it from
``log(1/0.07)``; open_clip clamps it to ``[0, ln 100]`` after every optimizer step. Here the clamp is
applied both in :meth:`ScaledScorer.post_step` (in place, so the optimizer state sees the clamped value)
and in the forward pass (so the effective scale never exceeds the maximum, even between steps).
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor, nn

from ..components import Scorer


def upcast(x: Tensor) -> Tensor:
    """float16/bfloat16 -> float32; float32 and float64 are kept (float64 references stay float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class ScaledScorer(Scorer):
    """A scorer ``S(q, k) = s * raw(q, k)`` with an optional (learnable, clamped) logit scale ``s``.

    Subclasses implement :meth:`_raw` (``[Q, N] x [C, N] -> [Q, C]``). Scores are computed in float32
    (float64 inputs stay float64) with autocast disabled: the ``[Q, C]`` product is cheap next to the
    towers, and half-precision logits times a scale of 100 would err by ~0.4 each.

    Args:
        temperature: initial temperature (> 0) or None for no scale (s = 1, no parameter).
        learn_temperature: make ``logit_scale`` trainable (needs a temperature).
        max_logit_scale: upper clamp of s (> 0).

    Raises:
        ValueError: temperature <= 0, max_logit_scale <= 0, learn_temperature without a temperature, or
            1 / temperature > max_logit_scale.
    """

    def __init__(self, temperature: float | None = None, learn_temperature: bool = False,
                 max_logit_scale: float = 100.0):
        super().__init__()
        if max_logit_scale <= 0:
            raise ValueError(f"max_logit_scale must be > 0, got {max_logit_scale}")
        if temperature is None:
            if learn_temperature:
                raise ValueError("learn_temperature=True needs a temperature (the initial value)")
            self.register_parameter("logit_scale", None)
            self.min_log_scale = self.max_log_scale = 0.0
            return
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if 1.0 / temperature > max_logit_scale * (1 + 1e-9):
            raise ValueError(f"1/temperature = {1 / temperature:g} exceeds max_logit_scale = {max_logit_scale:g}")
        init = math.log(1.0 / temperature)
        self.logit_scale = nn.Parameter(torch.tensor(init), requires_grad=learn_temperature)
        self.max_log_scale = math.log(max_logit_scale)
        self.min_log_scale = min(0.0, init)

    @property
    def scale(self) -> Tensor | None:
        """Effective logit scale s (a scalar tensor clamped to the allowed range), or None without one."""
        if self.logit_scale is None:
            return None
        return self.logit_scale.clamp(self.min_log_scale, self.max_log_scale).exp()

    @abc.abstractmethod
    def _raw(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """Unscaled scores ``[Q, C]`` of (already upcast) queries ``[Q, N]`` and candidates ``[C, N]``."""

    def _score(self, queries: Tensor, candidates: Tensor) -> Tensor:
        with torch.autocast(queries.device.type, enabled=False):
            q, k = upcast(queries), upcast(candidates)
            if q.dtype != k.dtype:
                q, k = q.to(torch.promote_types(q.dtype, k.dtype)), k.to(torch.promote_types(q.dtype, k.dtype))
            raw = self._raw(q, k)
            scale = self.scale
            return raw if scale is None else scale.to(raw.dtype) * raw

    #: True when :meth:`_factorize` is implemented (scores are a scaled product of two factors).
    factorizable: bool = False

    def factorize(self, queries: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(a [Q, M], b [C, M], s)`` with ``S = s * a @ b.T`` (``s`` None for 1), in float32 or float64.

        Memory-bounded losses use it to score blocks without the whole ``[Q, C]`` matrix.

        Raises:
            NotImplementedError: the scores are not such a product (``factorizable`` is False).
        """
        if not self.factorizable:
            raise NotImplementedError(f"{type(self).__name__} scores are not a scaled product s * a @ b.T")
        with torch.autocast(queries.device.type, enabled=False):
            q, k = upcast(queries), upcast(candidates)
            if q.dtype != k.dtype:
                dtype = torch.promote_types(q.dtype, k.dtype)
                q, k = q.to(dtype), k.to(dtype)
            a, b = self._factorize(q, k)
            scale = self.scale
            return a, b, None if scale is None else scale.to(a.dtype)

    def _factorize(self, queries: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """The factors of (already upcast) inputs, for scorers with ``factorizable = True``."""
        raise NotImplementedError

    @torch.no_grad()
    def post_step(self) -> None:
        if self.logit_scale is not None:
            self.logit_scale.clamp_(self.min_log_scale, self.max_log_scale)

    def extra_repr(self) -> str:
        if self.logit_scale is None:
            return "scale=None"
        return (f"scale={float(self.scale.detach()):.4g}, learn={self.logit_scale.requires_grad}, "
                f"max={math.exp(self.max_log_scale):.4g}")
