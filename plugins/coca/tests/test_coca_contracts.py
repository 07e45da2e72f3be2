"""The contract kit of ``cl_core.api`` on every coca.* component: the towers' output shapes, determinism, gradients
and safetensors round trip; the captioner's one string per condition, ``max_length``, bad inputs, and the trainable
decoder's side (a finite caption loss reaching its weights, 30 teacher-forced steps that lower it) through the text
tower's states."""

from __future__ import annotations

import numpy as np
import pytest

from cl_coca.params import CoCaCaptionerParams, CoCaImageParams, CoCaTextParams
from cl_coca.text import build_text
from cl_core.api import BuildContext, DecoderContract, EncoderContract

TEXT = CoCaTextParams(layers=1, width=32, heads=2, context=24, embed_dim=16)


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8) for _ in range(n)]


class TestImageEfficientNet(EncoderContract):
    """A random (not pretrained) EfficientNet-Lite0 at 64 px, trunk trained: its 2 x 2 map and block 10's."""

    name = "coca.image"

    @pytest.fixture
    def params(self):
        return CoCaImageParams(image_size=64, pretrained=False, freeze=False, token_blocks=(10,), width=32, heads=2,
                               caption_queries=3, caption_width=32, embed_dim=16)

    @pytest.fixture
    def items(self):
        return _images(3)


class TestImageViT(TestImageEfficientNet):
    @pytest.fixture
    def params(self):
        return CoCaImageParams(trunk="vit", image_size=32, patch=8, vit_width=32, vit_layers=1, vit_heads=2, width=32,
                               heads=2, caption_queries=3, caption_width=32, embed_dim=16)


class TestText(EncoderContract):
    name = "coca.text"

    @pytest.fixture
    def params(self):
        return TEXT

    @pytest.fixture
    def items(self):
        return ["a red heart", "dog", "a smiling cat with heart eyes"]


class TestCaptioner(DecoderContract):
    """The multimodal half (2 blocks) over a 1-block text tower (byte tokenizer), conditions of 3 tokens of width 32."""

    name = "coca.captioner"
    embed_dim = 32

    @pytest.fixture
    def params(self):
        return CoCaCaptionerParams(layers=2, method="greedy")

    @pytest.fixture
    def build_context(self):
        return BuildContext(encoders={"text": build_text(TEXT, BuildContext(path="encoders.text"))})

    def length(self, text: str) -> int:
        # max_length counts byte tokens; a decoded byte that is not valid UTF-8 shows as one replacement character
        return len(text)

    def caption_inputs(self, component, captions):
        tower = component.text
        return {}, tower.encode_states(tower.prepare(list(captions)))

    def test_teacher_forcing_learns_a_fixed_batch(self, component):
        """The contract's check, with the text tower training too: the captioner's output layer is the tower's
        token embedding (tied, GPT-2's small init), which the captioner's own parameters cannot scale up in 30
        steps; in a pipeline both train."""
        import torch

        torch.manual_seed(0)
        component.train(), component.text.train()
        condition = self.condition(len(self.captions))
        params = [p for p in list(component.parameters()) + list(component.text.parameters()) if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=1e-2)
        first = None
        for _ in range(30):
            value = component.caption_loss(condition, *self.caption_inputs(component, self.captions)).value
            first = float(value.detach()) if first is None else first
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        last = float(component.caption_loss(condition, *self.caption_inputs(component, self.captions)).value)
        assert last < first * 0.8, f"{first:.4f} -> {last:.4f}"
