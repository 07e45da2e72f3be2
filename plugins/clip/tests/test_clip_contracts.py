"""cl-core's encoder contract for every clip encoder (tiny, offline, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cl_core.testing import EncoderContract
from cl_clip import params as P


def _images() -> list:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (24, 30, 3), dtype=np.uint8) for _ in range(3)] + [
        Image.new("RGBA", (20, 20), (0, 128, 255, 200))
    ]


TEXTS = ["a dog", "face with tears of joy", "a caption much longer than the context " * 8]


class _Images:
    @pytest.fixture
    def items(self):
        return _images()


class _Texts:
    @pytest.fixture
    def items(self):
        return list(TEXTS)


class TestViT(_Images, EncoderContract):
    name = "clip.vit"

    @pytest.fixture
    def params(self):
        return P.ViTParams(image_size=32, patch=8, width=32, layers=2, embed_dim=16)


class TestViTAttentionPool(_Images, EncoderContract):
    name = "clip.vit"

    @pytest.fixture
    def params(self):
        return P.ViTParams(image_size=32, patch=16, width=32, layers=1, pool="attention", embed_dim=16,
                           activation="quick_gelu")


class TestResNet(_Images, EncoderContract):
    name = "clip.resnet"

    @pytest.fixture
    def params(self):
        return P.ResNetParams(image_size=32, width=8, layers=(1, 1, 1, 1), embed_dim=16, mean=(0.5, 0.5, 0.5))


class TestEfficientNet(_Images, EncoderContract):
    name = "clip.efficientnet"

    @pytest.fixture
    def params(self):
        return P.EfficientNetParams(image_size=32, embed_dim=16, pretrained=False)


class TestEfficientNetEnsemble(_Images, EncoderContract):
    name = "clip.efficientnet-ensemble"

    @pytest.fixture
    def params(self):
        return P.EfficientNetEnsembleParams(
            trunks=(P.EfficientNetTrunk(image_size=32), P.EfficientNetTrunk(variant="lite2", image_size=32)),
            embed_dim=16, pretrained=False, flip=True)


class TestTextTransformer(_Texts, EncoderContract):
    name = "clip.text-transformer"

    @pytest.fixture
    def params(self):
        return P.TextTransformerParams(context_length=12, width=32, layers=2, embed_dim=16)


class TestMiniLM(_Texts, EncoderContract):
    name = "clip.minilm"

    @pytest.fixture
    def params(self):
        return P.MiniLMParams(pretrained=False, max_length=12, embed_dim=16)


class TestMiniLMTopLayers(_Texts, EncoderContract):
    name = "clip.minilm"

    @pytest.fixture
    def params(self):
        return P.MiniLMParams(pretrained=False, max_length=12, embed_dim=16, trainable_layers=1)
