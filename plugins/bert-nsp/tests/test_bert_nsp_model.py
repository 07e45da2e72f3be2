"""The NSP model: the dot product with [W | b] + InfoNCE is BERT's NSP loss; the joint masked-LM loss is
BERT's; checkpoints load (safetensors only) and bad ones fail with a clear error naming the path."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from attrs import evolve

from cl_core.api import build
from cl_core.errors import BuildError
from cl_core.testing import EncoderContract
from cl_core.types import Targets
from cl_bert_nsp.bert import NSPHead, build_nsp_head, load_bert
from cl_bert_nsp.nsp_tokens import IGNORE_INDEX
from cl_bert_nsp.params import BertParams, NSPHeadParams

PAIRS = [("The cat sat on the mat.", "Then it fell asleep in the sun."),
         ("Paris is the capital of France.", "Photosynthesis turns light into chemical energy."),
         ("A very long sentence " * 30, "and a short one."),
         ("Short.", "Also short.")]


@pytest.fixture
def tiny_bert_params():
    """A tiny random-init BERT with the MiniLM (bert-base-uncased) WordPiece vocabulary."""
    return BertParams(hidden_size=32, layers=2, heads=2, intermediate_size=64, block_size=40)


def _encoder_and_head(params, seed=0):
    torch.manual_seed(seed)
    enc = load_bert(params)
    head = build_nsp_head(NSPHeadParams(), SimpleNamespace(encoders={"pair": enc}))
    return enc, head


def test_embedding_is_pooled_cls_with_a_constant_one(tiny_bert_params):
    enc, _ = _encoder_and_head(tiny_bert_params)
    enc.eval()
    prepared = enc.prepare(PAIRS)
    out = enc.encode(prepared)
    assert out.shape == (4, 33)
    assert torch.equal(out[:, -1], torch.ones(4))
    pooled = enc.bert(**{k: prepared[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).pooler_output
    torch.testing.assert_close(out[:, :-1], pooled)
    assert prepared["input_ids"].shape[1] == 40  # the long pair is cut to block_size ...
    assert prepared["input_ids"][2, -1].item() == enc.tokenizer.sep_id  # ... and still ends with [SEP]


def test_dot_with_head_plus_info_nce_equals_berts_nsp_loss(tiny_bert_params):
    from transformers import BertForNextSentencePrediction

    enc, head = _encoder_and_head(tiny_bert_params)
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.3, -0.2]))  # a bias that matters
    enc.eval()
    labels = torch.tensor([0, 1, 1, 0])
    prepared = enc.prepare(PAIRS)
    scorer, loss = build("scorer", "core.dot"), build("loss", "core.info-nce")
    ours = loss.compute(enc.encode(prepared), head.candidates(), scorer, Targets(positive=labels)).value

    exported = enc.to_transformers(head.candidates().detach())
    reference = BertForNextSentencePrediction(enc.bert.config).eval()
    reference.bert.load_state_dict(exported.bert.state_dict())
    reference.cls.seq_relationship.load_state_dict(exported.cls.seq_relationship.state_dict())
    out = reference(**{k: prepared[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                    labels=labels)  # BERT convention: 0 = is next, 1 = random
    torch.testing.assert_close(ours, out.loss, rtol=1e-5, atol=1e-6)
    assert abs(out.loss.item() - F.cross_entropy(out.logits, labels).item()) < 1e-6

    ours.backward()
    out.loss.backward()
    torch.testing.assert_close(head.weight.grad, reference.cls.seq_relationship.weight.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(enc.bert.pooler.dense.weight.grad, reference.bert.pooler.dense.weight.grad,
                               rtol=1e-4, atol=1e-6)


def test_masked_lm_objective_equals_berts_loss_from_the_same_pass(tiny_bert_params):
    from transformers import BertForPreTraining

    from cl_bert_nsp.mlm import MaskedLM
    from cl_bert_nsp.params import MaskedLMParams
    from cl_core.components import EncodedBatch

    enc, head = _encoder_and_head(evolve(tiny_bert_params, mlm_probability=0.3, dropout=0.0))
    with torch.no_grad():
        enc.mlm_bias.normal_()
    prepared = enc.prepare(PAIRS)
    assert (prepared["mlm_labels"] != IGNORE_INDEX).any()
    enc.train()
    states = enc.encode_states(prepared)
    assert states.tokens.shape[:2] == prepared["input_ids"].shape and "mlm_labels" in states.extras
    objective = MaskedLM(enc, MaskedLMParams())
    assert not list(objective.parameters())  # the head is the encoder's, saved once under its key
    value = objective.compute(EncodedBatch({"pair": states})).value

    exported: BertForPreTraining = enc.to_transformers(head.candidates().detach())
    out = exported(input_ids=prepared["mlm_input_ids"], attention_mask=prepared["attention_mask"],
                   token_type_ids=prepared["token_type_ids"])
    vocab = out.prediction_logits.shape[-1]
    expected = F.cross_entropy(out.prediction_logits.reshape(-1, vocab), prepared["mlm_labels"].reshape(-1),
                               ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)

    enc.eval()  # evaluation sees the clean ids and gives no labels to learn from
    clean = enc.encode_states(prepared)
    assert clean.extras == {}
    assert float(objective.compute(EncodedBatch({"pair": clean})).value) == 0.0
    unmasked = enc.encode({**prepared, "mlm_input_ids": prepared["input_ids"]})
    torch.testing.assert_close(clean.embedding, unmasked)


def test_masks_are_seeded_not_global(tiny_bert_params):
    enc, _ = _encoder_and_head(evolve(tiny_bert_params, mlm_probability=0.5))
    first = enc.prepare(PAIRS)["mlm_input_ids"]
    torch.manual_seed(123)
    assert torch.equal(first, enc.prepare(PAIRS)["mlm_input_ids"])


# -- checkpoints ------------------------------------------------------------------------------------


@pytest.fixture
def saved_checkpoint(tmp_path, tiny_bert_params):
    """A tiny BertForPreTraining saved with save_pretrained (safetensors) plus the MiniLM tokenizer files."""
    from transformers import BertForPreTraining

    from cl_core.hf import minilm_dir

    enc, head = _encoder_and_head(evolve(tiny_bert_params, mlm_probability=0.15))
    with torch.no_grad():
        head.bias.copy_(torch.tensor([1.5, -1.5]))
        enc.mlm_bias.fill_(0.25)
    model: BertForPreTraining = enc.to_transformers(head.candidates().detach())
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        (folder / name).write_bytes((minilm_dir() / name).read_bytes())
    return folder, enc, head


def test_checkpoint_round_trip_keeps_trunk_mlm_and_nsp_head(saved_checkpoint):
    folder, enc, head = saved_checkpoint
    loaded = load_bert(BertParams(checkpoint=str(folder), block_size=40, mlm_probability=0.15))
    new_head = build_nsp_head(NSPHeadParams(), SimpleNamespace(encoders={"pair": loaded}))
    torch.testing.assert_close(new_head.candidates(), head.candidates())
    assert torch.equal(loaded.mlm_bias, torch.full_like(loaded.mlm_bias, 0.25))
    enc.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(loaded.prepare(PAIRS)), enc.encode(enc.prepare(PAIRS)))
    fresh = build_nsp_head(NSPHeadParams(init="random"), SimpleNamespace(encoders={"pair": loaded}))
    assert not torch.equal(fresh.bias, head.bias)


def test_minilm_shortcut_loads_pretrained_trunk_with_a_fresh_head():
    enc = load_bert(BertParams(checkpoint="minilm", block_size=32))
    assert enc.hidden_size == 384 and enc.pretrained_nsp is None and enc.tokenizer.vocab_size == 30522
    from safetensors.torch import load_file

    from cl_core.hf import minilm_dir

    stored = load_file(str(minilm_dir() / "model.safetensors"))
    assert torch.equal(enc.bert.encoder.layer[5].output.dense.weight, stored["encoder.layer.5.output.dense.weight"])
    head = build_nsp_head(NSPHeadParams(), SimpleNamespace(encoders={"pair": enc}))
    assert head.candidates().shape == (2, 385) and torch.equal(head.bias, torch.zeros(2))


def test_missing_checkpoint_path_names_it(tmp_path):
    from cl_core.hf import resolve

    missing = str(tmp_path / "no" / "such" / "dir")
    with pytest.raises(ValueError, match="folder does not exist") as err:  # when the spec is validated
        BertParams(checkpoint=missing)
    assert missing in str(err.value)
    with pytest.raises(BuildError, match="does not exist") as err:  # a folder removed after validation
        resolve(missing, "checkpoint", BuildError)
    assert missing in str(err.value)


def test_checkpoint_without_weights(saved_checkpoint):
    folder, _, _ = saved_checkpoint
    (folder / "model.safetensors").unlink()
    with pytest.raises(BuildError, match=r"has no weights \(expected model.safetensors\)") as err:
        load_bert(BertParams(checkpoint=str(folder)))
    assert str(folder) in str(err.value)


def test_pickle_only_checkpoint_is_refused_without_unpickling(saved_checkpoint):
    folder, _, _ = saved_checkpoint
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle: it must never be opened")
    with pytest.raises(BuildError, match="pickled weights are refused"):
        load_bert(BertParams(checkpoint=str(folder)))


def test_non_bert_config_is_refused(saved_checkpoint):
    folder, _, _ = saved_checkpoint
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(BuildError, match="model_type is 'gpt2'"):
        load_bert(BertParams(checkpoint=str(folder)))


def test_weights_that_do_not_fit_the_config(saved_checkpoint):
    folder, _, _ = saved_checkpoint
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    with pytest.raises(BuildError, match="do not fit its config.json: .*of another shape"):
        load_bert(BertParams(checkpoint=str(folder)))


def test_tokenizer_larger_than_the_model_vocabulary(saved_checkpoint):
    folder, _, _ = saved_checkpoint
    config = json.loads((folder / "config.json").read_text())
    small = {**config, "vocab_size": 1000}
    (folder / "config.json").write_text(json.dumps(small))
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    for key in list(state):
        if state[key].shape and state[key].shape[0] == config["vocab_size"]:
            state[key] = state[key][:1000].clone()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(BuildError, match="30,522 tokens but the model .* embeds only 1,000"):
        load_bert(BertParams(checkpoint=str(folder)))


def test_missing_tokenizer_files(saved_checkpoint, tmp_path):
    folder, _, _ = saved_checkpoint
    empty = tmp_path / "tok"
    empty.mkdir()
    with pytest.raises(BuildError, match="no tokenizer in .*none of tokenizer.json, vocab.txt"):
        load_bert(BertParams(checkpoint=str(folder), tokenizer=str(empty)))


def test_vocab_txt_tokenizer_matches_tokenizer_json(saved_checkpoint):
    folder, _, _ = saved_checkpoint
    (folder / "tokenizer.json").unlink()
    from cl_core.hf import load_tokenizer, minilm_dir

    from_vocab, from_json = load_tokenizer(folder), load_tokenizer(minilm_dir())
    texts = ["Photosynthesis turns light into chemical ENERGY.", "naïve café"]
    assert from_vocab.ids(texts) == from_json.ids(texts)


def test_unreachable_hub_id_is_a_build_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BuildError, match="could not be fetched from the Hugging Face Hub"):
        load_bert(BertParams(checkpoint="nobody-here/no-such-bert-model"))


def test_architecture_fields_with_a_checkpoint_are_a_spec_error():
    with pytest.raises(ValueError, match="hidden_size set together with checkpoint"):
        BertParams(checkpoint="minilm", hidden_size=64)


def test_head_without_a_bert_encoder_needs_hidden_size():
    with pytest.raises(BuildError, match="needs a bert-nsp.bert encoder"):
        build_nsp_head(NSPHeadParams(), SimpleNamespace(encoders={}))
    head = build_nsp_head(NSPHeadParams(hidden_size=8), SimpleNamespace(encoders={}))
    assert isinstance(head, NSPHead) and head.candidates().shape == (2, 9)


class TestBertContract(EncoderContract):
    name = "bert-nsp.bert"

    @pytest.fixture
    def params(self, tiny_bert_params):  # masked-LM parameters learn through the bert-nsp.mlm objective (above)
        return tiny_bert_params

    @pytest.fixture
    def items(self):
        return list(PAIRS)


class TestNSPHeadContract(EncoderContract):
    name = "bert-nsp.nsp-head"

    @pytest.fixture
    def params(self):
        return NSPHeadParams(hidden_size=8)

    @pytest.fixture
    def items(self):
        return [0, 1, 1]
