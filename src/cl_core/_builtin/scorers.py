"""Built-in scorers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..components import Scorer
from .params import CosineParams, DotParams


class CosineScorer(Scorer):
    """``S(q, k) = s * cos(q, k)``, ``s = exp(logit_scale)`` clamped to ``[1, max_logit_scale]``.

    CLIP (Radford et al., 2021) learns ``logit_scale`` from ``log(1/0.07)``; open_clip clamps it to
    ``[0, ln 100]`` after every optimizer step. Here the clamp is applied both in :meth:`post_step`
    (in place, so the optimizer state sees the clamped value) and in the forward pass (so the effective
    scale can never exceed the maximum, even between steps).
    """

    def __init__(self, temperature: float = 0.07, learn_temperature: bool = True, max_logit_scale: float = 100.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if max_logit_scale <= 0:
            raise ValueError(f"max_logit_scale must be > 0, got {max_logit_scale}")
        init = torch.tensor(math.log(1.0 / temperature))
        self.logit_scale = nn.Parameter(init, requires_grad=learn_temperature)
        self.max_log_scale = math.log(max_logit_scale)

    @property
    def scale(self) -> Tensor:
        """Effective logit scale s (a scalar tensor, <= max_logit_scale)."""
        return self.logit_scale.clamp(0.0, self.max_log_scale).exp()

    def _score(self, queries: Tensor, candidates: Tensor) -> Tensor:
        # The [Q, C] product is computed in float32 even under bf16/fp16 autocast: it costs little next
        # to the towers, and half-precision cosines times a scale of 100 would err by ~0.4 per logit.
        with torch.autocast(queries.device.type, enabled=False):
            q = F.normalize(queries.float(), dim=-1)
            k = F.normalize(candidates.float(), dim=-1)
            return self.scale.float() * (q @ k.t())

    @torch.no_grad()
    def post_step(self) -> None:
        self.logit_scale.clamp_(0.0, self.max_log_scale)


class DotScorer(Scorer):
    """``S(q, k) = q . k``."""

    def _score(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return queries @ candidates.t()


def build_cosine(params: CosineParams, ctx) -> CosineScorer:
    return CosineScorer(params.temperature, params.learn_temperature, params.max_logit_scale)


def build_dot(params: DotParams, ctx) -> DotScorer:
    return DotScorer()
