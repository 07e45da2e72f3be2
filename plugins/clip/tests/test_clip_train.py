"""End to end through cl-core: spec -> build -> train a tiny CLIP on coloured squares -> evaluators."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from attrs import frozen

from cl_core.components import Dataset, DataSource
from cl_core.plugins import PluginHost, hookimpl
from cl_core.registry import ComponentInfo
from cl_core.runs import train

COLORS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 30)}


class Squares(DataSource):
    """A coloured square at a random place on white; caption "a <colour> square"."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.fields = ("image", "text")
        self.class_names = list(COLORS)
        self.labels = rng.integers(0, len(COLORS), n).astype(np.int64)
        self._images = []
        for label in self.labels:
            a = np.full((16, 16, 3), 255, dtype=np.uint8)
            x, y = rng.integers(0, 6, 2)
            a[y : y + 10, x : x + 10] = COLORS[self.class_names[label]]
            self._images.append(a)

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices):
        return {"image": [self._images[i] for i in indices],
                "text": [f"a {self.class_names[self.labels[i]]} square" for i in indices]}


class SquaresData(Dataset):
    def __init__(self):
        self._splits = {"train": Squares(128, 0), "test": Squares(32, 1)}

    def splits(self):
        return self._splits


@frozen(kw_only=True)
class SquaresParams:
    """``squares.data``: coloured squares (no parameters)."""


class SquaresPlugin:
    @staticmethod
    @hookimpl
    def cl_datasets():
        yield ComponentInfo(name="squares.data", params=SquaresParams, factory=lambda params, ctx: SquaresData())


SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "run"
[data]
type = "squares.data"
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.image]
type = "clip.vit"
image_size = 16
patch = 8
width = 32
layers = 1
embed_dim = 16
[encoders.text]
type = "clip.text-transformer"
context_length = 8
width = 32
layers = 1
embed_dim = 16
[scorer]
type = "core.cosine"
temperature = 0.1
[loss]
type = "core.clip"
label_aware = true
[trainer]
epochs = 4
lr = 3e-3
weight_decay = 0.0
progress = false
[[evaluate]]
type = "clip.zero-shot"
prompts = ["a {{}} square"]
examples = 3
[[evaluate]]
type = "clip.retrieval"
ks = [1, 2]
"""


@pytest.mark.slow  # about 10-20 s on two CPU cores
def test_tiny_clip_trains_and_evaluates(tmp_path):
    host = PluginHost(strict=True)
    host.register(SquaresPlugin, name="squares")
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC.format(out=tmp_path / "runs"))
    result = train(spec_path, host=host, log=lambda line: None)
    r = result.results
    assert r["zero-shot/test/chance"] == 0.25
    # four colours are easy: the tiny model must be far above chance after 32 steps
    assert r["zero-shot/test/top1"] >= 0.75, r
    assert r["retrieval/test/i2t@1"] >= 0.75, r
    assert (result.run_dir / "plots" / "zero-shot-test.png").is_file()
    assert (result.run_dir / "model.safetensors").is_file()
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert losses[-1] < losses[0]


@pytest.mark.slow  # about 10 s on two CPU cores
def test_leaving_cached_rows_out_of_prepare_trains_the_same_weights(tmp_path, monkeypatch):
    """Three epochs of a frozen-trunk ensemble through the trainer (prefetch thread included): with the rows
    the feature cache serves left out of ``prepare``, without, and prepared in two worker processes
    (``trainer.data_processes``: every row prepared there, cached rows still served here by key), the weights
    are bit-identical."""
    from safetensors.torch import load_file

    import cl_clip.image_tower
    from cl_clip.image_tower import ImageTower

    host = PluginHost(strict=True)
    host.register(SquaresPlugin, name="squares")
    spec = SPEC.replace("""type = "clip.vit"
image_size = 16
patch = 8
width = 32
layers = 1
""", """type = "clip.efficientnet-ensemble"
pretrained = false
trunks = [{{variant = "lite0", image_size = 32}}, {{variant = "lite0", image_size = 48}}]
""").replace("epochs = 4", "epochs = 3")
    skipped = []
    prepare_images = cl_clip.image_tower.prepare_images

    def counting(items, size, **kw):
        skipped.append(sum(kw.get("skip") or ()))
        return prepare_images(items, size, **kw)

    monkeypatch.setattr(cl_clip.image_tower, "prepare_images", counting)
    weights = {}
    for name, leave_out in (("left-out", None), ("processes", None), ("full", False)):
        if leave_out is not None:
            monkeypatch.setattr(ImageTower, "leaves_out_cached_rows", property(lambda self: False))
        (tmp_path / name).mkdir()
        spec_path = tmp_path / name / "spec.toml"
        text = spec.format(out=tmp_path / name / "runs")
        spec_path.write_text(text.replace("[trainer]", "[trainer]\ndata_processes = 2") if name == "processes"
                             else text)
        result = train(spec_path, host=host, log=lambda line: None)
        weights[name] = load_file(result.run_dir / "model.safetensors")
        if name == "left-out":
            # epochs 2 and 3 (16 batches of 16 rows, two members) and the evaluation's second look at the test
            # images are served from the cache
            assert sum(skipped) >= 2 * 16 * 16, sum(skipped)
        if name != "full":
            skipped.clear()  # (the processes' evaluation, in this process, leaves rows out as well)
    assert sum(skipped) == 0  # "full": nothing left out
    for other in ("processes", "full"):
        assert weights["left-out"].keys() == weights[other].keys()
        for key, value in weights["left-out"].items():
            assert torch.equal(value, weights[other][key]), (other, key)
