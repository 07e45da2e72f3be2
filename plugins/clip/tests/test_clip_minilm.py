"""The pretrained MiniLM tower: its trunk embedding is a working sentence encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cl_clip import params as P
from cl_clip.minilm import MiniLM, mean_pool


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
