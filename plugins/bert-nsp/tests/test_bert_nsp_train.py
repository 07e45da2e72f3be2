"""NSP end to end: the spec builds (bad data fails before training), the evaluator measures held-out pairs,
and `cl train` learns next-sentence prediction on a tiny synthetic corpus where it is learnable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tomli_w
import torch

from cl_core.build import build_pipeline
from cl_core.errors import DataError
from cl_core.plugins import PluginHost
from cl_core.spec import loads_spec
from cl_core.testing import EvaluatorContract
from cl_bert_nsp.nsp_eval import NSPAccuracy
from cl_bert_nsp.params import NSPAccuracyParams

WORDS = ["apple", "river", "guitar", "planet", "engine", "castle", "forest", "violin", "rocket", "garden",
         "bridge", "desert", "island", "harbor", "meadow", "canyon"]


def _corpus(path, docs=40, sentences=4):
    """Documents about one word each: 'The apple is here one.' ... consecutive sentences share the topic word,
    so "is next" (same word) vs "random" (another document's word, usually different) is learnable."""
    blocks = []
    for d in range(docs):
        word = WORDS[d % len(WORDS)]
        blocks.append("\n".join(f"{word} {s}." for s in range(sentences)))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def _spec(tmp_path, data_file, **trainer):
    return {
        "format": 1,
        "run": {"seed": 0, "device": "cpu", "output_dir": str(tmp_path / "runs"), "name": "tiny"},
        "data": {"type": "datasets.documents", "source": str(data_file), "holdout": 0.25},
        "sampler": {"type": "bert-nsp.pairs", "batch_size": 16},
        "encoders": {"pair": {"type": "bert-nsp.bert", "hidden_size": 64, "layers": 2, "heads": 2,
                              "intermediate_size": 128, "block_size": 16, "mlm_probability": 0.15, "dropout": 0.0},
                     "label": {"type": "bert-nsp.nsp-head"}},
        "scorer": {"type": "core.dot"},
        "loss": {"type": "core.info-nce"},
        "objective": [{"type": "core.contrastive", "roles": ["pair", "label"], "name": "nsp"},
                      {"type": "bert-nsp.mlm", "role": "pair"}],
        "trainer": {"lr": 2e-3, "weight_decay": 0.01, "warmup_steps": 5, "log_every": 5, **trainer},
        "evaluate": [{"type": "bert-nsp.nsp-accuracy", "max_pairs": 200}],
    }


def _build(spec):
    registry = PluginHost(only=["bert-nsp", "datasets"], strict=True).registry()
    return build_pipeline(loads_spec(tomli_w.dumps(spec), registry), registry)


def test_single_document_corpus_fails_at_build_time(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("First.\nSecond.\nThird.\n\nAnother doc.\nWith two.\n", encoding="utf-8")
    spec = _spec(tmp_path, one)
    spec["data"]["holdout"] = 0.5  # one document left for training
    with pytest.raises(DataError, match="the training split has 1 document"):
        _build(spec)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nsp")
    torch.manual_seed(0)
    return _build(_spec(tmp, _corpus(tmp / "docs.txt")))


def test_evaluator_uses_heldout_documents_only(tiny_pipeline):
    dataset = tiny_pipeline.dataset
    evaluator = NSPAccuracy(NSPAccuracyParams(max_pairs=500))
    pairs, labels = evaluator.pairs(dataset, "heldout")
    held = {s for d in dataset.splits()["heldout"].documents for s in d.sentences}
    assert len(pairs) == dataset.splits()["heldout"].num_consecutive_pairs == 30
    assert all(p.a in held and p.b in held for p in pairs)
    again, _ = evaluator.pairs(dataset, "heldout")
    assert again == pairs  # fixed draw
    results = evaluator.evaluate(tiny_pipeline, dataset, _ctx())
    assert results["nsp/heldout/count"] == 30
    share = float(labels.mean())
    untrained = results["nsp/heldout/accuracy"]
    # an untrained head predicts mostly one class: accuracy is about that class's share
    assert min(share, 1 - share) - 0.2 <= untrained <= max(share, 1 - share) + 0.2


def _ctx():
    from cl_core.components import EvalContext

    return EvalContext(device=torch.device("cpu"))


class TestNSPAccuracyContract(EvaluatorContract):
    name = "bert-nsp.nsp-accuracy"

    @pytest.fixture
    def pipeline(self, tiny_pipeline):
        return tiny_pipeline

    @pytest.fixture
    def params(self):
        return NSPAccuracyParams(max_pairs=16, batch_size=8)


def test_pipeline_overfits_a_fixed_batch_through_the_candidate_set(tmp_path):
    """Gradients flow from BERT's NSP loss (InfoNCE over the 2 head rows) into the head and the trunk."""
    torch.manual_seed(0)
    pipeline = _build(_spec(tmp_path, _corpus(tmp_path / "docs.txt")))
    pipeline.train()
    source = pipeline.dataset.splits()["train"]
    batch = next(pipeline.sampler.batches(source, generator=torch.Generator().manual_seed(0)))
    prepared = pipeline.prepare(batch)
    assert set(prepared.inputs) == {"pair"}  # the candidate set needs no inputs
    optimizer = torch.optim.AdamW(pipeline.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = pipeline.training_loss(prepared, torch.device("cpu"))
        assert set(out.parts) >= {"nsp", "mlm"}
        optimizer.zero_grad()
        out.value.backward()
        optimizer.step()
        losses.append(float(out.parts["nsp"]))
    assert losses[0] > 0.6 and losses[-1] < 0.1, (losses[0], losses[-1])


@pytest.mark.slow  # ~10 s: `cl train` for 20 steps of a 2-layer BERT
def test_cl_train_runs_nsp_with_joint_masked_lm(tmp_path):
    spec = tmp_path / "nsp.toml"
    spec.write_text(tomli_w.dumps(_spec(tmp_path, _corpus(tmp_path / "docs.txt"), epochs=100, max_steps=20)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CL_STRICT_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "cl_core.cli", "train", str(spec)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "nsp/heldout/accuracy" in out.stdout
    lines = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "loss" in r]
    assert len(steps) == 4 and all("mlm" in r for r in steps)  # the masked-LM objective is logged by name
    assert steps[-1]["mlm"] < steps[0]["mlm"] - 1.0  # and it is being learned
    assert all(abs(r["loss"] - r["mlm"] - r["nsp"]) < 1e-4 for r in steps)  # loss = NSP + MLM
    result = [r["eval"] for r in lines if "eval" in r][-1]
    assert result["nsp/heldout/count"] == 30 and 0.0 <= result["nsp/heldout/accuracy"] <= 1.0

    from cl_core.weights import from_pretrained

    run = tmp_path / "runs" / "tiny"
    pipeline = from_pretrained(run)
    role = next(iter(pipeline.encoders))
    card = (run / "README.md").read_text(encoding="utf-8")
    assert f"pipeline.scorer.score(pipeline.embed(\"{role}\", pairs), pipeline.candidate_set().candidates())" in card
    pairs = [("The cat sat on the mat.", "It fell asleep there."), ("Paris is in France.", "Bananas are yellow.")]
    logits = pipeline.scorer.score(pipeline.embed(role, pairs), pipeline.candidate_set().candidates())
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()  # the card's recipe runs as written
