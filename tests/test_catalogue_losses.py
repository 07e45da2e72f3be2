"""Loss details beyond the contract kit: the tiled form, hard-negative columns, NCE inputs, the memory
queue, SigLIP's bias, NT-Xent, triplet mining, and bad-input errors that name the argument."""

from __future__ import annotations

import math

import pytest
import torch

from cl_core._builtin import losses as losses_module
from cl_core._builtin import params as p
from cl_core._builtin.losses import ClipLoss, InfoNCELoss
from cl_core._builtin.margin import ContrastiveHingeLoss, ContrastiveLoss, TripletLoss
from cl_core._builtin.memory_queue import MemoryQueueLoss, build_memory_queue
from cl_core._builtin.nce import NCELoss, NegativeSamplingLoss, NoiseTargets
from cl_core._builtin.scorers import BilinearScorer, CosineScorer, DotScorer, NegL2Scorer, NegSqL2Scorer, build_bilinear
from cl_core._builtin.siglip import SigLIPLoss
from cl_core._builtin.supcon import SupConLoss
from cl_core.build import BuildContext
from cl_core.types import Targets


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


# -- tiled ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("scorer", ["cosine", "dot", "bilinear"])
def test_tiled_matches_direct_values_and_gradients(symmetric, scorer):
    """Float32, several blocks: value and every gradient within 1e-5 of the direct form."""
    g = torch.Generator().manual_seed(11)
    make = {"cosine": lambda: CosineScorer(0.05), "dot": lambda: DotScorer(0.5, learn_temperature=True),
            "bilinear": lambda: BilinearScorer(24, rank=6, temperature=0.1, learn_temperature=True)}[scorer]
    q0, k0 = torch.randn(300, 24, generator=g) * 0.3, torch.randn(300, 24, generator=g) * 0.3
    results = []
    for implementation in ("direct", "tiled"):
        torch.manual_seed(0)
        s = make()
        q, k = q0.clone().requires_grad_(), k0.clone().requires_grad_()
        loss = InfoNCELoss(symmetric=symmetric, implementation=implementation, tile_mb=0.05)  # ~40 rows a block
        out = loss.compute(q, k, s, Targets(positive=torch.arange(300)))
        out.value.backward()
        results.append([out.value, q.grad, k.grad] + [x.grad for x in s.parameters() if x.requires_grad])
    for direct, tiled in zip(*results):
        torch.testing.assert_close(tiled, direct, rtol=1e-5, atol=1e-5)


