"""The catalogue against pytorch-metric-learning's definitions (PML is not installed here): each PML loss,
reducer and miner is written out below from its definition in float64, and the ``core.*`` losses equal the
PML setup their docstrings name -- and differ from PML's defaults where the docstrings say so."""

from __future__ import annotations

import math

import pytest
import torch

from cl_core._builtin.margin import ContrastiveHingeLoss, TripletLoss
from cl_core._builtin.scorers import CosineScorer, NegL2Scorer
from cl_core._builtin.supcon import SupConLoss
from cl_core.plugins import PluginHost
from cl_core.standalone import build
from cl_core.types import Targets


@pytest.fixture(scope="module")
def registry():
    return PluginHost(only=["core"]).registry()


def _cos(x, y) -> float:
    return sum(a * b for a, b in zip(x, y)) / math.sqrt(sum(a * a for a in x) * sum(b * b for b in y))


def pml_nt_xent(embeddings, labels, temperature) -> float:
    """PML ``NTXentLoss(temperature)`` with its defaults (``CosineSimilarity``, ``MeanReducer``): for every
    positive pair (a, p), a != p with one label, ``-log(e^{s_ap/t} / (e^{s_ap/t} + sum_n e^{s_an/t}) + tiny)``
    over the negatives n (other labels) of a; the mean over positive pairs."""
    e = embeddings.tolist()
    losses = []
    for a in range(len(e)):
        for p in range(len(e)):
            if p == a or labels[p] != labels[a]:
                continue
            pos = math.exp(_cos(e[a], e[p]) / temperature)
            neg = sum(math.exp(_cos(e[a], e[n]) / temperature) for n in range(len(e)) if labels[n] != labels[a])
            losses.append(-math.log(pos / (pos + neg) + torch.finfo(torch.float64).tiny))
    return sum(losses) / len(losses)


def test_nt_xent_hand_case():
    """B = 2 pairs in 2-d, temperature 1: views at angles 0 and 90 deg (item 0), 180 and 270 deg (item 1)."""
    z1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    z2 = torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    # view 0 (1,0): other view cos 0, negatives (-1,0): cos -1 and (0,-1): cos 0 -> -log(1 / (1 + e^-1 + 1))
    # every view sees the same three cosines {0 (positive), -1, 0}
    expected = math.log(2 + math.exp(-1))
    loss = SupConLoss("out", "joint", label_aware=False)
    scorer = CosineScorer(1.0, learn_temperature=False).double()
    value = loss.compute(z1, z2, scorer, Targets(positive=torch.arange(2))).value.item()
    assert value == pytest.approx(expected, rel=1e-14)
    assert pml_nt_xent(torch.cat([z1, z2]), [0, 1, 0, 1], 1.0) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_core_nt_xent_equals_pml_ntxentloss_called_as_simclr(registry, temperature):
    """embeddings cat(z1, z2), labels cat(arange(B), arange(B)); class labels in the targets change nothing."""
    g = torch.Generator().manual_seed(4)
    z1 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    loss = build("loss", "core.nt-xent", registry=registry)
    scorer = build("scorer", "core.cosine", temperature=temperature, learn_temperature=False, registry=registry)
    scorer = scorer.double()
    expected = pml_nt_xent(torch.cat([z1, z2]), list(range(5)) * 2, temperature)
    value = loss.compute(z1, z2, scorer, Targets(positive=torch.arange(5))).value.item()
    assert value == pytest.approx(expected, rel=1e-12)
    labels = torch.tensor([0, 0, 1, 1, 2])
    labelled = loss.compute(z1, z2, scorer, Targets(positive=torch.arange(5), labels=labels)).value.item()
    assert labelled == pytest.approx(expected, rel=1e-12)  # SimCLR: same-label items stay negatives
    supcon = SupConLoss().compute(z1, z2, scorer, Targets(positive=torch.arange(5), labels=labels)).value.item()
    assert supcon != pytest.approx(expected, rel=1e-3)  # core.supcon does use them


def test_core_nt_xent_is_supcon_code_with_labels_off(registry):
    loss = build("loss", "core.nt-xent", registry=registry)
    assert type(loss) is SupConLoss and (loss.form, loss.views, loss.label_aware) == ("out", "joint", False)
    assert "NT-Xent" in registry.get("loss", "core.nt-xent").info.summary


# -- margin losses and reducers ------------------------------------------------------------------------------


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(12, 6, generator=g, dtype=torch.float64)
    k = q + 0.8 * torch.randn(12, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (12,), generator=g)
    return q, k, labels


