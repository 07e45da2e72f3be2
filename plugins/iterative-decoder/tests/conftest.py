"""Shared fixtures of the cl-iterative-decoder tests (offline, CPU, seconds): a tiny byte-level LM and the toy
character text tower of cl_core.testing, whose queries the decoders steer toward."""

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
def lm():
    """A tiny ``lm.gpt2`` (byte tokenizer, 2 blocks of width 32, context 48), random weights, eval mode, whose end
    token gets a logit of about 0.3 * (1 + z), z one feature of the final state: rows end at different steps
    (greedy from "hello" ends after 8 tokens, from "cat" after 3, from "ab" not within 12)."""
    from cl_lm.testing import tiny_lm

    lm = tiny_lm(seed=3)
    eos = lm.tokenizer.eos_id
    with torch.no_grad():  # output layer tied to the token embeddings: the end token's row sets its logit
        lm.model.transformer.wte.weight[eos].zero_()
        lm.model.transformer.wte.weight[eos, 0] = 0.3
        lm.model.transformer.ln_f.weight[0] = 1.0
        lm.model.transformer.ln_f.bias[0] = 1.0
    return lm


@pytest.fixture
def tower():
    """The toy character text encoder (``toy.chars``, 8-dim), random weights, eval mode."""
    from cl_core.testing import toy

    torch.manual_seed(1)
    return toy.build_chars(toy.ToyCharsParams(embed_dim=8), None).eval()


@pytest.fixture
def host():
    import cl_iterative_decoder.plugin
    import cl_lm.plugin
    from cl_core.api import PluginHost
    from cl_core.testing import toy

    h = PluginHost(autoload=False)
    h.register(toy, name="toy")
    h.register(cl_lm.plugin, name="lm")
    h.register(cl_iterative_decoder.plugin, name="iterative")
    return h


@pytest.fixture
def lm_folder(host, tmp_path):
    """A saved ``lm.gpt2`` run folder (byte tokenizer, 2 blocks of width 32, random weights): what ``lm = ...``
    names."""
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec
    from cl_core.weights import save_pretrained

    registry = host.registry()
    spec = loads_spec('[decoder]\ntype = "lm.gpt2"\ntokenizer = "bytes"\ncontext = 48\nlayers = 2\nwidth = 32\n'
                      'heads = 2', registry)
    torch.manual_seed(3)
    save_pretrained(build_pipeline(spec, registry), tmp_path / "lm")
    return tmp_path / "lm"
