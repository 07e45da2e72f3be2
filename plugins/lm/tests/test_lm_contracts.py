"""The contract kit on every lm.* component."""

from __future__ import annotations

import pytest
import torch

from cl_core.api import (
    Batch,
    BuildContext,
    DatasetContract,
    DecoderContract,
    EncodedBatch,
    EvaluatorContract,
    ObjectiveContract,
)
from cl_lm.params import GPT2Params

TINY = dict(tokenizer="bytes", context=40, layers=2, width=32, heads=2)
TEXTS = ["a red heart", "the dog face is smiling", "a cat with heart eyes", "sparkles"]


class TestGPT2Decoder(DecoderContract):
    """Condition embeddings of width 32 are one prefix embedding each."""

    name = "lm.gpt2"
    embed_dim = 32

    @pytest.fixture
    def params(self):
        return GPT2Params(**TINY)


class TestGPT2DecoderTwoPrefixEmbeddings(TestGPT2Decoder):
    """Width 64: two prefix embeddings (ClipCap's K = 2), beam search."""

    embed_dim = 64

    @pytest.fixture
    def params(self):
        return GPT2Params(**TINY, method="beam", beam_size=2)


class TestGPT2DecoderSampling(TestGPT2Decoder):
    """Sampling decodes deterministically for its seed."""

    @pytest.fixture
    def params(self):
        return GPT2Params(**TINY, method="sample", top_k=20, top_p=0.9, seed=4)


@pytest.fixture
def lm():
    from cl_lm.testing import tiny_lm

    return tiny_lm()


class TestNextToken(ObjectiveContract):
    name = "lm.next-token"

    @pytest.fixture
    def build_context(self, lm):
        return BuildContext(decoder=lm)

    @pytest.fixture
    def batch(self):
        return Batch(inputs={"text": TEXTS}, labels=None, indices=torch.arange(len(TEXTS)))

    @pytest.fixture
    def encoded_batch(self, component, batch):
        return EncodedBatch(outputs={}, own=component.prepare(batch))

    def test_value_reaches_the_lm_and_is_its_loss(self, component, encoded_batch, lm):
        out = component.compute(encoded_batch)
        torch.testing.assert_close(out.value, lm.lm_loss(encoded_batch.own["ids"], encoded_batch.own["labels"]))
        out.value.backward()
        assert lm.model.transformer.wte.weight.grad.abs().sum() > 0
        assert float(out.parts["ppl"]) == pytest.approx(float(out.value.detach().exp()))


class TestText(DatasetContract):
    name = "lm.text"

    @pytest.fixture
    def params(self):
        from cl_lm.params import TextParams

        return TextParams(sources=("lee",), holdout=0.2, max_documents=60)

    def test_held_out_documents_are_not_trained_on(self, component):
        splits = component.splits()
        train, held = set(splits["train"].texts), set(splits["heldout"].texts)
        assert held and train and not train & held
        assert all("  " not in t and t == t.strip() for t in train)


class TestPerplexity(EvaluatorContract):
    name = "lm.perplexity"

    @pytest.fixture
    def pipeline(self):
        from cl_core.build import build_pipeline
        from cl_core.plugins import PluginHost
        from cl_core.spec import loads_spec

        registry = PluginHost(only=["lm"], strict=True).registry()
        spec = loads_spec("""
[data]
type = "lm.text"
sources = ["lee"]
max_documents = 40
holdout = 0.25
[decoder]
type = "lm.gpt2"
tokenizer = "bytes"
context = 40
layers = 1
width = 16
heads = 2
[[evaluate]]
type = "lm.perplexity"
max_texts = 5
""", registry)
        torch.manual_seed(0)
        return build_pipeline(spec, registry)
