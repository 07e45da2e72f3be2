"""The caption loss against a hand computation with the LM on the same weights, the mappers' shapes, what trains
(the MLP mapper fine-tunes the LM, the transformer mapper leaves it frozen), CapDec's noise injection statistics,
and the entity prompt's place before the soft prefix."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cl_capdec.decoder import build_decoder
from cl_capdec.mapper import MLPMapper, TransformerMapper
from cl_capdec.params import CapDecParams, ClipCapParams
from cl_capdec.space import modality_offset, noise_injection
from cl_core.api import BuildContext, EncoderOutput

CAPTIONS = ["class 1", "a red heart", "class 40 with a much longer caption"]


def _decoder(lm_run, **kw):
    cls = CapDecParams if kw.pop("capdec", False) else ClipCapParams
    return build_decoder(cls(lm=str(lm_run), embed_dim=8, **kw), BuildContext())


def _hand_loss(decoder, x: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Mean CE of each caption's tokens (and the end token) after the K prefix positions, one row at a time
    (no padding, no masks), straight through ``transformers``' GPT2LMHeadModel."""
    lm, tok = decoder.lm, decoder.lm.tokenizer
    prefix = decoder.mapper(F.normalize(x, dim=-1))
    k = prefix.shape[1]
    total, count = torch.zeros(()), 0
    for i, caption in enumerate(captions):
        ids = torch.tensor(tok.ids([caption])[0] + [tok.eos_id])
        inputs = torch.cat([prefix[i], lm.model.get_input_embeddings()(ids[:-1])])[None]
        logp = lm.model(inputs_embeds=inputs).logits[0].log_softmax(-1)  # [K + T - 1, V]
        for j, token in enumerate(ids.tolist()):
            total = total - logp[k - 1 + j, token]
            count += 1
    return total / count


@pytest.mark.parametrize("mapper", ["mlp", "transformer"])
def test_caption_loss_equals_a_hand_computation_with_the_lm(lm_run, mapper):
    decoder = _decoder(lm_run, mapper=mapper, prefix_length=4, clip_length=3, mapper_layers=2, mapper_heads=2).eval()
    x = torch.randn(3, 8)
    got = decoder.caption_loss(EncoderOutput(x), decoder.prepare(CAPTIONS)).value
    with torch.no_grad():
        want = _hand_loss(decoder, x, CAPTIONS)
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-5)


def test_capdec_loss_in_eval_mode_has_no_noise_and_matches_the_hand_computation(lm_run):
    decoder = _decoder(lm_run, capdec=True, prefix_length=2, clip_length=2, mapper_layers=1, mapper_heads=2).eval()
    x = torch.randn(3, 8)
    got = decoder.caption_loss(EncoderOutput(x), decoder.prepare(CAPTIONS)).value
    with torch.no_grad():
        want = _hand_loss(decoder, x, CAPTIONS)
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-5)


def test_mappers_follow_clipcap():
    mlp = MLPMapper(in_dim=12, width=16, prefix_length=10)
    assert [tuple(p.shape) for p in mlp.parameters()] == [(80, 12), (80,), (160, 80), (160,)]  # N -> D*K/2 -> D*K
    assert isinstance(mlp.model[1], torch.nn.Tanh)
    assert mlp(torch.randn(3, 12)).shape == (3, 10, 16)
    tf = TransformerMapper(in_dim=12, width=16, prefix_length=5, clip_length=4, layers=3, heads=8, mlp_ratio=2.0)
    assert tf.prefix_const.shape == (5, 16) and tf.linear.weight.shape == (64, 12) and len(tf.layers) == 3
    assert tf.layers[0].attn.to_queries.bias is None and tf.layers[0].fc1.out_features == 32
    assert tf(torch.randn(3, 12)).shape == (3, 5, 16)
    with pytest.raises(ValueError, match="must divide"):
        TransformerMapper(in_dim=12, width=16, prefix_length=5, clip_length=4, heads=3)


def test_what_trains_mlp_fine_tunes_the_lm_transformer_keeps_it_frozen(lm_run):
    x, targets = torch.randn(3, 8), None
    for mapper, lm_trains in (("mlp", True), ("transformer", False)):
        decoder = _decoder(lm_run, mapper=mapper, prefix_length=2, clip_length=2, mapper_layers=1, mapper_heads=2)
        decoder.train()
        targets = decoder.prepare(CAPTIONS)
        decoder.caption_loss(EncoderOutput(x), targets).value.backward()
        lm_grads = [p.grad for p in decoder.lm.parameters() if p.grad is not None]
        assert bool(lm_grads) is lm_trains, mapper
        assert all(p.requires_grad is lm_trains for p in decoder.lm.parameters()), mapper
        assert decoder.lm.model.training is lm_trains  # a frozen LM stays in eval mode while the pipeline trains
        assert all(p.grad is not None for p in decoder.mapper.parameters())


