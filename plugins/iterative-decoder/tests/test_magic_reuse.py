"""``--decoder iterative`` (:func:`cl_core.captioning.with_decoder`): MAGIC put over any contrastive model's towers,
with the LM from a saved run folder, nothing trained."""

from __future__ import annotations

import pytest
import torch

from cl_core.api import SpecError


@pytest.fixture
def model(host):
    """A toy contrastive model: role ``a`` (vectors) and role ``text`` (characters), random weights."""
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec

    registry = host.registry()
    spec = loads_spec('[data]\ntype = "toy.pairs"\ncaptions = true\n[encoders.a]\ntype = "toy.linear"\n'
                      '[encoders.text]\ntype = "toy.chars"\n[scorer]\ntype = "core.cosine"\n[loss]\ntype = "core.clip"',
                      registry)
    return build_pipeline(spec, registry).eval()


def test_iterative_over_a_run_captions_its_items(host, model, lm_folder):
    from cl_core.captioning import with_decoder
    from cl_iterative_decoder.decoder import MagicDecoder

    pipeline = with_decoder(model, "a", "iterative", [("lm", str(lm_folder)), ("k", 4), ("prompt", "ab")], "toy",
                            "cpu", host)
    assert isinstance(pipeline.decoder, MagicDecoder) and pipeline.decoder.params.k == 4
    items = [torch.randn(8) for _ in range(3)]
    texts = pipeline.caption("a", items, max_length=5)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    queries = pipeline.embed("a", items)
    assert texts == pipeline.decoder.decode(queries, max_length=5)


def test_bad_decoder_tables_are_located(host, model, lm_folder):
    from cl_core.captioning import with_decoder

    with pytest.raises(SpecError, match=r"decoder\.k"):
        with_decoder(model, "a", "iterative", [("lm", str(lm_folder)), ("k", 0)], "toy", "cpu", host)
    with pytest.raises(SpecError, match=r"decoder\.lm: folder does not exist"):
        with_decoder(model, "a", "iterative", [("lm", "./no/such/run")], "toy", "cpu", host)