def _avg_non_zero(values) -> float:
    """PML ``AvgNonZeroReducer``: mean over the entries > 0 (0 when none)."""
    active = [v for v in values if v > 0]
    return sum(active) / len(active) if active else 0.0


def _per_anchor_mean(rows) -> float:
    """PML ``PerAnchorReducer(MeanReducer())``: per anchor the mean of its pair losses (0 without pairs),
    then the mean over every anchor."""
    return sum(sum(r) / len(r) if r else 0.0 for r in rows) / len(rows)


@pytest.mark.parametrize("seed", [0, 3])
def test_contrastive_hinge_is_pml_contrastive_with_per_anchor_mean_reducer(seed):
    """Queries as embeddings, candidates as ref_emb, LpDistance without normalisation, margins 0.2 / 1.5."""
    q, k, labels = _batch(seed)
    d = torch.cdist(q, k).tolist()
    lab = labels.tolist()
    pos = [[max(0.0, d[a][j] - 0.2) for j in range(12) if lab[j] == lab[a]] for a in range(12)]
    neg = [[max(0.0, 1.5 - d[a][j]) for j in range(12) if lab[j] != lab[a]] for a in range(12)]
    per_anchor = _per_anchor_mean(pos) + _per_anchor_mean(neg)
    default = _avg_non_zero(sum(pos, [])) + _avg_non_zero(sum(neg, []))
    ours = ContrastiveHingeLoss(0.2, 1.5).compute(q, k, NegL2Scorer().double(),
                                                  Targets(positive=torch.arange(12), labels=labels)).value.item()
    assert ours == pytest.approx(per_anchor, rel=1e-12)
    assert ours != pytest.approx(default, rel=1e-3)  # PML's default reducer is another loss


@pytest.mark.parametrize("seed", [0, 3])
def test_triplet_all_and_hard_are_pml_with_the_named_reducers(seed):
    """"all" = TripletMarginLoss defaults (AvgNonZeroReducer over every triplet); "hard" = BatchHardMiner's
    triplets with MeanReducer."""
    q, k, labels = _batch(seed)
    d = torch.cdist(q, k).tolist()
    lab = labels.tolist()
    margin = 0.7
    every = [max(0.0, d[a][p] - d[a][n] + margin) for a in range(12) for p in range(12) for n in range(12)
             if lab[p] == lab[a] and lab[n] != lab[a]]
    hardest = []
    for a in range(12):
        ps = [d[a][j] for j in range(12) if lab[j] == lab[a]]
        ns = [d[a][j] for j in range(12) if lab[j] != lab[a]]
        if ps and ns:
            hardest.append(max(0.0, max(ps) - min(ns) + margin))
    targets = Targets(positive=torch.arange(12), labels=labels)
    scorer = NegL2Scorer().double()
    ours_all = TripletLoss(margin, "all").compute(q, k, scorer, targets).value.item()
    ours_hard = TripletLoss(margin, "hard").compute(q, k, scorer, targets).value.item()
    assert ours_all == pytest.approx(_avg_non_zero(every), rel=1e-12)
    assert ours_hard == pytest.approx(sum(hardest) / len(hardest), rel=1e-12)
    assert ours_all != pytest.approx(sum(every) / len(every), rel=1e-3)  # MeanReducer would halve it


def test_supcon_out_is_pml_supcon_with_its_default_reducer():
    """PML ``SupConLoss(temperature)``, ``CosineSimilarity``, ``AvgNonZeroReducer``: per anchor
    -mean_p log softmax over all but itself; anchors without a positive (loss 0) dropped. One view, labels."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(9, 4, generator=g, dtype=torch.float64)
    labels = [0, 0, 1, 2, 2, 2, 3, 4, 4]
    e = x.tolist()
    per_anchor = []
    for a in range(9):
        others = [j for j in range(9) if j != a]
        lse = math.log(sum(math.exp(_cos(e[a], e[j]) / 0.1) for j in others))
        pos = [j for j in others if labels[j] == labels[a]]
        per_anchor.append(-sum(_cos(e[a], e[p]) / 0.1 - lse for p in pos) / (len(pos) + 1e-300) if pos else 0.0)
    scorer = CosineScorer(0.1, learn_temperature=False).double()
    ours = SupConLoss("out", "single").compute(x, x, scorer, Targets(positive=torch.arange(9),
                                                                      labels=torch.tensor(labels))).value.item()
    assert ours == pytest.approx(_avg_non_zero(per_anchor), rel=1e-12)
