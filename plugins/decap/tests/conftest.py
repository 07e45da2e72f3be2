"""Shared fixtures of the cl-decap tests (offline, CPU, seconds): a plugin host with the toy plugin, cl-lm,
cl-captions and this plugin; a tiny DeCap built on the toy character text encoder with a tiny byte-level LM; and
toy "contrastive runs" whose towers a DeCap spec takes with ``core.from-run``."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tests import decap_helpers (pytest's importlib mode)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def host():
    import cl_captions.plugin
    import cl_decap.plugin
    import cl_lm.plugin
    from cl_core.api import PluginHost
    from cl_core.testing import toy

    h = PluginHost(autoload=False)
    h.register(toy, name="toy")
    h.register(cl_lm.plugin, name="lm")
    h.register(cl_captions.plugin, name="captions")
    h.register(cl_decap.plugin, name="decap")
    return h


CLIP_SPEC = """
format = 1
[run]
seed = {seed}
device = "cpu"
output_dir = "{out}"
name = "{name}"
[data]
type = "toy.pairs"
captions = true
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.a]
type = "toy.linear"
[encoders.text]
type = "toy.chars"
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
[trainer]
epochs = 2
lr = 0.01
progress = false
plots = false
"""


@pytest.fixture
def clip_run(tmp_path, host):
    """Train a toy contrastive "CLIP" run (roles ``a`` = toy.linear, the "images", ``text`` = toy.chars) and return its
    directory; ``clip_run(seed=1)`` trains another one (other weights)."""
    from cl_core.api import train

    def make(seed: int = 0) -> Path:
        name = f"clip-{seed}"
        path = tmp_path / f"{name}.toml"
        path.write_text(CLIP_SPEC.format(seed=seed, out=tmp_path / "runs", name=name))
        return train(path, host=host, log=lambda m: None).run_dir

    return make
