"""Fixtures of the cl-coca tests (offline, CPU, seconds): a shapes dataset with two-word captions, a plugin host
with it beside the installed plugins, and a tiny CoCa spec writer."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from attrs import frozen

from cl_core.api import ComponentInfo, Dataset, DataSource, hookimpl

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220)}
SHAPES = ("square", "bar")


class Shapes(DataSource):
    """A red, green or blue square or bar on white, 32 px; caption "<colour> <shape>"; label = the pair."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.fields = ("image", "text")
        self.class_names = [f"{c} {s}" for c in COLOURS for s in SHAPES]
        self.labels = rng.integers(0, len(self.class_names), n).astype(np.int64)
        self._images = []
        for label in self.labels:
            colour, shape = self.class_names[label].split()
            a = np.full((32, 32, 3), 255, dtype=np.uint8)
            x, y = rng.integers(2, 8, 2)
            h = 20 if shape == "square" else 6
            a[y : y + h, x : x + 20] = COLOURS[colour]
            self._images.append(a)

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices):
        return {"image": [self._images[i] for i in indices], "text": [self.class_names[self.labels[i]] for i in indices]}


class ShapesData(Dataset):
    def __init__(self) -> None:
        self._splits = {"train": Shapes(96, 0), "heldout": Shapes(24, 1)}

    def splits(self):
        return self._splits


@frozen(kw_only=True)
class ShapesParams:
    """``shapes.data``: coloured squares and bars (no parameters)."""


class ShapesPlugin:
    @staticmethod
    @hookimpl
    def cl_datasets():
        yield ComponentInfo(name="shapes.data", params=ShapesParams, factory=lambda params, ctx: ShapesData())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def host():
    from cl_core.api import PluginHost

    h = PluginHost(only=["coca", "clip", "lm", "captions"], strict=True)
    h.register(ShapesPlugin(), name="shapes")
    return h


SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "{name}"
[data]
type = "shapes.data"
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.image]
type = "coca.image"
trunk = "vit"
image_size = 32
patch = 8
vit_width = 32
vit_layers = 1
vit_heads = 2
width = 32
heads = 2
caption_queries = 4
caption_width = 32
embed_dim = 16
[encoders.text]
type = "coca.text"
layers = 1
width = 32
heads = 2
context = 16
embed_dim = 16
[decoder]
type = "coca.captioner"
layers = 1
method = "greedy"
[scorer]
type = "core.cosine"
temperature = 0.1
learn_temperature = true
[[objective]]
type = "core.contrastive"
name = "contrastive"
loss = {{ type = "core.clip" }}
[[objective]]
type = "core.caption"
name = "caption"
condition = "image"
target = "text"
weight = 2.0
[trainer]
epochs = {epochs}
lr = 3e-3
warmup_steps = 0
progress = false
plots = false
{trainer}
{extra}
"""


@pytest.fixture
def make_spec(tmp_path):
    """``make_spec(name=..., epochs=..., trainer=..., extra=...)`` -> (spec path, output folder)."""

    def make(name: str = "coca", epochs: int = 2, trainer: str = "", extra: str = ""):
        out = tmp_path / "runs"
        path = tmp_path / f"{name}.toml"
        path.write_text(SPEC.format(out=out.as_posix(), name=name, epochs=epochs, trainer=trainer, extra=extra))
        return path, out

    return make
