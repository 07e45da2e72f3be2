"""Cases 1-5 and 7 of the field cases (``shared/cases/README.md``), each against a float64 reference.
Case 6 (distributed) is ``test_catalogue_distributed.py``."""

from __future__ import annotations

import math

import pytest
import torch

from cl_core._builtin.losses import ClipLoss, InfoNCELoss
from cl_core._builtin.margin import ContrastiveHingeLoss, ContrastiveLoss, TripletLoss
from cl_core._builtin.memory_queue import MemoryQueueLoss
from cl_core._builtin.scorers import BilinearScorer, CosineScorer, DotScorer, NegL1Scorer, NegL2Scorer, NegSqL2Scorer
from cl_core._builtin.siglip import SigLIPLoss
from cl_core._builtin.supcon import SupConLoss
from cl_core.types import Targets


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


# -- case 1 -----------------------------------------------------------------------------------------------


def _supcon_single_reference(s: torch.Tensor, labels: list[int], form: str) -> float:
    """Khosla et al. with one view: A(i) = all but i, P(i) = same label in A(i); anchors without P dropped."""
    values = []
    n = len(labels)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        pos = [j for j in others if labels[j] == labels[i]]
        if not pos:
            continue
        lse = _lse([float(s[i, a]) for a in others])
        if form == "out":
            values.append(-sum(float(s[i, p]) - lse for p in pos) / len(pos))
        else:
            values.append(-math.log(sum(math.exp(float(s[i, p]) - lse) for p in pos) / len(pos)))
    return sum(values) / len(values)


