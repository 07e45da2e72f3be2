"""DeCap's memory and entity vocabulary: the projection against a hand computation, unit norm, chunked = direct,
texts packed into buffers that round-trip through safetensors, and bad memories refused with clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cl_decap import memory as mem
from cl_decap.memory import EntityVocabulary, TextMemory


def _memory(m: int = 5, n: int = 3, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [f"caption {i} é✓" for i in range(m)], torch.randn(m, n, generator=g) * 3


def test_projection_weights_and_embedding_equal_a_hand_computation():
    texts, raw = _memory()
    memory = TextMemory(texts, raw)
    v = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, 0.0]])
    rows = [[x / math.sqrt(sum(y * y for y in r)) for x in r] for r in raw.tolist()]  # M, normalised by hand
    for b, query in enumerate(v.tolist()):
        norm = math.sqrt(sum(x * x for x in query))
        q = [x / norm for x in query]
        logits = [100.0 * sum(a * c for a, c in zip(q, m)) for m in rows]  # 100 v.m = v.m / tau, tau = 1/100
        top = max(logits)
        e = [math.exp(x - top) for x in logits]
        w = [x / sum(e) for x in e]
        mixed = [sum(w[i] * rows[i][j] for i in range(len(rows))) for j in range(3)]
        length = math.sqrt(sum(x * x for x in mixed))
        torch.testing.assert_close(memory.weights(v, 0.01)[b], torch.tensor(w), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(memory.project(v, 0.01)[b], torch.tensor([x / length for x in mixed]),
                                   atol=1e-6, rtol=1e-5)
    projected = memory.project(torch.randn(7, 3), 0.01)
    torch.testing.assert_close(projected.norm(dim=-1), torch.ones(7))
    # a tiny temperature picks the nearest text; a huge one averages the memory
    nearest = memory.project(v, 1e-6)
    torch.testing.assert_close(nearest[1], memory.embeddings[(F.normalize(v, dim=-1) @ memory.embeddings.t())[1].argmax()])
    torch.testing.assert_close(memory.project(v, 1e6)[0], F.normalize(memory.embeddings.mean(0), dim=0), atol=1e-4,
                               rtol=1e-4)


def test_chunked_projection_equals_the_direct_one(monkeypatch):
    texts, raw = _memory(m=50, n=6)
    memory = TextMemory(texts, raw)
    v = torch.randn(4, 6)
    direct = memory.project(v, 0.05)
    monkeypatch.setattr(mem, "CHUNK", 7)  # 50 rows in 8 chunks, with a running log-sum-exp
    torch.testing.assert_close(memory.project(v, 0.05), direct, atol=1e-6, rtol=1e-5)


def test_texts_round_trip_through_safetensors_into_an_empty_memory(tmp_path):
    from safetensors.torch import load_file, save_file

    texts, raw = _memory()
    memory = TextMemory(texts, raw)
    assert memory.texts == texts and len(memory) == 5 and memory.width == 3
    save_file({k: v.contiguous() for k, v in memory.state_dict().items()}, str(tmp_path / "m.safetensors"))
    empty = TextMemory([], torch.zeros(0, 3))
    empty.load_state_dict(load_file(str(tmp_path / "m.safetensors")))  # takes the saved shapes
    assert empty.texts == texts
    torch.testing.assert_close(empty.embeddings, memory.embeddings)
    v = torch.randn(2, 3)
    torch.testing.assert_close(empty.project(v), memory.project(v))


def test_bad_memories_are_refused_with_clear_errors():
    texts, raw = _memory()
    memory = TextMemory(texts, raw)
    with pytest.raises(ValueError, match="DeCap's memory is empty"):
        TextMemory([], torch.zeros(0, 3)).project(torch.randn(2, 3))
    with pytest.raises(ValueError, match="holds 3-dim text embeddings, got 5-dim embeddings: they come from a model "
                                         "of another space"):
        memory.project(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"expected \[B, N\]"):
        memory.project(torch.randn(3))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        memory.project(torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match=r"5 texts need \[5, N\] embeddings"):
        TextMemory(texts, torch.randn(4, 3))
    with pytest.raises(ValueError, match="non-finite"):
        TextMemory(texts, torch.full((5, 3), float("nan")))


def test_entity_vocabulary_ranks_names_by_cosine_with_ties_to_the_earlier():
    names = ["dog", "cat", "cat again", "car"]
    table = EntityVocabulary(names, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [-1.0, 0.1]]))
    index = table.top(torch.tensor([[0.1, 1.0], [1.0, 0.0]]), 3)
    assert index.tolist() == [[1, 2, 0], [0, 1, 2]]
    assert table.top(torch.tensor([[1.0, 0.0]]), 10).shape == (1, 4)  # k beyond the vocabulary: all of it
    with pytest.raises(ValueError, match="the entity vocabulary is empty"):
        EntityVocabulary([], torch.zeros(0, 2)).top(torch.ones(1, 2), 2)
