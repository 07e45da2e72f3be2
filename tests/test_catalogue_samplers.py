"""m-per-class and hard-negative samplers: batch composition, mining, errors; sharding of their batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl_core._builtin.class_sampler import MPerClassSampler
from cl_core._builtin.hard_negatives import HardNegativesSampler
from cl_core._builtin.losses import InfoNCELoss
from cl_core._builtin.scorers import CosineScorer
from cl_core.components import DataSource
from cl_core.distributed import shard_batch
from cl_core.errors import DataError
from cl_core.types import Targets


class Source(DataSource):
    fields = ("text", "image", "embedding")

    def __init__(self, labels, vectors=None):
        self.labels = np.asarray(labels) if labels is not None else None
        n = len(labels) if labels is not None else len(vectors)
        self.vectors = vectors if vectors is not None else np.random.default_rng(0).normal(size=(n, 3)).astype("f4")

    def __len__(self):
        return len(self.vectors)

    def get(self, indices):
        return {"text": [f"t{i}" for i in indices], "image": [f"i{i}" for i in indices],
                "embedding": [self.vectors[i] for i in indices]}


def _draw(sampler, source, seed=0):
    return list(sampler.batches(source, generator=torch.Generator().manual_seed(seed)))


# -- m per class ---------------------------------------------------------------------------------------------


def test_m_per_class_batches_hold_m_of_each_label():
    source = Source(np.arange(40) % 8)
    batches = _draw(MPerClassSampler(batch_size=12, m=3), source)
    assert len(batches) == 40 // 12
    for batch in batches:
        counts = Counter(batch.labels.tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        assert len(set(batch.indices.tolist())) == 12  # enough examples: no repeats within a label


def test_m_per_class_visits_every_example_of_a_label_before_repeating():
    source = Source([0] * 4 + [1] * 4)
    batches = _draw(MPerClassSampler(batch_size=4, m=2, batches_per_epoch=4), source)
    seen = Counter(i for b in batches for i in b.indices.tolist())
    assert set(seen.values()) == {2}  # 16 draws over 8 examples, each exactly twice


def test_m_per_class_repeats_a_small_label():
    source = Source([0, 1, 1, 1])
    (batch,) = _draw(MPerClassSampler(batch_size=4, m=2, batches_per_epoch=1), source)
    assert Counter(batch.labels.tolist()) == {0: 2, 1: 2}
    assert batch.indices.tolist().count(0) == 2


@pytest.mark.parametrize("labels,kwargs,match", [
    (None, {}, "needs labelled examples"),
    ([0, 0, 1, 1], {"batch_size": 6, "m": 2}, "needs 3 labels per batch"),
    ([0, 1, 2, 0], {"batch_size": 6, "m": 2}, "fewer than batch_size"),
])
def test_m_per_class_data_errors(labels, kwargs, match):
    source = Source(labels, None if labels is not None else np.zeros((5, 3), "f4"))
    with pytest.raises(DataError, match=match):
        MPerClassSampler(**kwargs).num_batches(source) if kwargs else MPerClassSampler(4, 2).num_batches(source)


def test_m_per_class_bad_sizes():
    with pytest.raises(ValueError, match="multiple of m"):
        MPerClassSampler(batch_size=10, m=3)


# -- hard negatives -------------------------------------------------------------------------------------------


def test_hard_negatives_are_the_most_similar_other_label_examples():
    g = np.random.default_rng(1)
    vectors = g.normal(size=(30, 4)).astype("f4")
    labels = np.arange(30) % 3
    sampler = HardNegativesSampler(batch_size=5, num_negatives=2, pool=2)
    source = Source(labels, vectors)
    batches = _draw(sampler, source)
    v = F.normalize(torch.as_tensor(vectors), dim=1)
    sims = v @ v.t()
    for batch in batches:
        rows = batch.indices.tolist()
        images = batch.inputs["embedding"]  # candidate field defaults to the last non-embedding field: image
        assert len(images) == 5 and len(batch.inputs["image"]) == 5 * 3 and len(batch.inputs["text"]) == 5
        for r, i in enumerate(rows):
            negatives = [int(x[1:]) for x in batch.inputs["image"][5 + 2 * r: 7 + 2 * r]]
            assert all(labels[n] != labels[i] and n != i for n in negatives)
            allowed = sims[i].masked_fill(torch.as_tensor(labels == labels[i]), -2).topk(2).indices.tolist()
            assert sorted(negatives) == sorted(allowed)  # pool = num_negatives: exactly the top two


def test_hard_negatives_skip_top_and_pool():
    vectors = np.array([[1, 0], [0.99, 0.1], [0.9, 0.4], [0.5, 0.8], [0, 1], [-1, 0]], "f4")
    sampler = HardNegativesSampler(batch_size=2, num_negatives=1, skip_top=1, pool=2, exclude_same_label=False)
    pools = sampler.mine(torch.as_tensor(vectors))
    assert pools[0].tolist() == [2, 3]  # 1 is skipped (most similar: a likely duplicate), then the next two


def test_hard_negatives_without_vectors_is_a_clear_error():
    class NoEmbedding(Source):
        fields = ("text", "image")

    with pytest.raises(DataError, match="sampler.mine"):
        _draw(HardNegativesSampler(batch_size=2), NoEmbedding([0, 1, 2, 3]))


def test_hard_negatives_too_few_candidates_is_a_clear_error():
    with pytest.raises(DataError, match="eligible hard negatives"):
        HardNegativesSampler(batch_size=2, num_negatives=2, pool=2).mine(torch.randn(4, 3), [0, 0, 0, 1])


def test_hard_negative_batches_feed_info_nce_and_shard_per_rank():
    source = Source(np.arange(12) % 4)
    (batch, *_) = _draw(HardNegativesSampler(batch_size=4, num_negatives=2, pool=3, candidate_field="image"), source)
    q = torch.randn(4, 5)
    k = torch.randn(len(batch.inputs["image"]), 5)
    out = InfoNCELoss(symmetric=True, label_aware=True).compute(q, k, CosineScorer(),
                                                                 Targets(positive=torch.arange(4), labels=batch.labels))
    assert torch.isfinite(out.value) and k.shape[0] == 12
    half = shard_batch(batch, rank=1, size=2)
    assert half.indices.tolist() == batch.indices.tolist()[2:]
    assert half.inputs["image"] == batch.inputs["image"][2:4] + batch.inputs["image"][4 + 4: 4 + 8]
    assert half.inputs["text"] == batch.inputs["text"][2:]


def test_hard_negatives_default_to_the_pipelines_candidate_role():
    from types import SimpleNamespace

    from cl_core._builtin.hard_negatives import build_hard_negatives
    from cl_core._builtin.params import HardNegativesParams

    spec = SimpleNamespace(encoders={"text": None, "image": None})
    assert build_hard_negatives(HardNegativesParams(), SimpleNamespace(spec=spec)).candidate_field == "image"
    assert build_hard_negatives(HardNegativesParams(candidate_field="text"),
                                SimpleNamespace(spec=spec)).candidate_field == "text"