@pytest.mark.parametrize("form", ["out", "in"])
def test_case1_supcon_anchor_without_positive_is_left_out(form):
    """Labels 0,1,1,3, one view each: finite; anchors 0 and 3 (no positive) are not in the mean."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, generator=g, dtype=torch.float64, requires_grad=True)
    scorer = CosineScorer(temperature=0.1, learn_temperature=False).double()
    labels = [0, 1, 1, 3]
    targets = Targets(positive=torch.arange(4), labels=torch.tensor(labels))
    loss = SupConLoss(form=form, views="single")
    out = loss.compute(x, x, scorer, targets)
    expected = _supcon_single_reference(scorer.score(x, x).detach(), labels, form)
    assert out.value.item() == pytest.approx(expected, rel=1e-12)
    assert out.parts["anchors"].item() == 2
    out.value.backward()
    assert torch.isfinite(x.grad).all()
    # the same through the score-matrix path
    assert loss(scorer.score(x, x), targets).value.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("form", ["out", "in"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_case1_supcon_no_anchor_with_a_positive_is_a_documented_zero(form, dtype):
    """All labels distinct, one view: exactly 0 with zero (finite) gradients, never NaN."""
    x = torch.randn(4, 8, dtype=dtype, requires_grad=True)
    scorer = CosineScorer(temperature=0.05, learn_temperature=True).to(dtype)
    out = SupConLoss(form=form, views="single").compute(x, x, scorer, Targets(positive=torch.arange(4),
                                                                               labels=torch.arange(4)))
    assert out.value.item() == 0.0
    out.value.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert scorer.logit_scale.grad is not None and scorer.logit_scale.grad.item() == 0.0


def test_case1_supcon_batch_of_one_is_zero_not_nan():
    x = torch.randn(1, 4, requires_grad=True)
    out = SupConLoss(views="single").compute(x, x, DotScorer(), Targets(positive=torch.arange(1),
                                                                        labels=torch.zeros(1, dtype=torch.long)))
    out.value.backward()
    assert out.value.item() == 0.0 and torch.isfinite(x.grad).all()


# -- case 2 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scorer", [NegL2Scorer(), NegL1Scorer(), NegSqL2Scorer(),
                                    NegL2Scorer(temperature=0.5, learn_temperature=True)])
def test_case2_distance_scorers_at_zero_distance(scorer):
    """A query identical to its key: finite gradients equal to the float64 analytic ones."""
    g = torch.Generator().manual_seed(2)
    base = torch.randn(3, 5, generator=g, dtype=torch.float64)
    q = base.clone().requires_grad_()
    k = base.clone().requires_grad_()  # q_i == k_i: distance 0 on the diagonal
    scorer = scorer.double()
    scorer.score(q, k).sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    # analytic: d/dq_i sum_j -s * f(q_i - k_j); at zero distance the (sub)gradient is 0
    s = 1.0 if scorer.scale is None else float(scorer.scale.detach())
    expected = torch.zeros_like(base)
    for i in range(3):
        for j in range(3):
            diff = base[i] - base[j]
            if isinstance(scorer, NegL2Scorer):
                norm = diff.norm()
                expected[i] -= s * (diff / norm if norm > 0 else torch.zeros_like(diff))
            elif isinstance(scorer, NegL1Scorer):
                expected[i] -= s * torch.sign(diff)
            else:
                expected[i] -= s * 2 * diff
    torch.testing.assert_close(q.grad, expected, rtol=1e-9, atol=1e-9)
    # with q == k, the derivative (odd in q - k) makes d/dk_j equal d/dq_j
    torch.testing.assert_close(k.grad, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("loss", [TripletLoss(margin=0.5), ContrastiveLoss(), ContrastiveHingeLoss(0.1, 1.0)])
def test_case2_margin_losses_with_identical_pairs(loss):
    """Through a loss: positives at distance 0 (float32) give finite gradients."""
    q = torch.randn(6, 4, requires_grad=True)
    out = loss.compute(q, q, NegL2Scorer(), Targets(positive=torch.arange(6)))
    out.value.backward()
    assert torch.isfinite(out.value) and torch.isfinite(q.grad).all()


# -- case 3 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [TripletLoss(mining="all", views="single"), TripletLoss(mining="hard", views="single"),
                                  TripletLoss(mining="semi-hard", views="single"),
                                  ContrastiveLoss(views="single"), ContrastiveHingeLoss(views="single"),
                                  SupConLoss(views="single")], ids=lambda x: f"{type(x).__name__}")
def test_case3_no_positive_pair_gives_zero_and_zero_gradients(loss):
    """All labels distinct (one view): no valid triplet or positive pair -> loss 0, zero gradients, no 0/0."""
    x = torch.randn(5, 4, requires_grad=True)
    scorer = NegL2Scorer(temperature=0.5, learn_temperature=True)
    out = loss.compute(x, x, scorer, Targets(positive=torch.arange(5), labels=torch.arange(5)))
    assert out.value.item() == 0.0
    out.value.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert scorer.logit_scale.grad.item() == 0.0


def test_case3_triplet_with_one_positive_pair_only_uses_it():
    """Labels 0,0,1,2 one view: the only anchors with positives are 0 and 1 (float64 reference)."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], dtype=torch.float64)
    loss = TripletLoss(margin=5.0, mining="all", views="single")
    value = loss.compute(x, x, NegL2Scorer().double(), Targets(positive=torch.arange(4),
                                                                 labels=torch.tensor([0, 0, 1, 2]))).value
    d = torch.cdist(x, x)
    expected = [d[0, 1] - d[0, n] + 5 for n in (2, 3)] + [d[1, 0] - d[1, n] + 5 for n in (2, 3)]
    expected = [float(v) for v in expected if v > 0]
    assert value.item() == pytest.approx(sum(expected) / len(expected), rel=1e-12)


# -- case 4 -----------------------------------------------------------------------------------------------


def _infonce_reference(s: torch.Tensor, symmetric: bool) -> float:
    s = s.double()
    n = s.shape[0]
    rows = sum(_lse(s[i].tolist()) - float(s[i, i]) for i in range(n)) / n
    if not symmetric:
        return rows
    cols = sum(_lse(s[:, i].tolist()) - float(s[i, i]) for i in range(n)) / n
    return (rows + cols) / 2


LOW_T_LOSSES = {
    "info-nce": (lambda: InfoNCELoss(), False),
    "info-nce-tiled": (lambda: InfoNCELoss(implementation="tiled", tile_mb=0.01), False),
    "clip-tiled": (lambda: ClipLoss(implementation="tiled", tile_mb=0.01), True),
    "clip": (lambda: ClipLoss(), True),
    "supcon-pair-out": (lambda: SupConLoss(views="pair"), False),
    "supcon-pair-in": (lambda: SupConLoss(form="in", views="pair"), False),
    "memory-queue": (lambda: MemoryQueueLoss(size=8, dim=32), False),
}


