"""The contract kit on every catalogue component, each loss and scorer against a float64 reference written
independently (loops over pairs and triplets, the papers' formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cl_core._builtin import params as p
from cl_core.components import DataSource
from cl_core.testing import LossContract, SamplerContract, ScorerContract
from cl_core.types import Targets

# -- float64 references -----------------------------------------------------------------------------------


def _lse(values) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def ref_info_nce(s, positive, labels=None) -> float:
    """-1/Q sum_i log softmax over the row, same-label columns (not the positive) dropped when labels."""
    total = 0.0
    for i in range(s.shape[0]):
        cols = [j for j in range(s.shape[1])
                if labels is None or j == positive[i] or j >= len(labels) or labels[j] != labels[i]]
        total += _lse([float(s[i, j]) for j in cols]) - float(s[i, positive[i]])
    return total / s.shape[0]


def ref_groups(s, positive, labels, views):
    """Per row: (valid columns, positive columns) by the definitions of cl_core._builtin.problems."""
    out = []
    for i in range(s.shape[0]):
        valid = [j for j in range(s.shape[1]) if views == "pair" or j != i]
        pos = [j for j in valid if j == positive[i] or (labels is not None and j < len(labels)
                                                        and labels[j] == labels[i])]
        out.append((valid, pos))
    return out


def ref_supcon(s, positive, labels=None, form="out", views="pair") -> float:
    values = []
    for i, (valid, pos) in enumerate(ref_groups(s, positive, labels, views)):
        if not pos:
            continue
        lse = _lse([float(s[i, a]) for a in valid])
        if form == "out":
            values.append(-sum(float(s[i, q]) - lse for q in pos) / len(pos))
        else:
            values.append(-math.log(sum(math.exp(float(s[i, q]) - lse) for q in pos) / len(pos)))
    return sum(values) / len(values) if values else 0.0


def ref_siglip(s, positive, bias, labels=None) -> float:
    total = 0.0
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            z = 1.0 if (j == positive[i] or (labels is not None and labels[i] == labels[j])) else -1.0
            total += math.log1p(math.exp(-z * (float(s[i, j]) + bias)))
    return total / s.shape[0]


def ref_pair_loss(d, positive, f_pos, f_neg, labels=None, views="pair") -> float:
    values = []
    for i, (valid, pos) in enumerate(ref_groups(d, positive, labels, views)):
        if not pos:
            continue
        neg = [j for j in valid if j not in pos]
        term = sum(f_pos(float(d[i, j])) for j in pos) / len(pos)
        term += sum(f_neg(float(d[i, j])) for j in neg) / len(neg) if neg else 0.0
        values.append(term)
    return sum(values) / len(values) if values else 0.0


def ref_triplet(d, positive, margin, mining, labels=None, views="pair") -> float:
    losses, count = 0.0, 0
    for i, (valid, pos) in enumerate(ref_groups(d, positive, labels, views)):
        neg = [j for j in valid if j not in pos]
        if not pos or not neg:
            continue
        row = [float(v) for v in d[i]]
        if mining == "all":
            for a in pos:
                for n in neg:
                    loss = max(0.0, row[a] - row[n] + margin)
                    if loss > 0:
                        losses, count = losses + loss, count + 1
        elif mining == "hard":
            losses += max(0.0, max(row[a] for a in pos) - min(row[n] for n in neg) + margin)
            count += 1
        else:
            for a in pos:
                farther = [row[n] for n in neg if row[n] > row[a]]
                chosen = min(farther) if farther else max(row[n] for n in neg)
                losses += max(0.0, row[a] - chosen + margin)
                count += 1
    return losses / count if count else 0.0


def ref_binary(s, positive, shift) -> float:
    """NCE (shift = log(k p_noise)) / negative sampling (shift = 0) over rows."""
    total = 0.0
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            x = float(s[i, j]) - float(shift[i, j])
            total += math.log1p(math.exp(-x)) if j == positive[i] else math.log1p(math.exp(x))
    return total / s.shape[0]


def _np(x):
    return x.detach().double().numpy()


# -- scorers ----------------------------------------------------------------------------------------------


def _pairs(q, k, f):
    return torch.tensor([[f(q[i], k[j]) for j in range(k.shape[0])] for i in range(q.shape[0])], dtype=torch.float64)


class TestCosine(ScorerContract):
    name = "core.cosine"

    def reference(self, component, q, k):
        return (1 / 0.07) * _pairs(q, k, lambda a, b: float(a @ b) / float(a.norm() * b.norm()))


class TestDot(ScorerContract):
    name = "core.dot"

    def reference(self, component, q, k):
        return _pairs(q, k, lambda a, b: float(a @ b))


class TestDotWithTemperature(ScorerContract):
    name = "core.dot"

    @pytest.fixture
    def params(self):
        return p.DotParams(temperature=0.5, learn_temperature=True)

    def reference(self, component, q, k):
        return 2.0 * _pairs(q, k, lambda a, b: float(a @ b))


class TestNegL1(ScorerContract):
    name = "core.neg-l1"

    def reference(self, component, q, k):
        return _pairs(q, k, lambda a, b: -float((a - b).abs().sum()))


class TestNegL2(ScorerContract):
    name = "core.neg-l2"

    def reference(self, component, q, k):
        return _pairs(q, k, lambda a, b: -math.sqrt(float(((a - b) ** 2).sum())))


class TestNegL2Learnable(ScorerContract):
    name = "core.neg-l2"

    @pytest.fixture
    def params(self):
        return p.NegL2Params(temperature=2.0, learn_temperature=True)

    def reference(self, component, q, k):
        return 0.5 * _pairs(q, k, lambda a, b: -math.sqrt(float(((a - b) ** 2).sum())))


class TestNegSqL2(ScorerContract):
    name = "core.neg-sq-l2"

    def reference(self, component, q, k):
        return _pairs(q, k, lambda a, b: -float(((a - b) ** 2).sum()))


class TestBilinear(ScorerContract):
    name = "core.bilinear"

    @pytest.fixture
    def params(self):
        return p.BilinearParams(dim=self.dim)

    def reference(self, component, q, k):
        a = component.weight.detach().double()
        return _pairs(q, k, lambda x, y: float(x @ a @ y))


class TestBilinearLowRank(ScorerContract):
    name = "core.bilinear"

    @pytest.fixture
    def params(self):
        return p.BilinearParams(dim=self.dim, rank=3, temperature=0.1, learn_temperature=True)

    def reference(self, component, q, k):
        a = component.u.detach().double() @ component.v.detach().double().t()
        return 10.0 * _pairs(q, k, lambda x, y: float(x @ a @ y))


# -- losses -----------------------------------------------------------------------------------------------


def _labels(batch):
    return torch.arange(batch) // 2  # pairs of duplicates: 0 0 1 1 2 2 ...


class TestClip(LossContract):
    name = "core.clip"

    def reference(self, scores, targets):
        pos = targets.positive.tolist()
        back = torch.argsort(targets.positive).tolist()
        return (ref_info_nce(_np(scores), pos) + ref_info_nce(_np(scores.t()), back)) / 2


class TestClipLabelAware(TestClip):
    @pytest.fixture
    def params(self):
        return p.ClipLossParams(label_aware=True)

    def _targets(self):
        return Targets(positive=torch.arange(self.batch), labels=_labels(self.batch))

    def reference(self, scores, targets):
        labels = targets.labels.tolist()
        pos, back = targets.positive.tolist(), torch.argsort(targets.positive).tolist()
        return (ref_info_nce(_np(scores), pos, labels) + ref_info_nce(_np(scores.t()), back, labels)) / 2


class TestInfoNCE(LossContract):
    name = "core.info-nce"

    def reference(self, scores, targets):
        return ref_info_nce(_np(scores), targets.positive.tolist())


class TestInfoNCESymmetricLabelAware(TestClipLabelAware):
    name = "core.info-nce"

    @pytest.fixture
    def params(self):
        return p.InfoNCEParams(symmetric=True, label_aware=True)


class TestSigLIP(LossContract):
    name = "core.siglip"

    def reference(self, scores, targets):
        return ref_siglip(_np(scores), targets.positive.tolist(), -10.0)


class TestSigLIPLabelAware(LossContract):
    name = "core.siglip"

    @pytest.fixture
    def params(self):
        return p.SigLIPParams(bias_init=-5.0, label_aware=True)

    def _targets(self):
        return Targets(positive=torch.arange(self.batch), labels=_labels(self.batch))

    def reference(self, scores, targets):
        return ref_siglip(_np(scores), targets.positive.tolist(), -5.0, targets.labels.tolist())


class TestSupConOut(LossContract):
    name = "core.supcon"

    @pytest.fixture
    def params(self):
        return p.SupConParams(form="out", views="pair")

    def _targets(self):
        return Targets(positive=torch.arange(self.batch), labels=_labels(self.batch))

    def reference(self, scores, targets):
        return ref_supcon(_np(scores), targets.positive.tolist(), targets.labels.tolist(), "out", "pair")


class TestSupConIn(TestSupConOut):
    @pytest.fixture
    def params(self):
        return p.SupConParams(form="in", views="pair")

    def reference(self, scores, targets):
        return ref_supcon(_np(scores), targets.positive.tolist(), targets.labels.tolist(), "in", "pair")


class _Distance(LossContract):
    """Distance losses see minus Euclidean distances (the core.neg-l2 scorer)."""

    def score_pairs(self, queries, candidates):
        return -torch.cdist(queries, candidates)


class TestContrastive(_Distance):
    name = "core.contrastive"

    def reference(self, scores, targets):
        return ref_pair_loss(-_np(scores), targets.positive.tolist(), lambda d: 0.5 * d * d,
                             lambda d: 0.5 * max(0.0, 1.0 - d) ** 2)


class TestContrastiveHinge(_Distance):
    name = "core.contrastive-hinge"

    @pytest.fixture
    def params(self):
        return p.ContrastiveHingeParams(pos_margin=0.1, neg_margin=1.2)

    def _targets(self):
        return Targets(positive=torch.arange(self.batch), labels=_labels(self.batch))

    def reference(self, scores, targets):
        return ref_pair_loss(-_np(scores), targets.positive.tolist(), lambda d: max(0.0, d - 0.1),
                             lambda d: max(0.0, 1.2 - d), targets.labels.tolist())


@pytest.mark.parametrize("mining", ["all", "hard", "semi-hard"])
class TestTriplet(_Distance):
    name = "core.triplet"

    @pytest.fixture
    def params(self, mining):
        return p.TripletParams(margin=0.5, mining=mining)

    @pytest.fixture(autouse=True)
    def _mining(self, mining):
        self.mining = mining

    def _targets(self):
        return Targets(positive=torch.arange(self.batch), labels=_labels(self.batch))

    def reference(self, scores, targets):
        return ref_triplet(-_np(scores), targets.positive.tolist(), 0.5, self.mining, targets.labels.tolist())


class TestNCE(LossContract):
    name = "core.nce"

    def reference(self, scores, targets):
        c = scores.shape[1]
        shift = np.full(scores.shape, math.log((c - 1) / c))  # log(k * p_noise), uniform noise, k = C - 1
        return ref_binary(_np(scores), targets.positive.tolist(), shift)


class TestNegativeSampling(LossContract):
    name = "core.negative-sampling"

    def reference(self, scores, targets):
        return ref_binary(_np(scores), targets.positive.tolist(), np.zeros(scores.shape))


class TestMemoryQueue(LossContract):
    name = "core.memory-queue"

    @pytest.fixture
    def params(self):
        return p.MemoryQueueParams(size=32, dim=self.dim)

    def reference(self, scores, targets):
        return ref_info_nce(_np(scores), targets.positive.tolist())


# -- samplers ---------------------------------------------------------------------------------------------


class _Source(DataSource):
    fields = ("x", "y", "embedding")

    def __init__(self, n: int, classes: int = 5):
        self.n = n
        self.labels = np.arange(n) % classes
        self.vectors = np.random.default_rng(0).normal(size=(n, 4)).astype("float32")

    def __len__(self) -> int:
        return self.n

    def get(self, indices):
        return {"x": list(indices), "y": [f"y{i}" for i in indices], "embedding": [self.vectors[i] for i in indices]}


class TestMPerClass(SamplerContract):
    name = "core.m-per-class"

    @pytest.fixture
    def params(self):
        return p.MPerClassParams(batch_size=6, m=2)

    @pytest.fixture
    def source(self):
        return _Source(31)


class TestHardNegatives(SamplerContract):
    name = "core.hard-negatives"

    @pytest.fixture
    def params(self):
        return p.HardNegativesParams(batch_size=4, num_negatives=2, pool=3)

    @pytest.fixture
    def source(self):
        return _Source(23)
