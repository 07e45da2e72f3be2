"""On a CUDA device: CLIPRe's memory moves with the model and answers CPU or GPU queries, and the evaluator runs
with its own decoder on the evaluation device (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from cl_core.api import EvalContext

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

EXTRA = ('[[evaluate]]\ntype = "captions.metrics"\nname = "clipre"\nrole = "a"\ndecoder = { type = "captions.clipre" }\n'
         'meteor = false\ntokenizer = "python"\ntiming = false')


def test_clipre_and_the_metrics_on_cuda(toy_pipeline):
    pipeline = toy_pipeline(EXTRA).eval()
    evaluator = pipeline.evaluators[0]
    clipre = evaluator.decoder
    source = pipeline.dataset.splits()["heldout"]
    items = source.get(range(len(source)))["a"]
    queries = pipeline.embed("a", items)
    on_cpu = clipre.decode(queries, max_length=8)
    cpu_metrics = evaluator.evaluate(pipeline, pipeline.dataset, EvalContext(device=torch.device("cpu")))
    pipeline.to("cuda")
    gpu_metrics = evaluator.evaluate(pipeline, pipeline.dataset, EvalContext(device=torch.device("cuda")))
    assert clipre.memory.is_cuda and clipre.memory_text.is_cuda  # the evaluator moved its own decoder
    assert clipre.decode(queries, max_length=8) == on_cpu  # CPU queries, GPU memory
    assert clipre.decode(queries.cuda(), max_length=8) == on_cpu
    assert gpu_metrics.keys() == cpu_metrics.keys()
    for key, value in cpu_metrics.items():
        assert gpu_metrics[key] == pytest.approx(value, abs=1e-4), key
