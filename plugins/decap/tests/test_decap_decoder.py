"""``decap.decap`` on tiny parts: the decoder contract, the caption loss against PyTorch's label-smoothed
cross-entropy on the same weights, decoding = greedy generation from the projected embedding's prefix, ViECap's
entity prompts, the space the decoder records, and every bad input refused before any work."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cl_core.api import DataError, DecoderContract, EncoderOutput, SpecError, WeightsError
from decap_helpers import tiny_decap, tiny_scratch, toy_context


class TestDeCapContract(DecoderContract):
    name = "decap.decap"
    embed_dim = 4

    @pytest.fixture
    def params(self, registered):
        return registered.info.params(scratch=tiny_scratch())

    @pytest.fixture
    def build_context(self, host):
        return toy_context(host)

    @pytest.fixture
    def host(self):  # the contract's host loads only this plugin; the scratch LM needs lm.gpt2 too
        import cl_decap.plugin
        import cl_lm.plugin
        from cl_core.api import PluginHost

        h = PluginHost(autoload=False, strict=True)
        h.register(cl_lm.plugin, name="lm")
        h.register(cl_decap.plugin, name="decap")
        return h

    # max_length counts LM tokens (bytes here); the contract counts whitespace words, never more than tokens


class TestDeCapEntitiesContract(TestDeCapContract):
    @pytest.fixture
    def params(self, registered):
        return registered.info.params(scratch=tiny_scratch(context=160), entities=2, entity_mask=0.4)


def _hand_loss(decoder, embedding, captions, prompts=None):
    """The caption loss computed outside the decoder: the LM's logits on [<bos> prompt] [prefix] <bos> caption,
    then torch's cross-entropy with label smoothing 0.1."""
    lm, tok = decoder.lm, decoder.tokenizer
    v = embedding / embedding.norm(dim=-1, keepdim=True)
    soft = v @ decoder.prefix.weight.t() + decoder.prefix.bias
    total_logits, total_labels = [], []
    for i, caption in enumerate(captions):
        target = ([tok.bos_id] + tok.ids([caption])[0] + [tok.eos_id])[: decoder.params.max_length]
        hard = [] if prompts is None else [tok.bos_id] + tok.ids([prompts[i]])[0]
        parts = ([lm.embed_tokens(torch.tensor([hard]))[0]] if hard else []) + \
                [soft[i : i + 1], lm.embed_tokens(torch.tensor([target[:-1]]))[0]]
        logits = lm.model(inputs_embeds=torch.cat(parts)[None]).logits[0, len(hard):]
        total_logits.append(logits)
        total_labels.append(torch.tensor(target))
    return F.cross_entropy(torch.cat(total_logits), torch.cat(total_labels), label_smoothing=0.1)


def test_caption_loss_is_label_smoothed_cross_entropy_on_the_same_weights(host):
    decoder = tiny_decap(host)
    captions = ["class 1", "a much longer caption of class 12, cut at max_length", "x"]
    embedding = torch.randn(3, 4)
    got = decoder.caption_loss(EncoderOutput(embedding), decoder.prepare(captions)).value
    torch.testing.assert_close(got, _hand_loss(decoder, embedding, captions), atol=1e-5, rtol=1e-5)
    assert decoder.params.label_smoothing == 0.1
    plain = F.cross_entropy  # and the smoothing matters: without it the value differs
    assert plain is F.cross_entropy and not torch.isclose(got, _no_smoothing(decoder, embedding, captions))


def _no_smoothing(decoder, embedding, captions):
    import attrs

    object.__setattr__(decoder, "params", attrs.evolve(decoder.params, label_smoothing=0.0))
    try:
        return decoder.caption_loss(EncoderOutput(embedding), decoder.prepare(captions)).value
    finally:
        object.__setattr__(decoder, "params", attrs.evolve(decoder.params, label_smoothing=0.1))