def test_tiled_never_saves_a_score_matrix():
    """The autograd graph of the tiled form holds O((Q + C) N) tensors, not the [Q, C] scores."""
    q, k = torch.randn(256, 8, requires_grad=True), torch.randn(256, 8, requires_grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ClipLoss(implementation="tiled", tile_mb=0.01).compute(q, k, CosineScorer(), Targets(positive=torch.arange(256)))
    assert max(sizes) <= 256 * 8
    sizes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ClipLoss(implementation="direct").compute(q, k, CosineScorer(), Targets(positive=torch.arange(256)))
    assert max(sizes) >= 256 * 256  # the direct form does hold it


def test_auto_implementation_tiles_above_the_threshold(monkeypatch):
    calls = []
    real = losses_module.tiled_cross_entropy
    monkeypatch.setattr(losses_module, "tiled_cross_entropy", lambda *a, **k: calls.append(1) or real(*a, **k))
    q, k, t = torch.randn(20, 4), torch.randn(20, 4), Targets(positive=torch.arange(20))
    ClipLoss(tiled_above=401).compute(q, k, CosineScorer(), t)
    assert not calls
    ClipLoss(tiled_above=399).compute(q, k, CosineScorer(), t)
    assert calls
    calls.clear()
    ClipLoss(tiled_above=1).compute(q, k, NegSqL2Scorer(), t)  # not a product: auto stays direct
    assert not calls


def test_tiled_with_a_distance_scorer_is_a_clear_error():
    with pytest.raises(ValueError, match="implementation='tiled' needs a scorer"):
        ClipLoss(implementation="tiled").compute(torch.randn(4, 3), torch.randn(4, 3), NegL2Scorer(),
                                                 Targets(positive=torch.arange(4)))


# -- InfoNCE with hard-negative columns ---------------------------------------------------------------------


def test_info_nce_symmetric_with_hard_negative_columns():
    """[Q, Q + H] scores: extra columns are negatives of every row, and only the first Q enter c2q."""
    g = torch.Generator().manual_seed(5)
    s = torch.randn(4, 7, generator=g, dtype=torch.float64)
    out = InfoNCELoss(symmetric=True)(s, Targets(positive=torch.arange(4)))
    rows = sum(_lse(s[i].tolist()) - s[i, i].item() for i in range(4)) / 4
    cols = sum(_lse(s[:4, j].tolist()) - s[j, j].item() for j in range(4)) / 4
    assert out.value.item() == pytest.approx((rows + cols) / 2, rel=1e-12)
    assert out.parts["q2c"].item() == pytest.approx(rows, rel=1e-12)
    tiled = InfoNCELoss(symmetric=True, implementation="tiled", tile_mb=1e-4)
    q, k = torch.randn(4, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    scorer = DotScorer().double()
    direct = InfoNCELoss(symmetric=True)(scorer.score(q, k), Targets(positive=torch.arange(4))).value
    assert tiled.compute(q, k, scorer, Targets(positive=torch.arange(4))).value.item() == pytest.approx(
        direct.item(), rel=1e-12)


def test_clip_needs_square_scores_and_says_what_to_use():
    with pytest.raises(ValueError, match="core.info-nce"):
        ClipLoss().compute(torch.randn(3, 2), torch.randn(5, 2), DotScorer(), Targets(positive=torch.arange(3)))


# -- NCE and negative sampling ----------------------------------------------------------------------------


def test_nce_with_noise_distribution_per_candidate_and_per_row():
    g = torch.Generator().manual_seed(9)
    s = torch.randn(3, 4, generator=g, dtype=torch.float64)
    log_noise = torch.log_softmax(torch.randn(4, generator=g, dtype=torch.float64), 0)
    targets = NoiseTargets(positive=torch.tensor([0, 2, 3]), log_noise=log_noise, num_noise=5)
    expected = 0.0
    for i, pos in enumerate([0, 2, 3]):
        for j in range(4):
            delta = s[i, j].item() - math.log(5) - log_noise[j].item()
            expected += math.log1p(math.exp(-delta)) if j == pos else math.log1p(math.exp(delta))
    assert NCELoss()(s, targets).value.item() == pytest.approx(expected / 3, rel=1e-12)
    per_row = NoiseTargets(positive=targets.positive, log_noise=log_noise.expand(3, 4), num_noise=5)
    assert NCELoss()(s, per_row).value.item() == pytest.approx(expected / 3, rel=1e-12)


def test_negative_sampling_per_row_layout():
    """word2vec layout: [B, 1 + k] scores with the word in column 0."""
    s = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]], dtype=torch.float64)
    expected = sum(math.log1p(math.exp(-r[0])) + sum(math.log1p(math.exp(x)) for x in r[1:]) for r in s.tolist()) / 2
    out = NegativeSamplingLoss()(s, Targets(positive=torch.zeros(2, dtype=torch.long)))
    assert out.value.item() == pytest.approx(expected, rel=1e-12)


def test_nce_bad_noise_shape_names_the_argument():
    with pytest.raises(ValueError, match="log_noise"):
        NCELoss()(torch.randn(2, 3), NoiseTargets(positive=torch.arange(2), log_noise=torch.zeros(5)))


def test_nce_and_negative_sampling_are_different():
    s = torch.randn(4, 4)
    t = Targets(positive=torch.arange(4))
    assert NCELoss()(s, t).value.item() != pytest.approx(NegativeSamplingLoss()(s, t).value.item())


# -- memory queue -------------------------------------------------------------------------------------------


def test_memory_queue_enqueues_after_the_loss_and_wraps():
    torch.manual_seed(0)
    loss = MemoryQueueLoss(size=5, dim=3)
    scorer = DotScorer()
    q1, k1 = torch.randn(2, 3), torch.randn(2, 3)
    first = loss.compute(q1, k1, scorer, Targets(positive=torch.arange(2))).value
    plain = InfoNCELoss()(scorer.score(q1, k1), Targets(positive=torch.arange(2))).value
    assert first.item() == pytest.approx(plain.item())  # the queue was empty when the loss was formed
    assert loss.filled == 2 and torch.equal(loss.queue[:2], k1)
    q2, k2 = torch.randn(2, 3), torch.randn(2, 3)
    second = loss.compute(q2, k2, scorer, Targets(positive=torch.arange(2))).value
    with_queue = InfoNCELoss()(scorer.score(q2, torch.cat([k2, k1])), Targets(positive=torch.arange(2))).value
    assert second.item() == pytest.approx(with_queue.item())
    loss.compute(torch.randn(2, 3), k3 := torch.randn(2, 3), scorer, Targets(positive=torch.arange(2)))
    assert loss.filled == 5 and int(loss.queue_ptr) == 1  # 6 keys in a queue of 5: the oldest was overwritten
    assert torch.equal(loss.queue[0], k3[1])
    loss.eval()
    loss.compute(torch.randn(2, 3), torch.randn(2, 3), scorer, Targets(positive=torch.arange(2)))
    assert int(loss.queue_ptr) == 1  # no enqueue in eval mode
    assert {"queue", "queue_labels", "queue_labelled", "queue_ptr", "queue_count"} <= set(loss.state_dict())


