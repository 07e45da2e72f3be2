"""The pretrained MiniLM tower: its trunk embedding is a working sentence encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cl_clip import params as P
from cl_clip.minilm import MiniLM
from cl_core.hf import mean_pool


def test_mean_pool_ignores_padding():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(states, mask), torch.tensor([[2.0, 3.0]]))


@pytest.mark.slow  # loads transformers and 90 MB of weights (about 6 s)
def test_pretrained_trunk_ranks_paraphrase_above_unrelated():
    tower = MiniLM(P.MiniLMParams())
    feats = F.normalize(tower.embed_features([
        "A dog runs on the grass.", "A puppy is running in a field.", "The stock market fell sharply today.",
    ]), dim=-1)
    assert feats.shape == (3, 384)
    paraphrase, unrelated = float(feats[0] @ feats[1]), float(feats[0] @ feats[2])
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)
    # the reference values of all-MiniLM-L6-v2 (sentence-transformers): 0.61 and 0.10
    assert abs(paraphrase - 0.61) < 0.02 and abs(unrelated - 0.11) < 0.03
    # frozen by default: only the projection trains, and embedding twice reuses cached features
    assert not tower.trunk_trains and tower.proj.weight.requires_grad
    assert tower.cache_len == 3


@pytest.mark.slow  # loads transformers and 90 MB of weights (about 6 s)
def test_building_the_tower_reads_the_packaged_files_and_leaves_the_environment_alone(monkeypatch):
    import os
    import socket

    from safetensors.torch import load_file

    from cl_core.hf import minilm_dir

    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # as in a user's shell: offline mode is not on
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read by huggingface_hub at import time

    def no_network(*args, **kwargs):
        raise AssertionError("building the MiniLM tower tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    before = dict(os.environ)
    tower = MiniLM(P.MiniLMParams())
    # offline mode stays off for the rest of the process (a later from_pretrained("org/name") or push works)
    assert "HF_HUB_OFFLINE" not in os.environ and dict(os.environ) == before
    packaged = load_file(str(minilm_dir() / "model.safetensors"))["embeddings.word_embeddings.weight"]
    assert torch.equal(tower.trunk.embeddings.word_embeddings.weight.detach(), packaged)
