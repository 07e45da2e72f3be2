"""GPU checks (marked gpu; skipped without CUDA): the trainer picks cuda and bf16, and trains."""

from __future__ import annotations

import pytest
import torch

from cl_core.runs import train
from cl_core.trainer import resolve_device, resolve_precision

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_auto_picks_cuda_and_bf16():
    device = resolve_device("auto")
    assert device.type == "cuda"
    assert resolve_precision("auto", device) is torch.bfloat16


def test_toy_training_on_gpu_with_autocast(toy_spec, toy_host):
    path, _ = toy_spec('precision = "bf16"')
    result = train(path, host=toy_host, log=lambda m: None)
    assert result.steps == 12


def test_a_scorer_on_the_gpu_scores_cpu_embeddings():
    from cl_core._builtin.scorers import CosineScorer

    q, k = torch.randn(5, 8), torch.randn(7, 8)
    on_cpu = CosineScorer(temperature=0.1, learn_temperature=True)
    on_gpu = CosineScorer(temperature=0.1, learn_temperature=True).cuda()
    scores = on_gpu.score(q, k)  # Pipeline.embed returns CPU tensors
    assert scores.device.type == "cuda"
    torch.testing.assert_close(scores.cpu(), on_cpu.score(q, k), rtol=1e-5, atol=1e-5)


def test_toy_run_evaluates_on_gpu(toy_spec, toy_host):
    """An evaluator that scores `Pipeline.embed` output (CPU) with the trained scorer (on the GPU)."""
    path, _ = toy_spec('eval_on_start = true\n[[evaluate]]\ntype = "toy.alignment"')
    result = train(path, host=toy_host, log=lambda m: None)
    assert 0.0 <= result.results["alignment/heldout/recall@1"] <= 1.0


def test_frozen_image_tower_on_gpu_leaves_cached_rows_out_and_recovers_lost_ones():
    np = pytest.importorskip("numpy")
    params = pytest.importorskip("cl_clip.params")
    from cl_clip.efficientnet import EfficientNetLite

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(5)]
    tower = EfficientNetLite(params.EfficientNetParams(image_size=32, embed_dim=8, pretrained=False)).cuda().eval()
    first = tower.encode({k: v.cuda() for k, v in tower.prepare(images).items()})
    again = {k: v.cuda() for k, v in tower.prepare(images).items()}
    assert not again["ready"].any()
    tower.clear_cache()  # the claimed rows are lost: prepared again from the held items, on the GPU
    torch.testing.assert_close(tower.encode(again), first)
