"""Contract checks the public component methods run (shapes, dtype, finiteness)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_matrix(x: Tensor, name: str, *, width: int | None = None, producer: str = "") -> None:
    """Raise ValueError unless ``x`` is a floating ``[rows, width]`` tensor with at least one row."""
    where = f" from {producer}" if producer else ""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}{where} must be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name}{where} must have shape [batch, dim], got {list(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}{where} is empty (shape {list(x.shape)}); batches need at least one row")
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{name}{where} must have width {width}, got shape {list(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name}{where} must be floating point, got {x.dtype}")


def check_finite(x: Tensor, name: str, producer: str = "") -> None:
    if not torch.isfinite(x).all():
        where = f" from {producer}" if producer else ""
        bad = int((~torch.isfinite(x)).sum())
        raise FloatingPointError(f"{name}{where} has {bad} non-finite values (NaN or inf)")
