"""Image and text towers: shapes, preprocessing, freezing, the feature cache, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cl_clip import params as P
from cl_clip.efficientnet import EfficientNetLite, fold_batchnorm
from cl_clip.minilm import MiniLM
from cl_clip.preprocess import CLIP_MEAN, CLIP_STD, normalize_pixels, prepare_images
from cl_clip.resnet import AttentionPool2d, ModifiedResNet
from cl_clip.text import TextTransformer
from cl_clip.transformer import AttentionPool
from cl_clip.vit import ViT

TINY = {
    "vit": lambda **kw: ViT(P.ViTParams(image_size=32, patch=8, width=64, layers=2, embed_dim=24, **kw)),
    "vit-attn": lambda **kw: ViT(P.ViTParams(image_size=32, patch=8, width=64, layers=2, embed_dim=24,
                                             pool="attention", **kw)),
    "resnet": lambda **kw: ModifiedResNet(P.ResNetParams(image_size=32, width=8, embed_dim=24, **kw)),
    "efficientnet": lambda **kw: EfficientNetLite(P.EfficientNetParams(image_size=32, embed_dim=24,
                                                                         pretrained=False, **kw)),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_image_tower_shapes(name, images):
    tower = TINY[name]()
    prepared = tower.prepare(images)
    assert prepared["pixels"].shape == (len(images), 3, 32, 32)
    assert prepared["pixels"].dtype == torch.uint8  # normalised on the device, in the tower
    out = tower.encode(prepared)
    assert out.shape == (len(images), 24)
    assert torch.isfinite(out).all()
    assert tower.modality == "image" and tower.embed_dim == 24


def test_text_tower_shapes(captions):
    for tower in (TextTransformer(P.TextTransformerParams(width=64, layers=2, embed_dim=24)),
                  MiniLM(P.MiniLMParams(pretrained=False, embed_dim=24))):
        out = tower.encode(tower.prepare(captions))
        assert out.shape == (len(captions), 24)
        assert tower.modality == "text"


def test_vit_param_count_matches_formula():
    w, layers, g, d = 64, 2, 4, 24
    tower = ViT(P.ViTParams(image_size=32, patch=8, width=w, layers=layers, embed_dim=d))
    block = 4 * w * w + 4 * w + 2 * 4 * w * w + 4 * w + w + 4 * w  # attn (qkv+out) + mlp + 2 LayerNorms
    expected = 3 * w * 8 * 8 + w + (g * g + 1) * w + 2 * w + layers * block + 2 * w + w * d
    assert sum(p.numel() for p in tower.parameters()) == expected


def test_attention_pools_shapes():
    pool = AttentionPool(64, heads=4)
    assert pool(torch.randn(3, 17, 64)).shape == (3, 64)
    pool2d = AttentionPool2d(spatial=2, channels=128, heads=2)
    assert pool2d(torch.randn(3, 128, 2, 2)).shape == (3, 128)
    with pytest.raises(ValueError, match="2x2 feature map"):
        pool2d(torch.randn(3, 128, 3, 3))


def test_attention_pool2d_query_is_mean_token():
    """With a zero positional embedding and identity projections, a single head returns the softmax
    average of the tokens weighted by their similarity to the mean token."""
    c = 4
    pool = AttentionPool2d(spatial=2, channels=c, heads=1)
    with torch.no_grad():
        pool.positional_embedding.zero_()
        for lin in (pool.q_proj, pool.k_proj, pool.v_proj):
            lin.weight.copy_(torch.eye(c))
            lin.bias.zero_()
    x = torch.randn(1, c, 2, 2)
    tokens = x.flatten(2).transpose(1, 2)[0]
    tokens = torch.cat([tokens.mean(0, keepdim=True), tokens])
    weights = torch.softmax(tokens[0] @ tokens.t() / c**0.5, dim=0)
    torch.testing.assert_close(pool(x)[0], weights @ tokens)


def test_resnet_output_stride_and_channels():
    tower = ModifiedResNet(P.ResNetParams(image_size=64, width=8, layers=(1, 2, 1, 1), embed_dim=16))
    fmap = tower.trunk.feature_map(torch.randn(2, 3, 64, 64))
    assert fmap.shape == (2, 8 * 32, 2, 2)
    assert len(tower.trunk.layer2) == 2


def test_wrong_pixel_shape_is_a_clear_error():
    tower = TINY["vit"]()
    with pytest.raises(ValueError, match=r"pixels must have shape \[B, 3, 32, 32\]"):
        tower.encode({"pixels": torch.randn(2, 3, 64, 64)})


# -- preprocessing ------------------------------------------------------------------------------------
def test_prepare_composites_alpha_on_white_and_normalises():
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    pixels = normalize_pixels(prepare_images([transparent], 8)["pixels"], CLIP_MEAN, CLIP_STD)
    expected = (1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(pixels[0, :, 3, 3], expected)


def test_prepare_center_crops_non_square():
    # left third red, middle third green, right third blue; the centre crop keeps mostly green
    a = np.zeros((30, 90, 3), dtype=np.uint8)
    a[:, :30, 0], a[:, 30:60, 1], a[:, 60:, 2] = 255, 255, 255
    pixels = normalize_pixels(prepare_images([a], 10)["pixels"], (0, 0, 0), (1, 1, 1))[0]
    assert pixels.shape == (3, 10, 10)
    assert pixels[1].mean() > 0.9 and pixels[0].mean() < 0.1 and pixels[2].mean() < 0.1


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
    (np.zeros((4, 4, 5), dtype=np.uint8), "shape"),
    ("not an image", "PIL image"),
])
def test_prepare_rejects_bad_items(bad, fragment):
    good = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"items\[1\]") as info:
        prepare_images([good, bad], 8)
    assert fragment in str(info.value)


# -- freezing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vit", "resnet", "efficientnet"])
def test_freeze_trains_only_the_projection(name, images):
    tower = TINY[name](freeze=True, cache_features=False)
    tower.train()
    assert not tower.trunk.training, "a frozen trunk must stay in eval mode"
    prepared = tower.prepare(images)
    bn_before = {k: v.clone() for k, v in tower.trunk.state_dict().items() if "running_mean" in k}
    tower.encode(prepared).square().sum().backward()
    assert all(p.grad is None for p in tower.trunk.parameters())
    assert tower.proj.weight.grad is not None and tower.proj.weight.grad.abs().sum() > 0
    for k, v in bn_before.items():  # BatchNorm statistics are frozen too
        torch.testing.assert_close(tower.trunk.state_dict()[k], v)


def test_unfrozen_tower_trains_its_trunk(images):
    tower = TINY["resnet"]()
    tower.encode(tower.prepare(images)).square().sum().backward()
    assert tower.trunk.conv1.weight.grad is not None
    assert "key" not in tower.prepare(images)  # no cache keys for a training trunk


def test_minilm_trainable_top_layers(captions):
    tower = MiniLM(P.MiniLMParams(pretrained=False, trainable_layers=2, embed_dim=8))
    tower.train()
    bert = tower.trunk
    assert not bert.embeddings.training and not bert.encoder.layer[3].training
    assert bert.encoder.layer[4].training and bert.encoder.layer[5].training
    prepared = tower.prepare(captions)
    assert "key" not in prepared  # trunk layers train: no feature cache
    tower.encode(prepared).square().sum().backward()
    assert bert.embeddings.word_embeddings.weight.grad is None
    assert all(p.grad is None for p in bert.encoder.layer[3].parameters())
    assert all(p.grad is not None for p in bert.encoder.layer[4].parameters())
    assert tower.proj.weight.grad is not None
    with pytest.raises(ValueError, match="exceeds"):
        MiniLM(P.MiniLMParams(pretrained=False, trainable_layers=7))


def test_efficientnet_trainable_blocks_tune_the_tail_of_a_frozen_trunk(images):
    """``trainable_blocks = 2``: blocks 14-15 of Lite0 and the head convolution train (train mode, gradients,
    BatchNorm statistics that move); the stem and blocks 0-13 stay locked; no cache keys."""
    tower = EfficientNetLite(P.EfficientNetParams(image_size=32, embed_dim=8, pretrained=False, trainable_blocks=2))
    tower.train()
    trunk = tower.trunk
    training = {n.split(".")[1] + ("." + n.split(".")[2] if n.startswith("trunk._blocks") else "")
                for n, p in tower.named_parameters() if p.requires_grad and n.startswith("trunk.")}
    assert training == {"_blocks.14", "_blocks.15", "_conv_head", "_bn1"}
    assert not trunk._bn0.training and not trunk._blocks[13].training and trunk._blocks[14].training
    prepared = tower.prepare(images)
    assert "key" not in prepared
    locked_stats = trunk._blocks[13]._bn2.running_mean.clone()
    tuned_stats = trunk._blocks[15]._bn2.running_mean.clone()
    tower.encode(prepared).square().sum().backward()
    assert all(p.grad is None for p in trunk._blocks[13].parameters()) and trunk._conv_stem.weight.grad is None
    assert all(p.grad is not None for p in trunk._blocks[15].parameters() if p.requires_grad)
    assert trunk._conv_head.weight.grad.abs().sum() > 0
    assert torch.equal(trunk._blocks[13]._bn2.running_mean, locked_stats)
    assert not torch.equal(trunk._blocks[15]._bn2.running_mean, tuned_stats)
    with pytest.raises(ValueError, match="has 16 blocks"):
        P.EfficientNetParams(trainable_blocks=17)
    with pytest.raises(ValueError, match="set freeze = true"):
        P.EfficientNetParams(trainable_blocks=1, freeze=False)


# -- feature cache ------------------------------------------------------------------------------------
def _count_trunk_rows(tower):
    calls = []
    original = tower.features

    def counting(inputs):
        calls.append(next(iter(inputs.values())).shape[0])
        return original(inputs)

    tower.features = counting
    return calls


def test_feature_cache_reuses_frozen_trunk_features(images):
    tower = TINY["efficientnet"]()  # frozen by default
    reference = TINY["efficientnet"](cache_features=False)
    reference.load_state_dict(tower.state_dict())
    batch = images + images[:2]  # two repeated items in one batch
    prepared = tower.prepare(batch)
    assert "key" in prepared and prepared["key"].shape == (len(batch),)
    calls = _count_trunk_rows(tower)
    first = tower.encode(prepared)
    assert calls == [len(images)], "the trunk runs once per distinct image"
    assert tower.cache_len == len(images)
    second = tower.encode(tower.prepare(batch))
    assert calls == [len(images)], "a second pass is served from the cache"
    torch.testing.assert_close(first, second)
    expected = reference.encode(reference.prepare(batch))
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)
    # gradients still reach the projection on cached rows
    first.square().sum().backward()
    assert tower.proj.weight.grad is not None


def test_feature_cache_cleared_on_load_and_evicts(images):
    tower = TINY["vit"](freeze=True)
    tower.encode(tower.prepare(images))
    assert tower.cache_len == len(images)
    tower.load_state_dict(tower.state_dict())
    assert tower.cache_len == 0
    tower.feature_cache.capacity = 2
    tower.encode(tower.prepare(images))
    assert tower.cache_len == 2


def test_cached_rows_are_left_out_of_prepare_and_embed_the_same(images):
    tower = TINY["efficientnet"]().train()  # frozen trunk: cached even while the head trains
    calls = _count_trunk_rows(tower)
    first = tower.encode(tower.prepare(images))
    again = tower.prepare(images)
    assert again["ready"].tolist() == [False] * len(images)
    assert not again["pixels"].any(), "nothing is resized for rows the cache serves"
    assert torch.equal(tower.encode(again), first)
    assert calls == [len(images)]
    assert not tower.feature_cache.num_claimed, "claims are released once their batch is encoded"


@pytest.mark.parametrize("loss", ["cleared", "evicted"])
def test_a_left_out_row_that_the_cache_lost_is_prepared_when_encoded(images, loss):
    tower = TINY["efficientnet"]().eval()
    first = tower.encode(tower.prepare(images))
    prepared = tower.prepare(images)  # claims every row: all cached now
    assert not prepared["ready"].any()
    if loss == "cleared":
        tower.load_state_dict(tower.state_dict())  # new weights clear the cache
    else:
        tower.feature_cache.capacity = 2
        tower.encode(tower.prepare(images[:1]))
        tower.encode(tower.prepare([np.full((8, 8, 3), v, dtype=np.uint8) for v in (1, 2)]))  # evicts the rest
    calls = _count_trunk_rows(tower)
    assert torch.equal(tower.encode(prepared), first)
    assert calls == [len(images)], "every lost row is prepared from its claimed item and runs the trunk"
    assert not tower.feature_cache.num_claimed


def test_a_frozen_encoder_around_a_tower_gives_back_the_towers_claims(images):
    from cl_core.frozen import FrozenEncoder

    tower = TINY["efficientnet"]()
    frozen = FrozenEncoder(tower).train()
    assert not tower.training and not any(p.requires_grad for p in frozen.parameters())
    first = frozen.encode(frozen.prepare(images))
    again = frozen.prepare(images)  # the tower leaves every row out and claims it; the wrapper serves them all
    assert not again["ready"].any() and "encoder.key" in again
    calls = _count_trunk_rows(tower)
    assert torch.equal(frozen.encode(again), first)
    assert calls == [] and not tower.feature_cache.num_claimed


def test_a_tower_with_a_warm_cache_can_be_copied_and_pickled(images):
    import copy
    import pickle

    tower = TINY["efficientnet"]().eval()
    first = tower.encode(tower.prepare(images))
    tower.prepare(images)  # claims in flight stay with the original
    for twin in (copy.deepcopy(tower), pickle.loads(pickle.dumps(tower))):
        assert twin.cache_len == len(images) and not twin.feature_cache.num_claimed
        assert torch.equal(twin.encode(twin.prepare(images)), first)


@pytest.mark.parametrize("views", [{"flip": True}, {"augment": True}, {"cache_features": False}])
def test_random_views_or_no_cache_keep_every_rows_pixels(images, views):
    tower = TINY["efficientnet"](**views).eval()
    tower.encode(tower.prepare(images))
    again = tower.prepare(images)
    assert "ready" not in again and again["pixels"].any()


def test_image_keys_tell_apart_size_content_and_palette():
    from cl_clip.preprocess import image_digest, image_keys

    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert image_digest(a) == image_digest(a.copy())
    assert image_digest(a) != image_digest(a[::-1].copy())
    p1, p2 = Image.new("P", (4, 4)), Image.new("P", (4, 4))
    p2.putpalette([255, 0, 0] * 256)
    assert image_digest(p1) != image_digest(p2), "same indices, different colours"
    digests = [image_digest(a)]
    assert image_keys(digests, 32).tolist() != image_keys(digests, 64).tolist()
    with pytest.raises(ValueError, match=r"items\[3\]: expected a PIL image"):
        image_digest("not an image", 3)


def test_text_cache_keys_by_string(captions):
    tower = TextTransformer(P.TextTransformerParams(width=64, layers=2, freeze=True))
    calls = _count_trunk_rows(tower)
    a = tower.encode(tower.prepare(captions))
    b = tower.encode(tower.prepare(list(reversed(captions))))
    assert calls == [len(captions)]
    torch.testing.assert_close(a, b.flip(0))


# -- augmentation ---------------------------------------------------------------------------------------
def test_augmentation_only_in_training_and_never_cached(images):
    tower = TINY["vit"](freeze=True, augment=True)
    prepared = tower.prepare(images)
    tower.train()
    a, b = tower.encode(prepared), tower.encode(prepared)
    assert not torch.allclose(a, b), "training-mode augmentation is random"
    assert tower.cache_len == 0, "augmented features must not be cached"
    tower.eval()
    c, d = tower.encode(prepared), tower.encode(prepared)
    torch.testing.assert_close(c, d)


def test_augment_identity_settings_and_range():
    from cl_clip.augment import ImageAugment

    x = torch.rand(4, 3, 16, 16)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    z = (x - mean) / std
    same = ImageAugment(CLIP_MEAN, CLIP_STD, scale=(1, 1), ratio=(1, 1), degrees=0, jitter=0)
    torch.testing.assert_close(same(z), z, atol=1e-4, rtol=1e-4)
    out = ImageAugment(CLIP_MEAN, CLIP_STD, jitter=0.5)(z) * std + mean
    assert out.shape == z.shape and out.min() >= -1e-5 and out.max() <= 1 + 1e-5


def test_color_jitter_matches_sequential_definition():
    """The fused colour map equals brightness, then contrast, then saturation applied one by one."""
    from cl_clip.augment import ImageAugment

    aug = ImageAugment((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), p_color=1.0)
    x = torch.rand(5, 3, 8, 8)
    torch.manual_seed(3)
    a, o = aug._color_map(x)
    got = (torch.einsum("bij,bjhw->bihw", a, x) + o[:, :, None, None]).clamp(0, 1)
    torch.manual_seed(3)
    torch.rand(5)
    f = 1 + 0.2 * (2 * torch.rand(5, 3) - 1)
    gray = lambda t: 0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3]  # noqa: E731
    y = x * f[:, 0, None, None, None]
    m = gray(y).mean(dim=(2, 3), keepdim=True)
    y = m + f[:, 1, None, None, None] * (y - m)
    g = gray(y)
    y = (g + f[:, 2, None, None, None] * (y - g)).clamp(0, 1)
    torch.testing.assert_close(got, y, atol=1e-5, rtol=1e-5)


def test_efficientnet_pretrained_weights_load(images):
    tower = EfficientNetLite(P.EfficientNetParams(image_size=64, embed_dim=8))
    random = EfficientNetLite(P.EfficientNetParams(image_size=64, embed_dim=8, pretrained=False))
    stem = tower.trunk._conv_stem.weight
    assert not torch.allclose(stem, random.trunk._conv_stem.weight)
    feats = tower.embed_features(images[:3])
    assert feats.shape == (3, 1280) and torch.isfinite(feats).all()
    assert sum(p.numel() for p in tower.trunk.parameters()) == 3_371_008  # Lite0 without its classifier


def test_efficientnet_without_gradients_runs_folded_batchnorm_with_the_same_features(images):
    tower = EfficientNetLite(P.EfficientNetParams(image_size=64, embed_dim=8, pool_blocks=(4, 15)))
    prepared = tower.prepare(images)
    with torch.no_grad():
        folded = tower.features(prepared)
    with torch.enable_grad():  # the trunk's own BatchNorm layers (eval mode: ImageNet statistics)
        eager = tower.features(prepared)
    assert folded.shape == (len(images), 1280 + 40 + 320)
    torch.testing.assert_close(folded, eager, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in tower._inference_trunk().modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in tower.trunk.modules()), "the trunk itself is untouched"
    assert not any(k.startswith("_folded") for k in tower.state_dict()), "the folded copy is never saved"


def test_efficientnet_folded_trunk_follows_new_trunk_weights(images):
    tower = EfficientNetLite(P.EfficientNetParams(image_size=64, embed_dim=8, pretrained=False, cache_features=False))
    imagenet = EfficientNetLite(P.EfficientNetParams(image_size=64, embed_dim=8, cache_features=False))
    prepared = tower.prepare(images)
    with torch.no_grad():
        before = tower.features(prepared)
        tower.load_state_dict(imagenet.state_dict())
        loaded = tower.features(prepared)
        torch.testing.assert_close(loaded, imagenet.features(prepared))
        assert (loaded - before).abs().max() > 0.1 * loaded.abs().max()
        tower.trunk._bn1.running_mean.add_(0.5)  # an in-place write, as BatchNorm statistics get
        moved = tower.features(prepared)
        assert (moved - loaded).abs().max() > 0.01 * loaded.abs().max()
    with torch.enable_grad():
        torch.testing.assert_close(moved, tower.features(prepared), rtol=1e-4, atol=1e-4)


def test_fold_batchnorm_returns_a_frozen_copy():
    trunk = EfficientNetLite(P.EfficientNetParams(image_size=32, embed_dim=8, pretrained=False)).trunk
    folded = fold_batchnorm(trunk)
    assert not folded.training and not any(p.requires_grad for p in folded.parameters())
    assert trunk._conv_stem.bias is None, "folding works on a copy"


def test_a_frozen_pretrained_trunks_features_persist_across_towers_exactly(images, tmp_path, monkeypatch):
    monkeypatch.setenv("CL_FEATURE_STORE", str(tmp_path))
    tower = TINY["efficientnet"]().eval()
    first = tower.encode(tower.prepare(images))
    tower.feature_cache.store.flush()
    twin = TINY["efficientnet"]().eval()  # a later run: same weights, empty memory
    twin.load_state_dict(tower.state_dict())
    calls = _count_trunk_rows(twin)
    prepared = twin.prepare(images)
    assert not prepared["ready"].any(), "rows on disk are left out of prepare like rows in memory"
    assert torch.equal(twin.encode(prepared), first)
    assert calls == [], "the trunk never ran: every row came from the store"
    other = TINY["efficientnet"](pool_blocks=[1]).eval()  # other pooling: another function, another file
    other.trunk.load_state_dict(tower.trunk.state_dict())
    other_calls = _count_trunk_rows(other)
    other.encode(other.prepare(images))
    assert other_calls == [len(images)]
    other.feature_cache.store.flush()
    assert other.feature_cache.store.path != tower.feature_cache.store.path
    assert len(list(tmp_path.glob("EfficientNetLite-*.safetensors"))) == 2
