"""Texts stored as tensors in model.safetensors (cl_core.weights.pack_texts / unpack_texts)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from cl_core.weights import pack_texts, unpack_texts


def test_texts_round_trip_through_a_safetensors_file(tmp_path):
    texts = ["", "a", "ünïcödé ✓", "two words", "🥕"]
    data, offsets = pack_texts(texts)
    assert data.dtype == torch.uint8 and offsets.tolist() == [0, 0, 1, 16, 25, 29]  # ü ï ö é: 2 bytes, ✓: 3, 🥕: 4
    save_file({"text": data, "offsets": offsets}, str(tmp_path / "t.safetensors"))
    loaded = load_file(str(tmp_path / "t.safetensors"))
    assert unpack_texts(loaded["text"], loaded["offsets"]) == texts
    assert unpack_texts(*pack_texts([])) == []


def test_damaged_texts_are_refused():
    data, _ = pack_texts(["abc"])
    with pytest.raises(ValueError, match="offsets do not fit"):
        unpack_texts(data, torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="offsets do not fit"):
        unpack_texts(data, torch.tensor([0, 2, 1, 3]))
    with pytest.raises(ValueError, match="not UTF-8"):
        unpack_texts(torch.tensor([0xFF, 0xFE], dtype=torch.uint8), torch.tensor([0, 2]))
