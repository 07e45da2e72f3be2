"""Shared fixtures of the cl-clip tests: tiny towers, offline, CPU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def images() -> list:
    """Mixed raw images: uint8 arrays of odd sizes, a grayscale array, an RGBA and a palette PIL image."""
    rng = np.random.default_rng(0)
    out: list = [rng.integers(0, 256, (40, 52, 3), dtype=np.uint8) for _ in range(3)]
    out.append(rng.integers(0, 256, (33, 33), dtype=np.uint8))
    out.append(Image.new("RGBA", (30, 20), (255, 0, 0, 128)))
    out.append(Image.new("P", (16, 16)))
    return out


@pytest.fixture
def captions() -> list[str]:
    return ["a dog", "A red heart", "face with tears of joy", "a very long caption " * 20, ""]
