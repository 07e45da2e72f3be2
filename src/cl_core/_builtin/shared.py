"""``core.shared``: one encoder module under two roles."""

from __future__ import annotations

from ..components import Encoder
from .params import SharedEncoderParams


def build_shared(params: SharedEncoderParams, ctx) -> Encoder:
    """The encoder built for the earlier role ``params.role`` itself (not a copy): both roles train and save
    the same weights.

    Raises:
        ValueError: ``params.role`` is not an encoder role defined before this one.
    """
    if params.role not in ctx.encoders:
        earlier = ", ".join(ctx.encoders) or "none"
        raise ValueError(f"core.shared: role {params.role!r} is not an earlier encoder role (earlier roles: {earlier})")
    return ctx.encoders[params.role]