def test_memory_queue_gradient_does_not_reach_the_queue_and_width_is_checked():
    loss = MemoryQueueLoss(size=4, dim=3)
    loss.enqueue(torch.randn(4, 3))
    k = torch.randn(2, 3, requires_grad=True)
    loss.compute(torch.randn(2, 3), k, DotScorer(), Targets(positive=torch.arange(2))).value.backward()
    assert k.grad is not None and not loss.queue.requires_grad
    with pytest.raises(ValueError, match="dim = 3"):
        loss.compute(torch.randn(2, 4), torch.randn(2, 4), DotScorer(), Targets(positive=torch.arange(2)))


def test_memory_queue_width_from_the_encoders_or_a_clear_error():
    class Enc(torch.nn.Module):
        embed_dim = 7

    assert build_memory_queue(p.MemoryQueueParams(), BuildContext(encoders={"a": Enc()})).dim == 7
    with pytest.raises(ValueError, match="loss.dim"):
        build_memory_queue(p.MemoryQueueParams(), BuildContext())


# -- SigLIP, SupCon / NT-Xent --------------------------------------------------------------------------------


def test_siglip_bias_is_learned_and_reported():
    loss = SigLIPLoss(bias_init=-10.0)
    s = torch.randn(4, 4)
    out = loss(s, Targets(positive=torch.arange(4)))
    out.value.backward()
    assert loss.logit_bias.grad is not None and out.parts["bias"].item() == -10.0
    assert "logit_bias" in loss.state_dict()
    assert not SigLIPLoss(learn_bias=False).logit_bias.requires_grad


def test_supcon_joint_without_labels_is_nt_xent():
    """SimCLR's NT-Xent (Chen et al. 2020): 2B views, each against the 2B - 1 others, positive = other view."""
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    scorer = CosineScorer(0.5, learn_temperature=False).double()
    z = torch.cat([q, k])
    s = scorer.score(z, z).tolist()
    expected = sum(_lse([s[i][j] for j in range(6) if j != i]) - s[i][(i + 3) % 6] for i in range(6)) / 6
    value = SupConLoss(views="joint").compute(q, k, scorer, Targets(positive=torch.arange(3))).value
    assert value.item() == pytest.approx(expected, rel=1e-12)


# -- triplet mining ------------------------------------------------------------------------------------------


def test_triplet_mining_strategies_on_a_hand_made_batch():
    """One anchor (row 0): positive at distance 1 and 3; negatives at 0.5, 2 and 4; margin 1."""
    d = torch.tensor([[1.0, 3.0, 0.5, 2.0, 4.0]], dtype=torch.float64)
    targets = Targets(positive=torch.tensor([0]))

    class T(TripletLoss):  # label row 0 and columns 0, 1 alike so both are positives
        def _reduce(self, problem, targets):
            from cl_core._builtin.problems import Problem

            problem = Problem(problem.scores, problem.positive, torch.tensor([1]), torch.tensor([1, 1, 2, 3, 4]))
            return super()._reduce(problem, targets)

    value = lambda mining: T(margin=1.0, mining=mining)(-d, targets).value.item()
    # all: (1,.5)=1.5 (1,2)=0 (1,4)=0 (3,.5)=3.5 (3,2)=2 (3,4)=0 -> active 1.5, 3.5, 2
    assert value("all") == pytest.approx((1.5 + 3.5 + 2.0) / 3)
    # hard: farthest positive 3, closest negative 0.5 -> 3.5
    assert value("hard") == pytest.approx(3.5)
    # semi-hard: p=1 -> closest negative farther than 1 is 2 -> 0; p=3 -> 4 -> 0
    assert value("semi-hard") == pytest.approx(0.0)


