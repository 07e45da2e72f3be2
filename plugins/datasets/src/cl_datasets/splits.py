"""Seeded, order-independent selection of held-out groups (concepts, labels or images).

Each key is ranked by a keyed hash of ``(purpose, seed, key)`` (BLAKE2b), so the result depends only on
the seed and the set of keys: not on file order, on the Python/numpy version, or on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def seeded_order(keys: Iterable[str], seed: int, purpose: str) -> list[str]:
    """``keys`` (distinct strings) in a pseudo-random order fixed by ``seed`` and ``purpose``."""

    def rank(key: str) -> bytes:
        return hashlib.blake2b(f"{purpose}\0{seed}\0{key}".encode(), digest_size=16).digest()

    return sorted(keys, key=lambda k: (rank(k), k))


def holdout_count(n: int, fraction: float) -> int:
    """How many of ``n`` groups to hold out: ``round(fraction * n)``, but at least 1 when ``fraction > 0``
    and ``n >= 2``, and always leaving at least one group for training."""
    if fraction <= 0 or n < 2:
        return 0
    return min(max(1, round(fraction * n)), n - 1)


def choose_holdout(keys: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The held-out subset of ``keys``: the first :func:`holdout_count` keys of :func:`seeded_order`.

    Raises:
        ValueError: ``keys`` has duplicates or ``fraction`` is outside [0, 1).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    if len(set(keys)) != len(keys):
        raise ValueError("keys must be distinct")
    k = holdout_count(len(keys), fraction)
    return set(seeded_order(keys, seed, "holdout")[:k])
