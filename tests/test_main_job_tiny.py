"""The main job, tiny: `cl train` on a few dozen real emoji (committed fixture), end to end through the
CLI, then `cl eval` and `from_pretrained` on the run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tomli_w

pytest.importorskip("cl_clip")
datasets_testing = pytest.importorskip("cl_datasets.testing")


def _spec(tmp_path) -> dict:
    return {
        "format": 1,
        "run": {"seed": 0, "device": "cpu", "output_dir": str(tmp_path / "runs"), "name": "tiny"},
        "data": datasets_testing.emoji_fixture_table(image_size=32, holdout=0.25),
        "sampler": {"type": "core.in-batch", "batch_size": 16},
        "encoders": {
            "image": {"type": "clip.vit", "image_size": 32, "patch": 8, "width": 32, "layers": 1, "embed_dim": 32},
            "text": {"type": "clip.text-transformer", "width": 32, "layers": 1, "context_length": 16, "embed_dim": 32},
        },
        "scorer": {"type": "core.cosine"},
        "loss": {"type": "core.clip", "label_aware": True},
        "trainer": {"epochs": 3, "lr": 1e-3, "checkpoint_every": 2},
        "evaluate": [{"type": "clip.zero-shot", "prompts": ["an emoji of {}"], "examples": 2},
                     {"type": "clip.retrieval"}],
    }


def test_tiny_emoji_training_through_the_cli(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(tomli_w.dumps(_spec(tmp_path)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CL_STRICT_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "cl_core.cli", "train", str(spec)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    assert {"spec.toml", "model.safetensors", "metrics.jsonl", "README.md", "checkpoint.safetensors", "plots"} <= {
        p.name for p in run.iterdir()}
    assert {"loss.png", "similarity.png", "zero-shot-heldout-noto.png", "zero-shot-heldout-openmoji.png"} <= {
        p.name for p in (run / "plots").iterdir()}
    for style in ("openmoji", "noto"):
        assert f"zero-shot/heldout-{style}/top1" in out.stdout
        assert f"retrieval/heldout-{style}/i2t@5" in out.stdout
    assert "[provenance]" in (run / "spec.toml").read_text()
    evals = [json.loads(line)["eval"] for line in (run / "metrics.jsonl").read_text().splitlines() if "eval" in line]
    top1 = evals[-1]["zero-shot/heldout-noto/top1"]
    assert 0.0 <= top1 <= 1.0 and evals[-1]["zero-shot/heldout-noto/chance"] == pytest.approx(1 / 9)  # 25% of the 36 two-style concepts
    assert "zero-shot/heldout-noto/top1" in (run / "README.md").read_text()

    again = subprocess.run([sys.executable, "-m", "cl_core.cli", "eval", str(run)], capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "zero-shot/heldout-noto/top1" in again.stdout
    # Re-evaluating the saved weights reproduces the numbers the run printed.
    line = next(l for l in again.stdout.splitlines() if "zero-shot/heldout-noto/top1" in l)
    assert float(line.split()[-1]) == pytest.approx(top1, abs=1e-4)


def test_an_efficientnet_ensemble_trains_saves_and_reloads(tmp_path):
    """Two frozen EfficientNet-Lite trunks (random weights: offline and fast) through `cl train` and `cl eval`."""
    table = _spec(tmp_path)
    table["run"]["name"] = "ensemble"
    table["data"]["image_size"] = 64
    table["encoders"]["image"] = {
        "type": "clip.efficientnet-ensemble", "pretrained": False, "embed_dim": 32, "head": "mlp", "head_hidden": 32,
        "trunks": [{"variant": "lite0", "image_size": 32, "pool_blocks": [15]},
                   {"variant": "lite2", "image_size": 64, "pool_blocks": [14, 20]}],
    }
    table["trainer"] = {"epochs": 1, "lr": 1e-3}
    table["evaluate"] = [{"type": "clip.zero-shot", "prompts": ["an emoji of {}"]}]
    spec = tmp_path / "ensemble.toml"
    spec.write_text(tomli_w.dumps(table))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CL_STRICT_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "cl_core.cli", "train", str(spec)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "ensemble"
    evals = [json.loads(line)["eval"] for line in (run / "metrics.jsonl").read_text().splitlines() if "eval" in line]
    again = subprocess.run([sys.executable, "-m", "cl_core.cli", "eval", str(run)], capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    for style in ("noto", "openmoji"):
        line = next(l for l in again.stdout.splitlines() if f"zero-shot/heldout-{style}/top5" in l)
        assert float(line.split()[-1]) == pytest.approx(evals[-1][f"zero-shot/heldout-{style}/top5"], abs=1e-4)
