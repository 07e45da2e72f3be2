"""The contract kit run on the core's own components (core eats its own cooking)."""

from __future__ import annotations

import numpy as np
import pytest

from cl_core._builtin.params import CosineParams, InBatchParams
from cl_core.components import DataSource
from cl_core.testing import LossContract, SamplerContract, ScorerContract


class TestCosine(ScorerContract):
    name = "core.cosine"


class TestCosineFixed(ScorerContract):
    name = "core.cosine"

    @pytest.fixture
    def params(self):
        return CosineParams(temperature=0.5, learn_temperature=False)


class TestDot(ScorerContract):
    name = "core.dot"


class TestClipLoss(LossContract):
    name = "core.clip"


class TestInfoNCE(LossContract):
    name = "core.info-nce"


class _Source(DataSource):
    fields = ("x",)

    def __init__(self, n: int):
        self.n = n
        self.labels = np.arange(n) % 5

    def __len__(self) -> int:
        return self.n

    def get(self, indices):
        return {"x": list(indices)}


class TestInBatch(SamplerContract):
    name = "core.in-batch"

    @pytest.fixture
    def params(self):
        return InBatchParams(batch_size=4)

    @pytest.fixture
    def source(self):
        return _Source(23)


class TestInBatchNoDuplicates(TestInBatch):
    @pytest.fixture
    def params(self):
        return InBatchParams(batch_size=4, no_duplicate_labels=True)

    def test_batches_hold_distinct_labels(self, component, source):
        import torch

        batches = list(component.batches(source, generator=torch.Generator().manual_seed(0)))
        assert batches
        for batch in batches:
            assert len(set(batch.labels.tolist())) == len(batch) == 4
