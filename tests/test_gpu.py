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
