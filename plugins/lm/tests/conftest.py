"""Fixtures of the cl-lm tests (offline, CPU, seconds)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tiny_lm():
    """An ``lm.gpt2`` decoder with the byte tokenizer (:func:`cl_lm.testing.tiny_lm`)."""
    from cl_lm.testing import tiny_lm

    return tiny_lm()