def test_entity_prompts_come_before_the_prefix_in_the_loss(host):
    decoder = tiny_decap(host, scratch=tiny_scratch(context=200), entities=2)
    captions = ["class 3", "class 10"]
    embedding = decoder.entities.embeddings[[3, 10]] + 0.01  # near the names "class 3", "class 10"
    names = decoder.entity_names(F.normalize(embedding, dim=-1))
    assert [n[0] for n in names] == ["class 3", "class 10"] and all(len(n) == 2 for n in names)
    prompts = [decoder.prompt_text(n) for n in names]
    assert prompts[0].startswith("There are class 3, ") and prompts[0].endswith(" in image.")
    got = decoder.caption_loss(EncoderOutput(embedding), decoder.prepare(captions)).value  # eval mode: no masking
    torch.testing.assert_close(got, _hand_loss(decoder, embedding, captions, prompts), atol=1e-5, rtol=1e-5)
    # ViECap's random masking: every entity dropped reads "something"
    assert decoder.prompt_text([]) == "There are something in image."
    dropped = decoder.entity_names(F.normalize(embedding, dim=-1), drop=0.999999)
    assert dropped == [[], []]


def _trained(host, steps: int = 60, **params):
    """A tiny DeCap taught the toy captions ("class 0" ... "class 15") from their text embeddings, so it writes text."""
    ctx = toy_context(host)
    decoder = tiny_decap(host, ctx=ctx, **params).train()
    captions = [f"class {i}" for i in range(16)]
    condition = EncoderOutput(ctx.encoders["text"].embed(captions))
    targets = decoder.prepare(captions)
    optimizer = torch.optim.Adam([p for p in decoder.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        decoder.caption_loss(condition, targets).value.backward()
        optimizer.step()
    return decoder.eval(), ctx


def test_decoding_is_greedy_generation_from_the_projected_prefix(host):
    decoder, ctx = _trained(host)
    v = torch.randn(5, 4)
    texts = decoder.decode(v, max_length=6)
    projected = decoder.memory.project(F.normalize(v, dim=-1), 0.01)
    torch.testing.assert_close(decoder.project(v), projected)
    prefix = decoder.prefix(projected)[:, None]
    bos = decoder.tokenizer.bos_id
    expected = decoder.lm.generate(prefix=prefix, input_ids=[[bos]] * 5, method="greedy", max_new_tokens=6, stop=())
    assert texts == [t.strip() for t in expected.texts]
    assert any(texts)
    # the memory projection matters: without it the prefix is the embedding itself
    raw = tiny_decap(host, ctx=ctx, projection="none")
    raw.load_state_dict(decoder.state_dict())
    direct = decoder.lm.generate(prefix=decoder.prefix(F.normalize(v, dim=-1))[:, None], input_ids=[[bos]] * 5,
                                 method="greedy", max_new_tokens=6, stop=())
    assert raw.decode(v, max_length=6) == [t.strip() for t in direct.texts]


def test_entity_decoding_groups_rows_by_prompt_length(host):
    decoder, _ = _trained(host, scratch=tiny_scratch(context=200), entities=1)
    v = decoder.entities.embeddings[[2, 11, 5, 13]]  # "class 2" (7 bytes) and "class 11" (8 bytes) alternate
    texts = decoder.decode(v, max_length=5)
    tok = decoder.tokenizer
    for i, row in enumerate(v):
        name = decoder.entity_names(row[None])[0]
        hard = torch.tensor([[tok.bos_id] + tok.ids([decoder.prompt_text(name)])[0]])
        soft = decoder.prefix(decoder.project(row[None]))[:, None]
        prefix = torch.cat([decoder.lm.embed_tokens(hard), soft], dim=1)
        one = decoder.lm.generate(prefix=prefix, input_ids=[[tok.bos_id]], method="greedy", max_new_tokens=5, stop=())
        assert texts[i] == one.texts[0].strip(), i
    assert any(texts)


def test_the_memory_is_the_distinct_training_captions_embedded_by_the_text_tower(host, tmp_path):
    ctx = toy_context(host)
    decoder = tiny_decap(host, ctx=ctx)
    train = ctx.dataset.splits()["train"]
    captions = list(dict.fromkeys(train.get(range(len(train)))["text"]))
    assert decoder.memory.texts == captions
    torch.testing.assert_close(decoder.memory.embeddings, F.normalize(ctx.encoders["text"].embed(captions), dim=-1))
    (tmp_path / "more.txt").write_text("a red heart\n\nclass 3\n", encoding="utf-8")
    more = tiny_decap(host, ctx=ctx, memory_files=(str(tmp_path / "more.txt"),), memory_names=("heldout",))
    assert more.memory.texts == captions + ["a red heart"] + [f"class {i}" for i in range(16) if
                                                                f"class {i}" not in captions]
    few = tiny_decap(host, ctx=ctx, max_memory=4)
    assert len(few.memory) == 4 and few.memory.texts[0] == captions[0] and few.memory.texts[-1] == captions[-1]
    files_only = tiny_decap(host, ctx=toy_context(host), memory_splits=(), memory_files=(str(tmp_path / "more.txt"),))
    assert files_only.memory.texts == ["a red heart", "class 3"]


def test_bad_input_is_refused_before_any_work(host, monkeypatch):
    decoder = tiny_decap(host)
    calls = []
    monkeypatch.setattr(decoder.lm.model, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="decodes 4-dim embeddings .* got 6-dim ones: they come from a model of "
                                         "another space"):
        decoder.decode(torch.randn(2, 6), max_length=4)
    with pytest.raises(ValueError, match=r"max_length = 200 .* need 202 positions; the LM's context is 128 \(use "
                                         r"max_length <= 126\)"):
        decoder.decode(torch.randn(2, 4), max_length=200)
    with pytest.raises(ValueError, match="maps 4-dim text embeddings to its prefix, got 6-dim"):
        decoder.caption_loss(EncoderOutput(torch.randn(2, 6)), decoder.prepare(["a", "b"]))
    with pytest.raises(ValueError, match=r"captions\[1\] is empty"):
        decoder.prepare(["a", "  "])
    with pytest.raises(ValueError, match=r"captions\[0\]: expected a string"):
        decoder.prepare([3])
    with pytest.raises(FloatingPointError):
        decoder.decode(torch.full((2, 4), float("inf")), max_length=4)
    assert not calls
    from cl_core.api import BuildContext

    loaded = tiny_decap(host, ctx=toy_context(host, weights_follow=True, dataset=None))  # a load: empty memory
    monkeypatch.setattr(loaded.lm.model, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="DeCap's memory is empty"):
        loaded.decode(torch.randn(2, 4), max_length=4)
    assert not calls and isinstance(BuildContext(), BuildContext)


def test_lengths_past_the_lms_context_are_located_spec_errors(host):
    with pytest.raises(SpecError, match=r"decoder.max_length: a training row of max_length = 40 tokens after the "
                                        r"prefix exceeds the LM's context of 32 positions"):
        tiny_decap(host, scratch=tiny_scratch(context=32), max_length=40)
    with pytest.raises(SpecError, match=r"decoder.max_length: .* after a hard prompt of up to \d+ tokens and the "
                                        r"prefix exceeds the LM's context of 64"):
        tiny_decap(host, scratch=tiny_scratch(context=64), entities=3)


def test_roles_and_data_mistakes_are_clear(host, tmp_path):
    with pytest.raises(Exception, match="encoder of role 'caption'"):
        tiny_decap(host, text_role="caption")
    with pytest.raises(SpecError, match="decoder.image_role: no encoder role 'photo'"):
        tiny_decap(host, image_role="photo")
    with pytest.raises(DataError, match="decoder.memory_splits: no split 'nowhere'"):
        tiny_decap(host, memory_splits=("nowhere",))
    with pytest.raises(DataError, match="decoder.memory_field: split 'train' has no field 'caption'"):
        tiny_decap(host, memory_field="caption")
    with pytest.raises(DataError, match="decoder.memory_splits: these texts come from the spec's \\[data\\], and "
                                        "there is none"):
        tiny_decap(host, ctx=toy_context(host, dataset=None))
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="the memory has no texts"):
        tiny_decap(host, memory_splits=(), memory_files=(str(tmp_path / "empty.txt"),))
    from cl_decap.params import DeCapParams

    with pytest.raises(ValueError, match="not neither"):
        DeCapParams()
    with pytest.raises(ValueError, match="not both"):
        DeCapParams(lm="gpt2", scratch=tiny_scratch())
    with pytest.raises(ValueError, match="needs a memory"):
        DeCapParams(scratch=tiny_scratch(), memory_splits=())


def test_the_decoder_records_its_space_and_refuses_other_towers(host):
    from cl_core.testing import toy

    ctx = toy_context(host)
    decoder = tiny_decap(host, ctx=ctx)
    assert decoder.space_text.any() and decoder.space_image.any()
    state = decoder.state_dict()
    twin = tiny_decap(host, ctx=toy_context(host))  # the same towers (same seed): loads
    twin.load_state_dict(state)
    torch.manual_seed(5)
    other = dict(ctx.encoders, image=toy.build_linear(toy.ToyLinearParams(in_dim=8, embed_dim=4), None))
    stranger = tiny_decap(host, ctx=toy_context(host).__class__(encoders=other, dataset=ctx.dataset,
                                                                 registry=ctx.registry))
    with pytest.raises(WeightsError, match=r"trained in the space of another contrastive model: the 'image' tower "
                                           r"\(recorded [0-9a-f]{12}, this pipeline's [0-9a-f]{12}\)"):
        stranger.load_state_dict(state)

    class Pipe:  # what bind() reads of a pipeline
        encoders = other

    with pytest.raises(WeightsError, match="'image' tower"):
        decoder.bind(Pipe())
    Pipe.encoders = dict(ctx.encoders)
    decoder.bind(Pipe())  # its own towers are fine


def test_a_memory_of_another_width_is_refused(host):
    from cl_decap.memory import TextMemory

    decoder = tiny_decap(host)
    state = decoder.state_dict()
    state["memory.embeddings"] = torch.randn(len(decoder.memory), 6)
    with pytest.raises(WeightsError, match=r"decoder.memory.embeddings holds \[16, 6\] embeddings; this decoder maps "
                                           r"4-dim text embeddings"):
        tiny_decap(host).load_state_dict(state)
    from cl_decap.decoder import DeCap

    with pytest.raises(ValueError, match="the memory holds 6-dim text embeddings; the decoder maps 4-dim"):
        DeCap(decoder.params, decoder.lm, 4, TextMemory(["a"], torch.ones(1, 6)))


def test_noise_injection_in_training_only(host):
    decoder = tiny_decap(host, noise_variance=0.016)
    v = F.normalize(torch.randn(3, 4), dim=-1)
    torch.manual_seed(7)
    noisy = decoder.noisy(v)
    torch.manual_seed(7)
    expected = F.normalize(v + torch.randn(3, 4) * 0.016 ** 0.5, dim=-1)  # normalise -> add -> normalise (CapDec)
    torch.testing.assert_close(noisy, expected)
    embedding, targets = torch.randn(3, 4), decoder.prepare(["a", "bb", "ccc"])
    clean = decoder.caption_loss(EncoderOutput(embedding), targets).value  # eval mode: no noise
    assert torch.equal(clean, decoder.caption_loss(EncoderOutput(embedding), targets).value)
    decoder.train()
    assert not torch.equal(clean, decoder.caption_loss(EncoderOutput(embedding), targets).value)
    assert torch.equal(tiny_decap(host).noisy(v), v)  # DeCap's default: no noise
