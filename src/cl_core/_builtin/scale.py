"""The one temperature mechanism every built-in scorer shares: ``S = s * raw(q, k)``.

``s = exp(logit_scale)`` with ``logit_scale`` a scalar parameter (learnable or fixed), clamped to
``[log(min(1, 1/temperature)), log(max_logit_scale)]``. CLIP (Radford et al., 2021) learns it from
``log(1/0.07)``; open_clip clamps it to ``[0, ln 100]`` after every optimizer step. Here the clamp is
applied both in :meth:`ScaledScorer.post_step` (in place, so the optimizer state sees the clamped value)
and in the forward pass (so the effective scale never exceeds the maximum, even between steps).

The parameter is created in the default dtype (float32: ``float32(log(1/T))``, as it always was). A
scorer converted to another dtype while its scale still holds that initial value (``.double()`` before
training) gets ``log(1/T)`` rounded once, in the new dtype -- float64 users get the exact float64 value,
not a float32 value widened (for T from 0.01 to 0.1 that was off by up to 1.4e-8 relative in log s
and 6.4e-8 in s). A trained value is converted as is.

A parameter of shape ``[1]`` (a 0-dim array after some save/load round trips) is read as a scalar: the
scale is always a 0-dim tensor, in the direct, tiled and distributed forms alike.
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


def as_scalar(value: Tensor, name: str) -> Tensor:
    """``value`` as a 0-dim tensor: shape ``[]`` as it is, one element of any shape (``[1]``) reshaped
    (differentiably: its gradient keeps the parameter's shape).

    Raises:
        ValueError: ``value`` has more than one element (the message names ``name`` and the shape).
    """
    if value.dim() == 0:
        return value
    if value.numel() != 1:
        raise ValueError(f"{name} must hold one number (shape [] or [1]), got shape {list(value.shape)}")
    return value.reshape(())


@torch.no_grad()
def restore_exact_init(param: Tensor, old_dtype: torch.dtype, init: float) -> None:
    """After a dtype conversion of ``param`` (from ``old_dtype``): if it still holds ``init`` as rounded in
    ``old_dtype``, set it to ``init`` rounded once in its new dtype, so a float32 parameter made float64
    holds the exact float64 value. A trained value, or a conversion that kept the dtype, is left alone."""
    if param.dtype == old_dtype or not param.is_floating_point() or param.device.type == "meta":
        return
    untouched = torch.tensor(init, dtype=old_dtype).to(device=param.device, dtype=param.dtype)
    if bool((param == untouched).all()):
        param.fill_(init)


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
        self._init_log_scale = init  # exact (float64); see _apply
        self.max_log_scale = math.log(max_logit_scale)
        self.min_log_scale = min(0.0, init)

    @property
    def scale(self) -> Tensor | None:
        """Effective logit scale s, a 0-dim tensor clamped to the allowed range (also for a ``logit_scale``
        of shape ``[1]``), or None without one.

        Raises:
            ValueError: ``logit_scale`` has more than one element.
        """
        if self.logit_scale is None:
            return None
        return as_scalar(self.logit_scale, "logit_scale").clamp(self.min_log_scale, self.max_log_scale).exp()

    def _apply(self, fn, *args, **kwargs):
        """``nn.Module``'s conversion (``.to``, ``.double()``, ...), then an untouched scale is re-rounded
        from the exact initial value in its new dtype (see the module docstring)."""
        before = None if self.logit_scale is None else self.logit_scale.dtype
        out = super()._apply(fn, *args, **kwargs)
        if before is not None:
            restore_exact_init(self.logit_scale, before, self._init_log_scale)
        return out

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

    def logged_scalars(self) -> dict[str, float]:
        """``{"logit_scale": s}``: the effective scale (exp of the clamped parameter), when there is one."""
        scale = self.scale
        return {} if scale is None else {"logit_scale": float(scale.detach())}

    def extra_repr(self) -> str:
        if self.logit_scale is None:
            return "scale=None"
        return (f"scale={float(self.scale.detach()):.4g}, learn={self.logit_scale.requires_grad}, "
                f"max={math.exp(self.max_log_scale):.4g}")
