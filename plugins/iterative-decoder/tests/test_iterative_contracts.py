"""The contract kit of ``cl_core.api`` on both iterative decoders (one string per embedding, ``max_length`` in LM
tokens, deterministic, bad input rejected, weights round-trip through safetensors), over the toy character text
tower and a tiny saved LM."""

from __future__ import annotations

import pytest

from cl_core.api import BuildContext, DecoderContract
from cl_iterative_decoder.params import MagicParams, ZeroCapParams


class _Iterative(DecoderContract):
    embed_dim = 8

    def length(self, text: str) -> int:
        """max_length counts LM tokens; the byte tokenizer makes one token per byte, and a lone byte of a multi-byte
        character decodes to U+FFFD (3 bytes in UTF-8, one token)."""
        return len(text.encode("utf-8")) - 2 * text.count("\ufffd")

    @pytest.fixture
    def host(self, host):  # the conftest's host: the toy plugin (text tower), cl-lm and this plugin
        return host

    @pytest.fixture
    def build_context(self, tower):
        return BuildContext(encoders={"text": tower})


class TestMagic(_Iterative):
    name = "iterative.magic"

    @pytest.fixture
    def params(self, lm_folder):
        return MagicParams(lm=str(lm_folder), k=5, prompt="ab")


class TestZeroCap(_Iterative):
    name = "iterative.zerocap"

    @pytest.fixture
    def params(self, lm_folder):
        return ZeroCapParams(lm=str(lm_folder), top=8, beam_size=2, iterations=1, prompt="ab")
