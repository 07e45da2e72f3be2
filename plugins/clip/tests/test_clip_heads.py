"""Projection heads, multi-level EfficientNet features and flip augmentation with the feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl_clip import params as P
from cl_clip.efficientnet import FEATURE_DIM, EfficientNetLite
from cl_clip.image_tower import MIRROR_KEY
from cl_clip.minilm import MiniLM
from cl_clip.tower import projection_head


def _efficientnet(**kw) -> EfficientNetLite:
    return EfficientNetLite(P.EfficientNetParams(image_size=32, embed_dim=16, pretrained=False, **kw))


@pytest.fixture
def arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]


def test_pool_blocks_concatenate_block_means_before_the_head(arrays):
    tower = _efficientnet(pool_blocks=(10, 14, 15), cache_features=False).eval()
    assert tower.feature_dim == FEATURE_DIM + 112 + 192 + 320
    prepared = tower.prepare(arrays)
    with torch.no_grad():
        feats = tower.features(prepared)
        head_only = tower.trunk.extract_features(tower.pixels(prepared)).mean(dim=(2, 3))
    assert feats.shape == (4, tower.feature_dim)
    torch.testing.assert_close(feats[:, -FEATURE_DIM:], head_only)  # the last 1280 are the plain head feature


def test_mlp_head_standardises_and_trains(arrays):
    tower = _efficientnet(head="mlp", head_hidden=32, head_dropout=0.5).train()
    out = tower.encode(tower.prepare(arrays))
    assert out.shape == (4, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in tower.proj.parameters())
    assert not any(p.requires_grad for p in tower.trunk.parameters())


def test_head_none_keeps_the_trunk_space_and_checks_width():
    with pytest.raises(ValueError, match="embed_dim = 384"):
        projection_head("none", 384, 256)
    with pytest.raises(ValueError, match="'linear', 'mlp' or 'none'"):
        projection_head("conv", 8, 8)
    tower = MiniLM(P.MiniLMParams(pretrained=False, head="none", embed_dim=384)).eval()
    texts = ["a dog", "a cat"]
    with torch.no_grad():
        torch.testing.assert_close(tower.encode(tower.prepare(texts)), tower.embed_features(texts))


def test_flip_is_test_time_augmentation_in_eval(arrays):
    tower = _efficientnet(flip=True, cache_features=False).eval()
    plain = _efficientnet(cache_features=False).eval()
    plain.load_state_dict(tower.state_dict())
    mirrored = [a[:, ::-1].copy() for a in arrays]
    with torch.no_grad():
        got = tower.encode(tower.prepare(arrays))
        expected = F.normalize(plain.encode(plain.prepare(arrays)), dim=-1) + F.normalize(
            plain.encode(plain.prepare(mirrored)), dim=-1)
        # a mirrored image gives the same test-time embedding
        again = tower.encode(tower.prepare(mirrored))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again, got, rtol=1e-5, atol=1e-6)


def test_flip_in_training_caches_each_orientation_once(arrays):
    tower = _efficientnet(flip=True).train()
    prepared = tower.prepare(arrays)
    keys = set(prepared["key"].tolist())
    for _ in range(8):  # with 4 images, 8 draws see both orientations of each with near certainty
        tower.encode(prepared)
    cached = set(tower.feature_cache.keys())
    assert cached <= keys | {k ^ MIRROR_KEY for k in keys}
    assert len(cached) == 2 * len(arrays)
    # the cached rows are the mirrored images' features, not the originals'
    with torch.no_grad():
        mirrored = tower.prepare([a[:, ::-1].copy() for a in arrays])
        direct = tower.features({"pixels": mirrored["pixels"]})
    cached_rows = torch.stack([tower.feature_cache.peek(k ^ MIRROR_KEY) for k in prepared["key"].tolist()])
    torch.testing.assert_close(cached_rows, direct, rtol=1e-4, atol=1e-5)
