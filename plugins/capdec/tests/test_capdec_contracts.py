"""The contract kit of ``cl_core.api`` on every capdec.* component (the decoder contract includes what a trainable
decoder must satisfy: targets with one row per caption, a finite loss reaching its weights, 30 teacher-forced
steps that lower it)."""

from __future__ import annotations

import pytest

from cl_capdec.params import CapDecParams, ClipCapParams, EmojiTextParams
from cl_core.api import DatasetContract, DecoderContract


class _Tokens:
    def length(self, text: str) -> int:
        """max_length counts LM tokens; every word is at least one token, so words are a lower bound. The byte
        tokenizer of the tiny LM makes one token per byte: count bytes."""
        return len(text.encode("utf-8"))


class TestClipCapMLP(_Tokens, DecoderContract):
    """ClipCap's MLP mapper (K = 3) under a tiny fine-tuned LM, 8-dim conditions."""

    name = "capdec.clipcap"
    embed_dim = 8

    @pytest.fixture
    def params(self, lm_run):
        return ClipCapParams(lm=str(lm_run), embed_dim=8, prefix_length=3)


class TestClipCapTransformer(TestClipCapMLP):
    """ClipCap's transformer mapper (K = 1 constant after 2 mapped tokens, 2 layers) under the frozen LM.

    A frozen LM can only be steered as far as it can write: the tiny LM knows the toy captions ("class 3") and
    only the positions those rows took in its training, so the teacher-forcing check uses those captions and one
    prefix position (the place of its begin token)."""

    captions = ("class 1", "class 4", "class 2")

    @pytest.fixture
    def params(self, lm_run):
        return ClipCapParams(lm=str(lm_run), embed_dim=8, mapper="transformer", prefix_length=1, clip_length=2,
                             mapper_layers=2, mapper_heads=2, method="greedy")


class TestCapDec(TestClipCapMLP):
    """CapDec: the transformer mapper, LM fine-tuned, noise injection in training (variance 0.016)."""

    name = "capdec.capdec"

    @pytest.fixture
    def params(self, lm_run):
        return CapDecParams(lm=str(lm_run), embed_dim=8, prefix_length=3, clip_length=2, mapper_layers=1,
                            mapper_heads=2)


class TestEmojiText(DatasetContract):
    name = "capdec.emoji-text"

    @pytest.fixture
    def params(self):
        from cl_datasets.testing import emoji_fixture_paths

        return EmojiTextParams(image_size=16, holdout=0.25, captions=("annotation", "annotation_subgroup"),
                               **emoji_fixture_paths())
