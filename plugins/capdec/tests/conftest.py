"""Fixtures of the cl-capdec tests (offline, CPU, seconds): a tiny saved LM run, a toy contrastive run whose
towers embed vectors (role ``a``, the "images") and class names (role ``text``), and a plugin host with the toy
plugin beside the installed ones."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

LM_SPEC = """
format = 1
[run]
device = "cpu"
[decoder]
type = "lm.gpt2"
tokenizer = "bytes"
context = 64
layers = 2
width = 32
heads = 2
"""

CLIP_SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "clip"
[data]
type = "toy.pairs"
captions = true
classes = 6
size = 96
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.a]
type = "toy.linear"
embed_dim = 8
[encoders.text]
type = "toy.chars"
embed_dim = 8
[scorer]
type = "core.cosine"
temperature = 0.1
[loss]
type = "core.clip"
[trainer]
epochs = 2
lr = 0.02
progress = false
plots = false
"""


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def host():
    """Installed plugins (lm, capdec, captions, ...) plus the in-process toy plugin."""
    from cl_core.plugins import PluginHost
    from cl_core.testing import toy

    h = PluginHost(only=["lm", "capdec", "captions", "datasets"], strict=True)
    h.register(toy, name="toy")
    return h


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory) -> Path:
    """A saved ``lm.gpt2`` (bytes tokenizer, 2 blocks of width 32, context 64) trained (150 steps) on the toy
    captions "class 0" ... "class 5", so that a prefix can steer it even when it is frozen."""
    from cl_core.build import build_pipeline
    from cl_core.plugins import PluginHost
    from cl_core.spec import loads_spec
    from cl_core.weights import save_pretrained

    torch.manual_seed(0)
    registry = PluginHost(only=["lm"], strict=True).registry()
    pipeline = build_pipeline(loads_spec(LM_SPEC, registry), registry, with_data=False, weights_follow=False)
    lm = pipeline.decoder
    rows = lm.lm_rows([f"class {i}" for i in range(6)] * 4, pack=False)
    optimizer = torch.optim.Adam(lm.parameters(), lr=1e-2)
    lm.train()
    for _ in range(150):
        loss = lm.lm_loss(rows["ids"], rows["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("lm") / "lm-run"
    save_pretrained(pipeline.eval(), folder)
    return folder


@pytest.fixture(scope="session")
def clip_run(tmp_path_factory, host) -> Path:
    """A toy contrastive run: ``a`` (vectors of 6 classes) and ``text`` (their names "class i"), 8-dim."""
    from cl_core.runs import train

    out = tmp_path_factory.mktemp("clip")
    spec = out / "clip.toml"
    spec.write_text(CLIP_SPEC.format(out=out / "runs"))
    return train(spec, host=host, log=lambda m: None).run_dir


@pytest.fixture(scope="session")
def other_clip_run(tmp_path_factory, host) -> Path:
    """The toy contrastive run again with another seed: the same widths, another space."""
    from cl_core.runs import train

    out = tmp_path_factory.mktemp("clip2")
    spec = out / "clip.toml"
    spec.write_text(CLIP_SPEC.format(out=out / "runs").replace("seed = 0", "seed = 5"))
    return train(spec, host=host, log=lambda m: None).run_dir


def decoder_spec(*, out: Path, lm: Path, clip: Path, kind: str = "clipcap", decoder: str = "", trainer: str = "",
                 name: str = "dec", evaluate: str = "", data: str = "", cache: bool = True) -> str:
    """A decoder spec over the toy run: ClipCap trains on ``a`` (the "images"), CapDec on ``text``."""
    condition = "a" if kind == "clipcap" else "text"
    extra = 'image_role = "a"\n' if kind == "capdec" else ""
    return f"""
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "{name}"
[data]
type = "toy.pairs"
captions = true
classes = 6
size = 96
{data}
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.a]
type = "core.from-run"
source = "{clip}"
cache = {str(cache).lower()}
[encoders.text]
type = "core.from-run"
source = "{clip}"
cache = {str(cache).lower()}
[decoder]
type = "capdec.{kind}"
lm = "{lm}"
condition = "{condition}"
prefix_length = 3
clip_length = 3
mapper_layers = 1
mapper_heads = 2
{extra}{decoder}
[[objective]]
type = "core.caption"
condition = "{condition}"
target = "text"
[trainer]
epochs = 2
lr = 0.003
progress = false
plots = false
{trainer}
{evaluate}
"""


@pytest.fixture
def make_spec(tmp_path, lm_run, clip_run):
    """Write :func:`decoder_spec` (keyword overrides) to ``tmp_path/<name>.toml``; returns (path, runs folder)."""

    def write(**kw):
        kw.setdefault("out", tmp_path / "runs")
        kw.setdefault("lm", lm_run)
        kw.setdefault("clip", clip_run)
        path = tmp_path / f"{kw.get('name', 'dec')}.toml"
        path.write_text(decoder_spec(**kw))
        return path, kw["out"]

    return write