@pytest.mark.parametrize("name", list(LOW_T_LOSSES))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 1e-2), (torch.float16, 1e-2)])
def test_case4_low_temperature_matches_float64(name, dtype, tol):
    """Temperature 0.01 (fp32) / 0.05 (fp16, bf16 autocast) against float64; no inf or NaN.

    Without labels, supcon over pairs and an empty queue reduce to InfoNCE, so one reference serves all.
    """
    make, symmetric = LOW_T_LOSSES[name]
    g = torch.Generator().manual_seed(1)
    q = torch.randn(64, 32, generator=g).to(dtype)
    k = (q.float() + 1.5 * torch.randn(64, 32, generator=g)).to(dtype)
    temperature = 0.01 if dtype is torch.float32 else 0.05
    scorer = CosineScorer(temperature=temperature, max_logit_scale=1 / temperature)
    reference = _infonce_reference(scorer.double().score(q.double(), k.double()).detach(), symmetric)
    scorer = scorer.float()
    half = dtype is not torch.float32
    with torch.autocast("cpu", dtype=dtype if half else torch.bfloat16, enabled=half):
        value = make().compute(q, k, scorer, Targets(positive=torch.arange(64))).value
    assert reference > 0.1 and torch.isfinite(value)
    assert value.double().item() == pytest.approx(reference, rel=tol)


