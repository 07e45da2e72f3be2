"""CoCa's parts against what the paper and open_clip's fixes say they must do: the appended CLS ignores padding;
the two poolers are separate parameters; the captioner started from an LM computes the LM; the caption loss is the
shifted token cross-entropy over real tokens; cached generation equals a full recompute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl_coca.captioner import CoCaCaptioner
from cl_coca.image import CoCaImage
from cl_coca.params import CoCaCaptionerParams, CoCaImageParams, CoCaTextParams
from cl_coca.text import CoCaText, build_text
from cl_core.api import BuildContext, EncoderOutput

TEXT = CoCaTextParams(layers=1, width=32, heads=2, context=24, embed_dim=16)
IMAGE = CoCaImageParams(trunk="vit", image_size=32, patch=8, vit_width=32, vit_layers=1, vit_heads=2, width=32,
                        heads=2, caption_queries=3, caption_width=32, embed_dim=16)


def _text(params: CoCaTextParams = TEXT) -> CoCaText:
    return build_text(params, BuildContext(path="encoders.text")).eval()


def test_the_appended_cls_ignores_padding():
    """open_clip#549: the CLS mask sat at the wrong end, so the text embedding depended on the padding. Here the
    same caption alone (no padding) and beside a longer one (padded) embeds the same, whatever the pad ids."""
    tower = _text()
    alone = tower.prepare(["red heart"])
    padded = tower.prepare(["red heart", "a much longer caption that pads the first row"])
    assert padded["ids"].shape[1] > alone["ids"].shape[1] and not padded["mask"][0].all()
    with torch.no_grad():
        a = tower.encode(alone)[0]
        b = tower.encode(padded)[0]
        junk = dict(padded, ids=padded["ids"].masked_fill(~padded["mask"], 7))  # other ids at the padding
        c = tower.encode(junk)[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, c, atol=1e-6, rtol=1e-6)
    # and the CLS does read the caption: another caption embeds elsewhere
    with torch.no_grad():
        other = tower.encode(tower.prepare(["blue bar"]))[0]
    assert (other - a).abs().max() > 1e-3


def test_the_two_poolers_are_separate_parameters():
    torch.manual_seed(0)
    image = CoCaImage(IMAGE).eval()
    contrastive = {id(p) for p in image.contrastive_pooler.parameters()}
    caption = {id(p) for p in image.caption_pooler.parameters()}
    assert contrastive and caption and not contrastive & caption
    assert image.contrastive_pooler.query.shape == (1, 32) and image.caption_pooler.query.shape == (3, 32)
    items = [np.full((32, 32, 3), v, dtype=np.uint8) for v in (0, 120, 250)]
    inputs = image.prepare(items)
    with torch.no_grad():
        before = image.encode_states(inputs)
        image.caption_pooler.query.add_(torch.randn(3, 32))  # moves the captioning tokens only
        moved = image.encode_states(inputs)
        image.contrastive_pooler.query.add_(torch.randn(1, 32))  # moves the embedding only
        both = image.encode_states(inputs)
    torch.testing.assert_close(moved.embedding, before.embedding)
    assert (moved.tokens - before.tokens).abs().max() > 1e-3
    torch.testing.assert_close(both.tokens, moved.tokens)
    assert (both.embedding - moved.embedding).abs().max() > 1e-3


def test_a_captioner_started_from_an_lm_computes_the_lm():
    """Tower blocks 0-1 and captioner blocks 2-3 of a 4-block LM, cross-attention at zero output: the captioner's
    logits are the LM's, whatever the image tokens."""
    from cl_lm.testing import tiny_lm

    lm = tiny_lm(layers=4, width=32, heads=2, context=48)
    tower = CoCaText(CoCaTextParams(layers=2, embed_dim=16), lm.tokenizer, width=32, heads=2, context=48)
    tower.start_from_lm(lm)
    captioner = CoCaCaptioner(CoCaCaptionerParams(layers=2), tower)
    assert captioner.start_from_lm(tower.lm_rest) == 2
    tower.eval(), captioner.eval()
    inputs = tower.prepare(["a red heart", "dog"])
    memory = torch.randn(2, 5, 32)
    with torch.no_grad():
        states = tower.encode_states(inputs)
        ours = captioner.logits(states.tokens, memory)
        theirs = lm.model(input_ids=inputs["ids"], attention_mask=inputs["mask"].long()).logits
    real = inputs["mask"]
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-4, rtol=1e-4)