def test_noise_injection_statistics():
    g = torch.Generator().manual_seed(0)
    n, variance = 384, 0.016
    x = torch.randn(4000, n, generator=g) * 3.0
    y = noise_injection(x, variance, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(4000))
    # the noise before re-normalising: the same draws by hand
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * math.sqrt(variance)
    torch.testing.assert_close(y, F.normalize(F.normalize(x, dim=-1) + eps, dim=-1))
    assert abs(float(eps.var()) - variance) < 0.02 * variance
    # the cosine to the clean direction is 1 / sqrt(1 + N * variance) for large N
    cos = (y * F.normalize(x, dim=-1)).sum(-1)
    assert abs(float(cos.mean()) - 1 / math.sqrt(1 + n * variance)) < 0.01
    assert torch.equal(noise_injection(x, 0.0), F.normalize(x, dim=-1))


def test_capdec_injects_noise_in_training_only(lm_run):
    decoder = _decoder(lm_run, capdec=True, prefix_length=2, clip_length=2, mapper_layers=1, mapper_heads=2,
                       noise_variance=0.05)
    seen = []
    decoder.mapper.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    x = torch.randn(3, 8) * 4
    targets = decoder.prepare(CAPTIONS)
    decoder.train()
    decoder.caption_loss(EncoderOutput(x), targets)
    decoder.caption_loss(EncoderOutput(x), targets)
    decoder.eval()
    decoder.caption_loss(EncoderOutput(x), targets)
    decoder.decode(x, max_length=3)
    noisy1, noisy2, clean, decoded = seen
    torch.testing.assert_close(noisy1.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(noisy1, noisy2) and not torch.allclose(noisy1, F.normalize(x, dim=-1))
    torch.testing.assert_close(clean, F.normalize(x, dim=-1))
    torch.testing.assert_close(decoded, F.normalize(x, dim=-1))  # no offset asked: the normalised embedding


def test_modality_offset_is_text_centre_minus_image_centre():
    text, image = torch.randn(10, 6) * 2, torch.randn(7, 6) + 1
    torch.testing.assert_close(modality_offset(text, image),
                               F.normalize(text, dim=-1).mean(0) - F.normalize(image, dim=-1).mean(0))
    with pytest.raises(ValueError):
        modality_offset(text, torch.randn(7, 5))


def test_entity_prompt_comes_before_the_soft_prefix(lm_run):
    decoder = _decoder(lm_run, capdec=True, prefix_length=2, clip_length=2, mapper_layers=1, mapper_heads=2,
                       entities=2, entity_drop=0.0).eval()
    names = ["class 1", "class 2", "red heart"]
    table = torch.eye(8)[:3]
    decoder.set_entities(names, table)
    x = torch.eye(8)[[2, 0]] + 0.1 * torch.eye(8)[[1, 1]]
    assert decoder.retrieve(x, 2) == [["red heart", "class 2"], ["class 1", "class 2"]]
    prompts = decoder.prompts(decoder.retrieve(x, 2))
    tok = decoder.tokenizer
    assert tok.decode_batch([prompts[0][1:]])[0] == "There are red heart, class 2 in the image."
    seen = []
    decoder.lm.model.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["inputs_embeds"]),
                                           with_kwargs=True)
    targets = decoder.prepare(["class 1", "class 3"])
    value = decoder.caption_loss(EncoderOutput(x), targets).value
    inputs = seen[0][0]
    h = len(prompts[0])
    wte = decoder.lm.model.get_input_embeddings()
    torch.testing.assert_close(inputs[:h], wte(torch.tensor(prompts[0])))
    torch.testing.assert_close(inputs[h : h + 2], decoder.mapper(F.normalize(x, dim=-1))[0])
    # the loss is the CE of the caption tokens after [prompt; prefix], by hand for row 0 and row 1
    with torch.no_grad():
        total, count = torch.zeros(()), 0
        prefix = decoder.mapper(F.normalize(x, dim=-1))
        for i, caption in enumerate(["class 1", "class 3"]):
            ids = torch.tensor(tok.ids([caption])[0] + [tok.eos_id])
            row = torch.cat([wte(torch.tensor(prompts[i])), prefix[i], wte(ids[:-1])])[None]
            logp = decoder.lm.model(inputs_embeds=row).logits[0].log_softmax(-1)
            start = len(prompts[i]) + 2 - 1
            for j, token in enumerate(ids.tolist()):
                total, count = total - logp[start + j, token], count + 1
    torch.testing.assert_close(value.detach(), total / count, rtol=1e-5, atol=1e-5)
    assert len(decoder.decode(x, max_length=4)) == 2
