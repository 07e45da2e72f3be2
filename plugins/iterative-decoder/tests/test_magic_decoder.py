"""``iterative.magic`` as a pipeline's decoder: what its factory needs and refuses, and that it decodes what the
search gives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cl_iterative_decoder.decoder as decoder_module
from cl_core.api import BuildContext, BuildError, WeightsError
from cl_iterative_decoder import MagicSettings, TextSimilarity, magic_search
from cl_iterative_decoder.params import MagicParams


@pytest.fixture
def built(monkeypatch, lm, tower):
    monkeypatch.setattr(decoder_module, "_load_lm", lambda source: lm)

    def make(**params):
        params.setdefault("lm", "org/lm")
        return decoder_module.build_magic(MagicParams(**params), BuildContext(encoders={"text": tower}))

    return make


def test_decodes_the_search_result_as_text(built, lm, tower):
    decoder = built(k=6, logit_scale=20.0, prompt="ca")
    queries = F.normalize(tower.embed(["cat", "dog face", "zz"]), dim=-1)
    got = decoder.decode(queries, max_length=8)
    ids = magic_search(lm, TextSimilarity(tower), queries, settings=MagicSettings(k=6, logit_scale=20.0),
                       max_length=8, prompt=lm.tokenizer.ids(["ca"])[0])
    assert got == [lm.tokenizer.decode(r).strip() for r in ids]
    assert len(set(got)) > 1  # the queries steered the rows apart


def test_batches_do_not_change_the_captions(built, tower):
    queries = F.normalize(tower.embed(["cat", "dog", "sun", "moon", "sea"]), dim=-1)
    one = built(k=5, batch_size=2).decode(queries, max_length=6)
    assert one == built(k=5, batch_size=64).decode(queries, max_length=6)


def test_the_lm_stays_frozen_and_in_eval_mode(built):
    decoder = built()
    decoder.train()
    assert not decoder.lm.training
    assert not any(p.requires_grad for p in decoder.lm.parameters())
    assert "_text" not in dict(decoder.named_children())  # the tower is the pipeline's, saved once, by it


def test_queries_of_another_space_are_refused(built):
    with pytest.raises(ValueError, match="another model's space"):
        built().decode(torch.randn(2, 5), max_length=4)


def test_factory_errors_name_the_spec_key(monkeypatch, lm):
    monkeypatch.setattr(decoder_module, "_load_lm", lambda source: lm)
    with pytest.raises(BuildError, match="role 'text'"):
        decoder_module.build_magic(MagicParams(lm="org/lm"), BuildContext(encoders={}))

    def missing(source):
        raise WeightsError(f"{source} holds no [decoder], not an lm.gpt2 language model")

    monkeypatch.setattr(decoder_module, "_load_lm", missing)
    from cl_core.testing import toy

    tower = toy.build_chars(toy.ToyCharsParams(embed_dim=8), None)
    with pytest.raises(BuildError, match=r"decoder\.lm: org/lm holds no \[decoder\]"):
        decoder_module.build_magic(MagicParams(lm="org/lm"), BuildContext(encoders={"text": tower}))


@pytest.mark.parametrize("bad, message", [({"k": 0}, "k must be"), ({"alpha": -0.1}, "alpha must be"), ({"beta": -1.0}, "beta must be"),
                                          ({"logit_scale": 0.0}, "logit_scale must be"), ({"text_role": " "}, "text_role"),
                                          ({"lm": "./no/such/folder"}, "folder does not exist")])
def test_bad_params_are_located(bad, message):
    with pytest.raises(ValueError, match=message):
        MagicParams(**{"lm": "org/lm", **bad})


def test_zerocap_decodes_its_search_result(monkeypatch, lm, tower):
    from cl_iterative_decoder import ZeroCapSettings, zerocap_search
    from cl_iterative_decoder.params import ZeroCapParams

    monkeypatch.setattr(decoder_module, "_load_lm", lambda source: lm)
    decoder = decoder_module.build_zerocap(ZeroCapParams(lm="org/lm", top=8, beam_size=2, iterations=2),
                                           BuildContext(encoders={"text": tower}))
    queries = F.normalize(tower.embed(["cat", "dog face"]), dim=-1)
    got = decoder.decode(queries, max_length=5)
    ids = zerocap_search(lm, TextSimilarity(tower), queries, max_length=5,
                         settings=ZeroCapSettings(top=8, beam_size=2, iterations=2))
    assert got == [lm.tokenizer.decode(r).strip() for r in ids]
    with pytest.raises(ValueError, match="another model's space"):
        decoder.decode(torch.randn(1, 3), max_length=4)
