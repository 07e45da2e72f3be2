"""Reference values for the built-in scorers and losses (float64 references, cases 4, 5 and 7)."""

from __future__ import annotations

import math

import pytest
import torch

from cl_core._builtin.losses import ClipLoss, InfoNCELoss
from cl_core._builtin.scorers import CosineScorer
from cl_core.types import Targets


def _reference_clip(scores: torch.Tensor) -> torch.Tensor:
    s = scores.double()
    n = s.shape[0]
    i2t = -sum(s[i, i] - torch.logsumexp(s[i], 0) for i in range(n)) / n
    t2i = -sum(s[i, i] - torch.logsumexp(s[:, i], 0) for i in range(n)) / n
    return (i2t + t2i) / 2


def test_infonce_is_log_n_at_zero_scale():
    loss = InfoNCELoss()(torch.zeros(4, 4), Targets(positive=torch.arange(4)))
    assert loss.value.item() == pytest.approx(math.log(4))


def test_clip_loss_matches_float64_reference():
    g = torch.Generator().manual_seed(0)
    scores = 5 * torch.randn(6, 6, generator=g)
    out = ClipLoss()(scores, Targets(positive=torch.arange(6)))
    assert out.value.item() == pytest.approx(_reference_clip(scores).item(), rel=1e-6)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 1e-2), (torch.float16, 1e-2)])
def test_low_temperature_matches_reference(dtype, tol):
    """Case 4: temperature 0.01 (fp32) and 0.05 (half) agree with float64; no inf or NaN."""
    g = torch.Generator().manual_seed(1)
    # Embeddings as the towers would emit them in this precision; the reference sees the same values.
    q = torch.randn(64, 32, generator=g).to(dtype)
    k = (q.float() + 1.5 * torch.randn(64, 32, generator=g)).to(dtype)
    temperature = 0.01 if dtype is torch.float32 else 0.05
    scorer = CosineScorer(temperature=temperature, max_logit_scale=1 / temperature)
    reference = _reference_clip(scorer.to(torch.float64).score(q.double(), k.double()))
    scorer = scorer.float()
    half = dtype in (torch.bfloat16, torch.float16)
    with torch.autocast("cpu", dtype=dtype if half else torch.bfloat16, enabled=half):
        scores = scorer.score(q, k)
        value = ClipLoss()(scores, Targets(positive=torch.arange(64))).value
    assert reference.item() > 0.1  # a loss far from zero, so the relative error means something
    assert torch.isfinite(value)
    assert value.double().item() == pytest.approx(reference.item(), rel=tol)


def test_logit_scale_is_clamped_after_a_step():
    """Case 5: logit scale set to ln(1000); one optimizer step later the scale is <= the maximum."""
    scorer = CosineScorer(temperature=0.07, max_logit_scale=100)
    with torch.no_grad():
        scorer.logit_scale.fill_(math.log(1000))
    assert scorer.scale.item() == pytest.approx(100)  # clamped in the forward pass too
    opt = torch.optim.SGD(scorer.parameters(), lr=0.1)
    q = torch.randn(4, 8)
    loss = -ClipLoss()(scorer.score(q, q), Targets(positive=torch.arange(4))).value  # pushes the scale up
    loss.backward()
    opt.step()
    scorer.post_step()
    assert scorer.logit_scale.item() <= math.log(100) + 1e-6
    assert scorer.scale.item() <= 100 + 1e-4


def test_label_aware_positives_are_not_negatives():
    """Case 7: the same caption twice in a batch; with label_aware it is not its own negative."""
    scores = torch.tensor([[5.0, 4.0, 0.0], [4.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    labels = torch.tensor([7, 7, 3])
    targets = Targets(positive=torch.arange(3), labels=labels)
    aware = ClipLoss(label_aware=True)(scores, targets).value
    # Reference: drop the other duplicate from each denominator.
    expected = -(torch.log_softmax(torch.tensor([5.0, 0.0]), 0)[0] * 2 + torch.log_softmax(torch.tensor([0.0, 0.0, 5.0]), 0)[2]) / 3
    assert aware.item() == pytest.approx(expected.item(), rel=1e-6)
    plain = ClipLoss(label_aware=False)(scores, targets).value
    assert plain > aware  # the default treats the duplicate as a negative (documented)


def test_symmetric_loss_needs_square_scores():
    with pytest.raises(ValueError, match="square"):
        ClipLoss()(torch.zeros(2, 3), Targets(positive=torch.arange(2)))


def test_bad_scorer_arguments():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        CosineScorer(temperature=0)
    with pytest.raises(ValueError, match="same embedding width"):
        CosineScorer().score(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="empty"):
        CosineScorer().score(torch.randn(0, 3), torch.randn(2, 3))