# -- bad input ------------------------------------------------------------------------------------------------


LOSSES = [InfoNCELoss(), ClipLoss(), SigLIPLoss(), SupConLoss(views="pair"), ContrastiveLoss(),
          ContrastiveHingeLoss(), TripletLoss(), NCELoss(), NegativeSamplingLoss(), MemoryQueueLoss(4, 3)]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda x: type(x).__name__)
def test_bad_embeddings_are_rejected_with_the_argument_named(loss):
    scorer, t = DotScorer(), Targets(positive=torch.arange(2))
    with pytest.raises(ValueError, match=r"queries.*\[batch, dim\]"):
        loss.compute(torch.randn(2), torch.randn(2, 3), scorer, t)
    with pytest.raises(ValueError, match="same embedding width|width dim"):
        loss.compute(torch.randn(2, 3), torch.randn(2, 4), scorer, t)
    with pytest.raises(ValueError, match="empty"):
        loss.compute(torch.randn(0, 3), torch.randn(2, 3), scorer, Targets(positive=torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"targets.labels must have shape \[2\]"):
        loss.compute(torch.randn(2, 3), torch.randn(2, 3), scorer, Targets(positive=torch.arange(2),
                                                                            labels=torch.arange(3)))
    with pytest.raises(ValueError, match=r"targets.positive must have shape \[2\]"):
        loss.compute(torch.randn(2, 3), torch.randn(2, 3), scorer, Targets(positive=torch.arange(3)))
    with pytest.raises(ValueError, match=r"targets.positive must index candidates in \[0, 2\)"):
        loss.compute(torch.randn(2, 3), torch.randn(2, 3), scorer, Targets(positive=torch.tensor([0, 5])))


@pytest.mark.parametrize("make,match", [
    (lambda: ContrastiveLoss(margin=-1), "margin must be >= 0"),
    (lambda: ContrastiveHingeLoss(pos_margin=-0.1), "pos_margin must be >= 0"),
    (lambda: ContrastiveHingeLoss(neg_margin=-0.1), "neg_margin must be >= 0"),
    (lambda: TripletLoss(margin=-0.2), "margin must be >= 0"),
    (lambda: TripletLoss(mining="hardest"), "mining must be one of"),
    (lambda: SupConLoss(form="inside"), "form must be 'out'"),
    (lambda: SupConLoss(views="two"), "views must be one of"),
    (lambda: InfoNCELoss(implementation="fast"), "implementation must be one of"),
    (lambda: CosineScorer(temperature=0), "temperature must be > 0"),
    (lambda: DotScorer(temperature=-1.0), "temperature must be > 0"),
    (lambda: NegL2Scorer(learn_temperature=True), "needs a temperature"),
    (lambda: CosineScorer(temperature=0.001), "exceeds max_logit_scale"),
    (lambda: BilinearScorer(4, rank=5), r"rank must be in \[1, dim = 4\]"),
    (lambda: MemoryQueueLoss(0, 4), "size must be > 0"),
])
def test_bad_arguments_name_the_argument_and_range(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_single_view_without_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="views='single'.*labels"):
        SupConLoss(views="single").compute(torch.randn(3, 2), torch.randn(3, 2), DotScorer(),
                                           Targets(positive=torch.arange(3)))


@pytest.mark.parametrize("name,table,path,message", [
    ("core.triplet", {"margin": -1.0}, "loss.margin", ">= 0"),
    ("core.contrastive-hinge", {"neg_margin": -1.0}, "loss.neg_margin", ">= 0"),
    ("core.triplet", {"mining": "hardest"}, "loss.mining", 'one of "all", "hard", "semi-hard"'),
    ("core.supcon", {"form": "inside"}, "loss.form", 'one of "out", "in"'),
    ("core.info-nce", {"implementation": "fast"}, "loss.implementation", "one of"),
    ("core.memory-queue", {"size": 0}, "loss.size", "> 0"),
])
def test_bad_loss_params_in_a_spec_are_located(name, table, path, message):
    from cl_core.plugins import PluginHost
    from cl_core.spec import CONVERTER, LossRef
    from cl_core.spec.structure import Structurer

    structurer = Structurer(PluginHost(only=["core"]).registry(), CONVERTER)
    ok, _ = structurer.component({"type": name, **table}, LossRef, "loss")
    assert not ok
    assert structurer.problems[0].path == path and message in structurer.problems[0].message


@pytest.mark.parametrize("name,table,message", [
    ("core.cosine", {"temperature": 0.0}, "must be > 0"),
    ("core.neg-l2", {"temperature": -2.0}, "must be > 0"),
    ("core.dot", {"learn_temperature": True}, "needs a temperature"),
    ("core.bilinear", {"dim": 4, "rank": 8}, "rank = 8 exceeds dim = 4"),
])
def test_bad_scorer_params_in_a_spec_are_reported(name, table, message):
    from cl_core.plugins import PluginHost
    from cl_core.spec import CONVERTER, ScorerRef
    from cl_core.spec.structure import Structurer

    structurer = Structurer(PluginHost(only=["core"]).registry(), CONVERTER)
    ok, _ = structurer.component({"type": name, **table}, ScorerRef, "scorer")
    assert not ok
    assert any(message in problem.message for problem in structurer.problems), structurer.problems


def test_bilinear_width_from_the_encoders_or_a_clear_error():
    class Enc(torch.nn.Module):
        embed_dim = 6

    assert build_bilinear(p.BilinearParams(rank=2), BuildContext(encoders={"a": Enc()})).dim == 6
    with pytest.raises(ValueError, match="scorer.dim"):
        build_bilinear(p.BilinearParams(), BuildContext())


def test_energy_api_on_every_scorer():
    """log_prob(beta) is the Gibbs distribution softmax(-beta F); argmin picks the lowest energy."""
    q, k = torch.randn(3, 4), torch.randn(5, 4)
    for scorer in [DotScorer(), CosineScorer(), NegL2Scorer(), NegSqL2Scorer(), BilinearScorer(4)]:
        energy = scorer.energy(q, k)
        torch.testing.assert_close(scorer.log_prob(q, k, beta=2.0), torch.log_softmax(-2.0 * energy, 1))
        assert torch.equal(scorer.argmin(q, k), energy.argmin(1))
        with pytest.raises(ValueError, match="beta"):
            scorer.log_prob(q, k, beta=0)


# -- tiled accuracy on saturated batches, scale shapes, exact float64 scale --------------------------------


def _saturated(n, d, noise, seed):
    """Unit vectors and their slightly moved copies: every positive far above its negatives."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g)
    k = q + noise * torch.randn(n, d, generator=g)
    return torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(k, dim=1)


def _loss_and_grads(q, k, temperature, dtype, implementation, symmetric):
    """Value, d/d log s and the embedding gradients; the logit scale is the float32 one in every dtype, so
    the float64 run is the exact loss of the float32 inputs."""
    scorer = DotScorer(temperature, learn_temperature=True)
    log_scale = scorer.logit_scale.detach().clone()
    scorer = scorer.to(dtype)
    with torch.no_grad():
        scorer.logit_scale.copy_(log_scale)
    q, k = q.to(dtype).clone().requires_grad_(), k.to(dtype).clone().requires_grad_()
    loss = InfoNCELoss(symmetric=symmetric, implementation=implementation, tile_mb=0.25)  # 128 rows a block
    out = loss.compute(q, k, scorer, Targets(positive=torch.arange(q.shape[0])))
    out.value.backward()
    return out.value.item(), scorer.logit_scale.grad.item(), torch.cat([q.grad, k.grad]).double()


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("n,d,noise,temperature,tol_value,tol_grad", [
    # loss ~3e-3 (a well-trained batch): measured over 5 seeds at most 3.3e-7 (value), 4.1e-7 (d/d log s),
    # 2.7e-6 (embedding gradients); the former sum-of-lse minus sum-of-positives form: 4.7e-4 and 1.1e-4,
    # and the direct form 1.1e-5 and 3.3e-5
    (256, 16, 0.1, 0.05, 3e-6, 2e-5),
    # loss ~1e-8 (saturated): measured at most 3.6e-6, 4.9e-6, 8.5e-6; the former form 100% off (its
    # value is float32 rounding noise of two sums of ~25,000) and d/d log s 93x off; the direct form 17%, 53%
    (512, 32, 0.1, 0.02, 5e-5, 1e-4),
])
def test_tiled_float32_keeps_its_accuracy_on_a_saturated_batch(symmetric, n, d, noise, temperature, tol_value,
                                                               tol_grad):
    """The tiled form adds each row's (lse - positive), formed relative to the positive, so a batch whose
    positives are far above every negative keeps float32's relative accuracy in the value and d/d log s."""
    for seed in range(2):
        q, k = _saturated(n, d, noise, seed)
        value64, dlogs64, grads64 = _loss_and_grads(q, k, temperature, torch.float64, "direct", symmetric)
        value, dlogs, grads = _loss_and_grads(q, k, temperature, torch.float32, "tiled", symmetric)
        assert value == pytest.approx(value64, rel=tol_value)
        assert dlogs == pytest.approx(dlogs64, rel=tol_value)
        assert ((grads - grads64).norm() / grads64.norm()).item() < tol_grad


def test_tiled_row_term_is_exact_zero_when_nothing_competes():
    """One candidate per row: every loss is exactly 0 (log 1), not the rounding noise of lse - positive."""
    from cl_core._builtin.tiled import tiled_cross_entropy

    a, b = torch.randn(5, 3) * 30, torch.randn(1, 3) * 30
    row, col = tiled_cross_entropy(a, b, torch.tensor(100.0), torch.zeros(5, dtype=torch.long), budget_mb=1e-5)
    assert row.item() == 0.0 and col.item() == 0.0


@pytest.mark.parametrize("implementation", ["direct", "tiled"])
@pytest.mark.parametrize("symmetric", [False, True])  # tiled: gradients formed in forward / in backward
def test_a_logit_scale_of_shape_1_works_like_a_scalar(implementation, symmetric):
    """A [1] parameter (a 0-dim array after some save/load round trips) gives the loss and gradients of the
    0-dim one, its gradient keeping shape [1]; the tiled backward used to fail in addmm_ (TypeError)."""
    g = torch.Generator().manual_seed(2)
    q0, k0 = torch.randn(40, 6, generator=g), torch.randn(40, 6, generator=g)
    results = []
    for shape in ((), (1,)):
        scorer = CosineScorer(0.07)
        scorer.logit_scale = torch.nn.Parameter(scorer.logit_scale.detach().reshape(shape).clone())
        q, k = q0.clone().requires_grad_(), k0.clone().requires_grad_()
        loss = InfoNCELoss(symmetric=symmetric, implementation=implementation, tile_mb=1e-3)  # several blocks
        out = loss.compute(q, k, scorer, Targets(positive=torch.arange(40)))
        out.value.backward()
        assert scorer.scale.shape == () and scorer.logit_scale.grad.shape == shape
        results.append((out.value, q.grad, k.grad, scorer.logit_scale.grad.reshape(())))
    for scalar, shaped in zip(*results):
        torch.testing.assert_close(shaped, scalar, rtol=0, atol=0)


def test_a_scale_with_more_than_one_element_is_a_clear_error():
    from cl_core._builtin.tiled import tiled_cross_entropy

    scorer = CosineScorer(0.07)
    scorer.logit_scale = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=r"logit_scale must hold one number \(shape \[\] or \[1\]\), got shape \[2\]"):
        scorer.score(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"scale must have one element"):
        tiled_cross_entropy(torch.randn(2, 3), torch.randn(2, 3), torch.ones(2), torch.arange(2))