def test_case4_supcon_in_form_survives_fp16_range():
    """L_in at temperature 0.05 under fp16: solo-learn's raw exp(sim / tau) overflows (exp(20) > 65504);
    the log-sum-exp form stays finite and matches float64."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(16, 8, generator=g)
    labels = torch.arange(16) // 4
    scorer = CosineScorer(temperature=0.05, max_logit_scale=20.0)
    targets = Targets(positive=torch.arange(16), labels=labels)
    s64 = scorer.double().score(x.double(), x.double()).detach()
    reference = SupConLoss(form="in", views="single")(s64, targets).value.item()
    with torch.autocast("cpu", dtype=torch.float16):
        value = SupConLoss(form="in", views="single").compute(x.half(), x.half(), scorer.float(), targets).value
    assert torch.isfinite(value) and value.item() == pytest.approx(reference, rel=1e-2)


# -- case 5 -----------------------------------------------------------------------------------------------


SCALED = {
    "cosine": lambda: CosineScorer(),
    "dot": lambda: DotScorer(temperature=0.07, learn_temperature=True),
    "neg-l1": lambda: NegL1Scorer(temperature=0.07, learn_temperature=True),
    "neg-l2": lambda: NegL2Scorer(temperature=0.07, learn_temperature=True),
    "neg-sq-l2": lambda: NegSqL2Scorer(temperature=0.07, learn_temperature=True),
    "bilinear": lambda: BilinearScorer(8, rank=2, temperature=0.07, learn_temperature=True),
}


@pytest.mark.parametrize("name", list(SCALED))
def test_case5_learnable_scale_is_clamped_after_a_step(name):
    """logit_scale set to ln(1000); one optimizer step later the effective scale is <= 100 (the default max)."""
    scorer = SCALED[name]()
    with torch.no_grad():
        scorer.logit_scale.fill_(math.log(1000))
    assert scorer.scale.item() == pytest.approx(100)  # clamped in the forward pass too
    optimizer = torch.optim.SGD(scorer.parameters(), lr=0.1)
    q = torch.randn(4, 8)
    (-ClipLoss()(scorer.score(q, q + 0.1), Targets(positive=torch.arange(4))).value).backward()  # pushes s up
    optimizer.step()
    scorer.post_step()
    assert scorer.logit_scale.item() <= math.log(100) + 1e-6
    assert scorer.scale.item() <= 100 + 1e-4


# -- case 7 -----------------------------------------------------------------------------------------------


def _duplicate_batch():
    """Items 0 and 1 are the same caption (label 7); item 2 differs."""
    scores = torch.tensor([[5.0, 4.0, 0.0], [4.0, 5.0, 0.0], [0.0, 1.0, 5.0]], dtype=torch.float64)
    return scores, Targets(positive=torch.arange(3), labels=torch.tensor([7, 7, 3]))


@pytest.mark.parametrize("loss_cls", [InfoNCELoss, ClipLoss])
def test_case7_duplicates_are_not_negatives_when_label_aware(loss_cls):
    scores, targets = _duplicate_batch()
    s = scores.tolist()
    rows = [_lse([s[0][0], s[0][2]]) - s[0][0], _lse([s[1][1], s[1][2]]) - s[1][1], _lse(s[2]) - s[2][2]]
    cols = [_lse([s[0][0], s[2][0]]) - s[0][0], _lse([s[1][1], s[2][1]]) - s[1][1],
            _lse([s[0][2], s[1][2], s[2][2]]) - s[2][2]]
    expected = sum(rows) / 3 if loss_cls is InfoNCELoss else (sum(rows) + sum(cols)) / 6
    aware = loss_cls(label_aware=True)(scores, targets).value
    assert aware.item() == pytest.approx(expected, rel=1e-12)
    assert loss_cls()(scores, targets).value > aware  # the documented default: duplicates are negatives


def test_case7_label_aware_tiled_matches_direct():
    g = torch.Generator().manual_seed(7)
    q, k = torch.randn(20, 6, generator=g, dtype=torch.float64), torch.randn(20, 6, generator=g, dtype=torch.float64)
    targets = Targets(positive=torch.arange(20), labels=torch.randint(0, 4, (20,), generator=g))
    scorer = CosineScorer(0.1).double()
    direct = ClipLoss(label_aware=True).compute(q, k, scorer, targets).value
    tiled = ClipLoss(label_aware=True, implementation="tiled", tile_mb=1e-3).compute(q, k, scorer, targets).value
    assert tiled.item() == pytest.approx(direct.item(), rel=1e-12)


def test_case7_siglip_duplicates_are_positives_when_label_aware():
    scores, targets = _duplicate_batch()
    b = -2.0
    z = [[1, 1, -1], [1, 1, -1], [-1, -1, 1]]
    expected = sum(math.log1p(math.exp(-z[i][j] * (scores[i, j].item() + b))) for i in range(3) for j in range(3)) / 3
    loss = SigLIPLoss(bias_init=b, label_aware=True).double()
    assert loss(scores, targets).value.item() == pytest.approx(expected, rel=1e-12)
    assert SigLIPLoss(bias_init=b).double()(scores, targets).value.item() != pytest.approx(expected)


def test_case7_supcon_duplicates_are_positives():
    scores, targets = _duplicate_batch()
    s = scores.tolist()
    # views="pair": row 0 has positives {0, 1}; L_out = lse(row) - mean of the positive scores
    expected = ((_lse(s[0]) - (s[0][0] + s[0][1]) / 2) + (_lse(s[1]) - (s[1][0] + s[1][1]) / 2)
                + (_lse(s[2]) - s[2][2])) / 3
    assert SupConLoss(views="pair")(scores, targets).value.item() == pytest.approx(expected, rel=1e-12)


def test_case7_memory_queue_same_label_entries_are_not_negatives():
    loss = MemoryQueueLoss(size=4, dim=2, label_aware=True).double()
    loss.enqueue(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64), torch.tensor([7, 3]))
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    k = torch.tensor([[1.0, 0.1], [0.1, 1.0]], dtype=torch.float64)
    scorer = DotScorer().double()
    out = loss.compute(q, k, scorer, Targets(positive=torch.arange(2), labels=torch.tensor([7, 5])))
    s = (q @ k.t()).tolist()
    qs = (q @ torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64).t()).tolist()
    # row 0 (label 7): queue entry 0 has label 7 -> dropped; row 1 (label 5): both queue entries count
    expected = ((_lse([s[0][0], s[0][1], qs[0][1]]) - s[0][0]) + (_lse(s[1] + qs[1]) - s[1][1])) / 2
    assert out.value.item() == pytest.approx(expected, rel=1e-12)
