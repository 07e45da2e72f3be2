"""Shared fixtures: an isolated plugin host with the in-process toy plugin, and toy spec text."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def toy_host():
    from cl_core.plugins import PluginHost
    from cl_core.testing import toy

    host = PluginHost(autoload=False)
    host.register(toy, name="toy")
    return host


@pytest.fixture
def toy_spec(tmp_path):
    """Write a toy spec into tmp_path and return (path, output_dir)."""

    def make(extra: str = "", *, epochs: int = 3, checkpoint_every: int = 0, name: str = "run") -> tuple:
        out = tmp_path / "runs"
        text = f"""
format = 1
[run]
seed = 0
output_dir = "{out}"
name = "{name}"
[data]
type = "toy.pairs"
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.a]
type = "toy.linear"
[encoders.b]
type = "toy.linear"
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
[trainer]
epochs = {epochs}
lr = 0.01
checkpoint_every = {checkpoint_every}
progress = false
plots = false
{extra}
"""
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path, out

    return make


HUB_TOKEN = "hf_test_writer"


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A Hub-compatible server on 127.0.0.1 (:class:`cl_core.testing.hub.FakeHub`), with ``HF_ENDPOINT``
    pointing at it, the network allowed (the suite is offline otherwise), an empty ``HF_HOME`` in
    ``tmp_path`` and no token in the environment. The writer token is ``HUB_TOKEN`` (user ``tester``)."""
    from cl_core.testing.hub import serve_fake_hub

    with serve_fake_hub(monkeypatch, tmp_path / "hf-home", tokens={HUB_TOKEN: "tester"}) as hub:
        yield hub
