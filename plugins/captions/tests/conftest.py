"""Shared fixtures of the cl-captions tests: a plugin host with the toy plugin and this one, and a toy pipeline
whose decoder names classes (offline, CPU, tiny)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def toy_host():
    import cl_captions.plugin
    from cl_core.api import PluginHost
    from cl_core.testing import toy

    host = PluginHost(autoload=False)
    host.register(toy, name="toy")
    host.register(cl_captions.plugin, name="captions")
    return host


TOY = """
format = 1
[run]
device = "cpu"
[data]
type = "toy.pairs"
captions = true
classes = 6
size = 48
[encoders.a]
type = "toy.linear"
[encoders.text]
type = "toy.chars"
[decoder]
type = "toy.class-names"
classes = 6
{extra}
"""


@pytest.fixture
def toy_pipeline(toy_host):
    """Build the toy spec (plus ``extra`` TOML) into a pipeline: roles ``a`` (vectors) and ``text``, a decoder that
    names one of 6 classes ("class 0" ... "class 5"), and the toy data (held-out texts are the class names)."""
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec

    def make(extra: str = ""):
        registry = toy_host.registry()
        return build_pipeline(loads_spec(TOY.format(extra=extra), registry), registry)

    return make