@pytest.mark.parametrize("temperature", [0.07, 0.05, 0.1, 0.03, 0.01])
def test_float64_scorer_holds_the_exact_log_scale_and_float32_is_unchanged(temperature):
    """float32 keeps float32(log(1/T)) bit for bit; .double() before training gives log(1/T) in float64
    (it used to be the float32 value widened: 0.9e-9 to 1.4e-8 off relative for these T)."""
    exact = math.log(1.0 / temperature)
    assert torch.tensor(exact, dtype=torch.float32).double().item() != exact  # the old float64 value was off
    float32 = CosineScorer(temperature)
    assert float32.logit_scale.dtype == torch.float32
    assert float32.logit_scale.item() == torch.tensor(exact, dtype=torch.float32).item()
    assert CosineScorer(temperature).double().logit_scale.item() == exact
    nested = torch.nn.ModuleDict({"scorer": DotScorer(temperature)}).to(torch.float64)  # through a parent
    assert nested["scorer"].logit_scale.item() == exact
    assert nested["scorer"].scale.item() == pytest.approx(1.0 / temperature, rel=1e-15)
    assert CosineScorer(temperature).double().float().logit_scale.item() == float32.logit_scale.item()


def test_a_trained_logit_scale_is_converted_as_it_is():
    scorer = CosineScorer(0.07)
    with torch.no_grad():
        scorer.logit_scale.add_(0.25)  # an optimizer step
    trained = scorer.logit_scale.item()
    assert scorer.double().logit_scale.item() == trained  # widened exactly, not reset to log(1/0.07)
