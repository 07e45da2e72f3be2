"""Image towers' ``resize_mode`` (open_clip's): "shortest" (resize and centre crop, the default), "squash"
and "longest" (resize and pad with ``fill_color``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cl_clip import params as P
from cl_clip.efficientnet import EfficientNetLite
from cl_clip.ensemble import EfficientNetEnsemble
from cl_clip.preprocess import (RESIZE_MODES, image_digest, image_keys, prepare_images, resize_center_crop,
                                resize_square, to_pil_rgb)
from cl_clip.resnet import ModifiedResNet
from cl_clip.vit import ViT
from cl_core.plugins import PluginHost
from cl_core.spec import loads_spec
from cl_core.testing import toy

GREY, BLUE, GREEN, RED = (128, 128, 128), (0, 0, 255), (0, 255, 0), (255, 0, 0)


def _tall() -> np.ndarray:
    """A 20 x 60 (w x h) drawing on grey: a blue head (top 6 rows), a green foot (bottom 6 rows) and a red
    body between them, each in the middle 10 columns."""
    a = np.full((60, 20, 3), GREY, dtype=np.uint8)
    a[:6, 5:15] = BLUE
    a[6:54, 5:15] = RED
    a[54:, 5:15] = GREEN
    return a


def _prepared(item, size: int, mode: str, fill: int = 255) -> np.ndarray:
    """``[size, size, 3]`` uint8 pixels of one item as ``prepare_images`` makes them."""
    return prepare_images([item], size, resize_mode=mode, fill=fill)["pixels"][0].permute(1, 2, 0).numpy()


def _has(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> np.ndarray:
    """Boolean ``[H, W]``: pixels within ``tolerance`` of ``colour`` in every channel."""
    return (np.abs(pixels.astype(int) - np.array(colour)) <= tolerance).all(axis=-1)


def test_shortest_crops_the_ends_off_a_tall_image():
    out = _prepared(_tall(), 30, "shortest")
    assert not _has(out, BLUE).any() and not _has(out, GREEN).any()  # head and foot are cut off
    assert _has(out, RED).any()


def test_longest_keeps_the_whole_tall_image_and_pads_its_sides():
    out = _prepared(_tall(), 30, "longest")
    # scaled by 1/2 to 10 x 30, centred: columns 10-19 hold the image, 0-9 and 20-29 the white padding
    assert (out[:, :10] == 255).all() and (out[:, 20:] == 255).all()
    assert _has(out[:3, 10:20], BLUE).any() and _has(out[-3:, 10:20], GREEN).any()
    assert _has(out[:, 10:20], GREY).any()  # the drawing's own background, inside the padding
    black = _prepared(_tall(), 30, "longest", fill=0)
    assert (black[:, :10] == 0).all() and (black[:, 20:] == 0).all()
    assert np.array_equal(black[:, 10:20], out[:, 10:20])  # the fill changes the padding only


def test_longest_pads_a_wide_image_above_and_below_and_puts_an_odd_margin_last():
    wide = np.ascontiguousarray(_tall().transpose(1, 0, 2))  # 60 x 20: head on the left, foot on the right
    out = _prepared(wide, 31, "longest")  # scaled to 31 x 10, in rows 10-19: margins of 10 above and 11 below
    assert (out[:10] == 255).all() and (out[20:] == 255).all()
    assert not (out[10] == 255).all() and not (out[19] == 255).all()
    assert _has(out[10:20, :3], BLUE).any() and _has(out[10:20, -3:], GREEN).any()


def test_squash_keeps_the_whole_extent_without_padding():
    out = _prepared(_tall(), 30, "squash")
    assert _has(out[:2], BLUE).any() and _has(out[-2:], GREEN).any()  # top and bottom rows of the drawing
    assert _has(out[:, :2], GREY).all() and _has(out[:, -2:], GREY).all()  # its own sides, no padding
    assert not (out == 255).all(axis=-1).any()
    body = np.nonzero(_has(out[15], RED))[0]  # 10 of 20 columns wide before, now 15 of 30
    assert 14 <= len(body) <= 16


def test_a_square_image_comes_out_the_same_in_every_mode():
    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    outs = [_prepared(square, 32, mode) for mode in RESIZE_MODES]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_the_default_is_the_centre_crop_bit_for_bit(images):
    old = np.stack([np.asarray(resize_center_crop(to_pil_rgb(item, i), 24)).transpose(2, 0, 1)
                    for i, item in enumerate(images)])
    assert np.array_equal(prepare_images(images, 24)["pixels"].numpy(), old)
    assert np.array_equal(prepare_images(images, 24, resize_mode="shortest")["pixels"].numpy(), old)
    tower = ViT(P.ViTParams(image_size=24, patch=8, width=32, layers=1, embed_dim=8))
    assert tower.resize_mode == "shortest"
    assert np.array_equal(tower.prepare(images)["pixels"].numpy(), old)
    # the default's cache keys are the keys of the size alone, as before
    digests = [image_digest(item, i) for i, item in enumerate(images)]
    assert torch.equal(image_keys(digests, 24), image_keys(digests, 24, "shortest"))
    assert not torch.equal(image_keys(digests, 24), image_keys(digests, 24, "longest"))
    assert not torch.equal(image_keys(digests, 24, "longest", 255), image_keys(digests, 24, "longest", 0))
    assert not torch.equal(image_keys(digests, 24), image_keys(digests, 24, "squash"))


def test_every_params_class_of_an_image_tower_defaults_to_shortest_and_white():
    for cls in (P.ViTParams, P.ResNetParams, P.EfficientNetParams):
        assert (cls().resize_mode, cls().fill_color) == ("shortest", 255)
    ensemble = P.EfficientNetEnsembleParams(trunks=(P.EfficientNetTrunk(),), resize_mode="longest", fill_color=0)
    member = ensemble.member(ensemble.trunks[0])
    assert (member.resize_mode, member.fill_color) == ("longest", 0)


TOWERS = {
    "vit": lambda **kw: ViT(P.ViTParams(image_size=32, patch=8, width=32, layers=1, embed_dim=8, **kw)),
    "resnet": lambda **kw: ModifiedResNet(P.ResNetParams(image_size=32, width=8, embed_dim=8, **kw)),
    "efficientnet": lambda **kw: EfficientNetLite(P.EfficientNetParams(image_size=32, embed_dim=8, pretrained=False,
                                                                         **kw)),
}


@pytest.mark.parametrize("name", sorted(TOWERS))
@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_each_tower_prepares_with_its_resize_mode(name, mode):
    tower = TOWERS[name](resize_mode=mode, fill_color=7)
    tall = _tall()
    prepared = tower.prepare([tall])
    assert torch.equal(prepared["pixels"], prepare_images([tall], 32, resize_mode=mode, fill=7)["pixels"])
    assert tower.eval().encode(prepared).shape == (1, 8)


def test_setting_the_mode_on_a_built_frozen_tower_changes_pixels_and_cache_keys():
    tower = TOWERS["efficientnet"]().eval()  # frozen, cache on
    tall = _tall()
    before = tower.prepare([tall])
    tower.resize_mode = "longest"
    after = tower.prepare([tall])
    assert not torch.equal(before["pixels"], after["pixels"])
    assert before["key"].item() != after["key"].item()  # a feature cached in one mode is not served in another


def test_ensemble_members_prepare_with_the_shared_mode():
    trunks = (P.EfficientNetTrunk(variant="lite0", image_size=32), P.EfficientNetTrunk(variant="lite0", image_size=64))
    ensemble = EfficientNetEnsemble(P.EfficientNetEnsembleParams(trunks=trunks, embed_dim=8, pretrained=False,
                                                                 resize_mode="longest"))
    prepared = ensemble.prepare([_tall()])
    for i, size in enumerate((32, 64)):
        assert torch.equal(prepared[f"{i}.pixels"], prepare_images([_tall()], size, resize_mode="longest")["pixels"])


def test_bad_values_are_refused_by_params_and_towers():
    with pytest.raises(ValueError, match="fill_color"):
        P.ViTParams(fill_color=256)
    with pytest.raises(ValueError, match="resize_mode must be one of 'shortest', 'squash', 'longest'"):
        resize_square(Image.new("RGB", (4, 8)), 4, "crop")
    with pytest.raises(ValueError, match="resize_mode"):
        TOWERS["vit"](resize_mode="pad")


SPEC = """
format = 1
[data]
type = "toy.pairs"
[sampler]
type = "core.in-batch"
batch_size = 8
[encoders.image]
type = "clip.vit"
image_size = 32
resize_mode = "longest"
[encoders.text]
type = "clip.text-transformer"
width = 64
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
"""


def _registry():
    host = PluginHost(strict=True)
    host.register(toy, name="toy")
    return host.registry()


def test_the_mode_is_a_spec_parameter_and_a_wrong_one_is_a_located_spec_error():
    from cl_core.errors import SpecError

    params = loads_spec(SPEC, _registry()).encoders["image"].params
    assert (params.resize_mode, params.fill_color) == ("longest", 255)
    bad = SPEC.replace('resize_mode = "longest"', 'resize_mode = "longset"\nfill_color = -1')
    with pytest.raises(SpecError) as info:
        loads_spec(bad, _registry())
    text = str(info.value)
    assert "encoders.image.resize_mode" in text and '"longest"' in text and '"squash"' in text
    assert "encoders.image.fill_color" in text