def _pair(seed: int = 0) -> tuple[CoCaText, CoCaCaptioner]:
    torch.manual_seed(seed)
    tower = _text()
    captioner = CoCaCaptioner(CoCaCaptionerParams(layers=2, method="greedy"), tower)
    with torch.no_grad():  # a cross-attention that reads the image (it starts at zero)
        for block in captioner.blocks:
            torch.nn.init.normal_(block.cross_proj.weight, std=0.3)
    return tower, captioner.eval()


def test_the_caption_loss_is_the_shifted_cross_entropy_over_real_tokens():
    tower, captioner = _pair()
    inputs = tower.prepare(["red heart", "a longer caption here"])
    memory = torch.randn(2, 3, 32)
    with torch.no_grad():
        states = tower.encode_states(inputs)
        loss = captioner.caption_loss(EncoderOutput(memory[:, 0], tokens=memory), {}, states).value
        logits = captioner.logits(states.tokens, memory)
    terms = []
    for row in range(2):
        n = int(inputs["mask"][row].sum())
        terms.append(F.cross_entropy(logits[row, : n - 1], inputs["ids"][row, 1:n], reduction="none"))
    torch.testing.assert_close(loss, torch.cat(terms).mean())


def test_cached_greedy_generation_equals_a_full_recompute():
    tower, captioner = _pair(1)
    memory = torch.randn(3, 3, 32)
    got = captioner.generate(memory, method="greedy", max_new_tokens=6)
    tok = tower.tokenizer
    for row in range(3):
        ids = [tok.bos_id]
        for _ in range(6):
            with torch.no_grad():
                x = tower.embed_positions(torch.tensor([ids]), torch.arange(len(ids))[None])
                states, _ = tower.run(x, None)
                nxt = int(captioner.logits(states, memory[row : row + 1])[0, -1].argmax())
            if nxt == tok.eos_id:
                break
            ids.append(nxt)
        assert got.tokens[row] == ids[1:], row


def test_beam_search_and_greedy_agree_with_one_beam():
    tower, captioner = _pair(2)
    memory = torch.randn(4, 3, 32)
    greedy = captioner.generate(memory, method="greedy", max_new_tokens=5).tokens
    beam = captioner.generate(memory, method="beam", beam_size=1, max_new_tokens=5).tokens
    assert greedy == beam
    wide = captioner.generate(memory, method="beam", beam_size=3, max_new_tokens=5)
    assert len(wide.texts) == 4


def test_captions_need_the_image_tokens():
    _, captioner = _pair()
    with pytest.raises(ValueError, match="encode_states"):
        captioner.decode(torch.randn(2, 32), max_length=4)
    with pytest.raises(ValueError, match=r"\[B, M, 32\]"):
        captioner.decode(EncoderOutput(torch.randn(2, 8), tokens=torch.randn(2, 3, 8)), max_length=4)


def test_a_partly_tuned_efficientnet_trains_its_last_blocks_through_both_poolers():
    """``trainable_blocks = 1``: the caption tokens and the contrastive embedding both send gradients into the last
    MBConv block and the head convolution, never into the locked blocks before it."""
    image = CoCaImage(CoCaImageParams(image_size=64, pretrained=False, trainable_blocks=1, width=32, heads=2,
                                      caption_queries=3, caption_width=32, embed_dim=16)).train()
    trunk = image.grid.trunk
    items = [np.full((64, 64, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    out = image.encode_states(image.prepare(items))
    (out.embedding.square().sum() + out.tokens.square().sum()).backward()
    assert trunk._blocks[15]._project_conv.weight.grad.abs().sum() > 0 and trunk._conv_head.weight.grad is not None
    assert all(p.grad is None for p in trunk._blocks[14].parameters()) and not trunk._blocks[14].training
